"""Running a conversion: where tasks run (:mod:`.executor`), the memory budget (:mod:`.memory`),
the record of finished tasks (:mod:`.progress`) and what a destination may hold (:mod:`.destination`)."""
