"""The test suite, a package so that its modules import the shared ones as ``tests.helpers.NAME``
from the repository root (pytest's ``pythonpath``, or the working directory of ``python -m``)."""
