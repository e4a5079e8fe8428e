"""A real full disk for tests: a small tmpfs mounted for the test (needs root, as CI runs)."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest


def used_bytes(mount: str) -> int:
    st = os.statvfs(mount)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@contextlib.contextmanager
def small_disk(path, size: str = "64M"):
    """A tmpfs of ``size`` mounted at ``path`` for the duration; skips (fails under
    REQUIRE_TOOLS=1, as in CI) where this process may not mount one."""
    path = str(path)
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True,
                          text=True)
    if done.returncode:
        message = f"cannot mount a tmpfs to fill ({done.stderr.strip()}); run as root"
        if os.environ.get("REQUIRE_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=True)


def leave_free(mount: str, free: int) -> str:
    """Fill ``mount`` with a file until ``free`` bytes are left; returns the file, to remove later."""
    filler = os.path.join(mount, "filler")
    with open(filler, "wb"):
        pass
    st = os.statvfs(mount)
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free))
    return filler
