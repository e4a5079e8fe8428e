"""What viewers are shown: Neuroglancer links (:mod:`.links`), contrast (:mod:`.display`) and
pictures of a view (:mod:`.screenshot`)."""
