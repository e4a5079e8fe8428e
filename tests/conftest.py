import os

import pytest

# The real object-store servers (SeaweedFS, moto, fake-gcs-server) and buckets, for every test folder.
from tests.helpers.object_servers import bucket, fake_gcs, moto_s3, s3, s3_server, seaweedfs  # noqa: F401

TESTS = os.path.dirname(os.path.abspath(__file__))
# The folder a test is in says what kind it is: one marker each, so ``-m unit`` runs the fast ones.
KINDS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items):
    """Mark every test ``unit``, ``integration`` or ``e2e`` by its folder under tests/; those that
    drive the headless browser (the ``browser`` fixture) are marked ``browser`` too, so
    ``-m "not browser"`` leaves them out."""
    for item in items:
        folder = os.path.relpath(os.path.abspath(str(item.path)), TESTS).split(os.sep)[0]
        if folder in KINDS:
            item.add_marker(KINDS[folder])
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
