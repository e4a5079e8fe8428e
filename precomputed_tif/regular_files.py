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


def file_version(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one version of a file from another without reading it: (inode, size in
    bytes, modification time in ns, status-change time in ns). A file replaced by a rename has
    a new inode; one rewritten in place a new size or modification time, and a status-change
    time the writer cannot set back (``touch -d``, ``rsync -t`` and ``cp -p`` restore only the
    modification time)."""
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
