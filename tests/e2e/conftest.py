import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items):
    """Every test here is end to end (marked ``e2e``); those that drive the headless browser
    (the ``browser`` fixture) are marked ``browser`` too, so ``-m "not browser"`` leaves them out."""
    for item in items:
        if os.path.abspath(str(item.path)).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.e2e)
            if "browser" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.browser)
