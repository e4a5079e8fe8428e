"""Fast tests of one module each, in this process (a few also run the command once, to see it from outside)."""
