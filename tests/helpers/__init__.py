"""Modules the tests (and the benchmarks) share: stacks to convert, servers to start, readers
written from the specifications, the contracts every store and storage backend passes.

Also where the suite's own files are, for the modules that need them.
"""

import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this folder's parent, tests/
CHECKOUT = os.path.dirname(TESTS)  # the repository root: its precomputed_tif is the code under test
DATA = os.path.join(TESTS, "data")  # fixtures kept in the repository (tests/data)
