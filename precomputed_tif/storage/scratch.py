"""Local scratch space for what is on its way to a storage that is not a local directory.

A shard bound for an object store collects its chunks in an anonymous file of the system's
temporary directory (``TMPDIR``), which disappears when it is closed or its process dies; the
shard is uploaded whole when it is complete. When that directory fills up, the one line a
user reads must name it -- the destination itself may have all the room it needs.
"""

from __future__ import annotations

import contextlib
import errno
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import PrecomputedTifError

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def scratch_file() -> BinaryIO:
    """An anonymous read-write file in the temporary directory, gone once closed."""
    with spilling("making a temporary file"):
        return tempfile.TemporaryFile(dir=tempfile.gettempdir(), prefix=".precomputed-tif-")


@contextlib.contextmanager
def spilling(purpose: str) -> Iterator[None]:
    """Within the block, a full temporary directory (or a quota or file-size limit met there)
    is a user error naming that directory and what to do; ``purpose`` says what was being
    written there ("collecting shard 1_1_1/0.shard", say)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        raise PrecomputedTifError(
            f"{exc.strerror} in the temporary directory {tempfile.gettempdir()} while {purpose}; free some "
            "space there, or set TMPDIR to a directory on a disk with room, then run again") from None
