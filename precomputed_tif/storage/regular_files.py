"""Opening a file only if it is a regular one: what any reader of user-controlled paths needs."""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO


class NotRegularFile(OSError):
    """The path names something other than a regular file: a FIFO, a directory, a device, a socket."""


def open_regular_or_raise(path: str) -> BinaryIO:
    """``path`` opened for reading if it is a regular file; otherwise the ``OSError`` that says
    why: ``FileNotFoundError`` (or ``NotADirectoryError``) when nothing is there,
    :class:`NotRegularFile` for a FIFO, directory, device or socket, another ``OSError`` (a
    permission, say) as the system reported it. Never blocks: a FIFO is opened without waiting
    for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError:  # some systems refuse O_RDONLY on a directory outright
        raise NotRegularFile(errno.EISDIR, "not a regular file", path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_regular(path: str) -> BinaryIO | None:
    """``path`` opened for reading if it is a regular file, else None (missing, a FIFO, a
    directory, a device, unreadable). Never blocks: a FIFO is opened without waiting for a writer."""
    try:
        return open_regular_or_raise(path)
    except OSError:
        return None


def file_version(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one version of a file from another without reading it: (inode, size in
    bytes, modification time in ns, status-change time in ns). A file replaced by a rename has
    a new inode; one rewritten in place a new size or modification time, and a status-change
    time the writer cannot set back (``touch -d``, ``rsync -t`` and ``cp -p`` restore only the
    modification time)."""
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
