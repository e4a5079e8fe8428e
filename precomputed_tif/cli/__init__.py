"""The commands, one module each: parse the command line, call the library, one line on error
(:mod:`.support`)."""
