"""Opening a file only if it is a regular one: what any reader of user-controlled paths needs."""

from __future__ import annotations

import os
import stat


def open_regular(path: str):
    """``path`` opened for reading if it is a regular file, else None (missing, a FIFO, a
    directory, a device). Never blocks: a FIFO is opened without waiting for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except OSError:
        os.close(fd)
        return None
