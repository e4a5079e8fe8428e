"""Running a conversion: where tasks run (:mod:`.executor`), the memory budget (:mod:`.memory`),
the record of finished tasks (:mod:`.progress`), running tasks so that a rerun resumes
(:mod:`.runner`) and what a destination may hold (:mod:`.destination`)."""
