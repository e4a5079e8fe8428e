"""Whole-file writes that readers and crashes never see half done, and making them durable.

A rename is atomic, but not durable: after a power loss the new name can point
at a file whose data never reached the disk. Durable means the file's data is
flushed (``fsync``) before its name is, and the name (the directory entry) is
flushed before anyone records the file as done. Flushing costs a disk round
trip, so writers of many files batch it: write them all, then
:func:`sync_files` once before recording them done.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
from collections.abc import Iterable

# What temporary_name makes: a hidden name, the writer's process id, 8 random hex digits, .tmp.
_TEMPORARY = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")


def temporary_name(path: str) -> str:
    """A name beside ``path`` that no other writer picks and no reader looks for."""
    directory, base = os.path.split(path)
    return os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def is_temporary_name(name: str) -> bool:
    """Whether a file name (no directory) is one :func:`temporary_name` makes: a write not
    finished, or left behind by a killed writer."""
    return _TEMPORARY.match(name) is not None


def write_atomic(path: str, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename.

    A crash leaves either the previous file (or none) or the complete new one,
    plus perhaps a stray ``.tmp`` file that no reader looks at. An ``OSError``
    raised here names ``path`` (its ``filename``), not the temporary file. The file gets
    the usual permissions (umask applies), so a web server can read it. With
    ``durable`` the data is flushed before the rename and the directory after
    it; without, the caller flushes a batch of files with :func:`sync_files`.
    """
    tmp = temporary_name(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            # A failed write (a full disk) names no file, a failed open the temporary
            # one: either way the caller's message should name the file being written.
            exc.filename = path
        raise
    if durable:
        sync_directory(os.path.dirname(os.path.abspath(path)))


def sync_directory(directory: str) -> None:
    """Flush a directory's entries (new names, renames) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Above this many files, fsync them from several threads: each fsync waits for its own journal
# commit, and many of them in flight at once share commits (tens of thousands of small files,
# a point layer's cells, took three times as long as writing them, one after the other).
PARALLEL_SYNC_ABOVE = 64
SYNC_THREADS = 32


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: list[str], stop: threading.Event | None = None) -> None:
    for path in paths:
        if stop is not None and stop.is_set():
            return
        _fsync_path(path)


def sync_files(paths: Iterable[str], root: str | None = None) -> None:
    """Flush each file's data, then the directories naming them (and, up to ``root``, the
    directories naming those): after this returns, the files survive a power loss. Any
    file's failure (a write-back error, a file gone) is raised, after the other files'
    flushes have ended."""
    paths = list(paths)
    if len(paths) > PARALLEL_SYNC_ABOVE:
        from concurrent.futures import ThreadPoolExecutor

        # Each thread a slice of the files (not a task per file: a future per file would cost
        # more CPU and memory than its fsync).
        n = min(SYNC_THREADS, len(paths) // PARALLEL_SYNC_ABOVE + 1)
        stop = threading.Event()
        with ThreadPoolExecutor(n) as pool:
            try:
                for _ in pool.map(_fsync_all, [paths[i::n] for i in range(n)], [stop] * n):
                    pass  # raises the first failure
            except BaseException:
                # A failure, or Ctrl-C / SIGTERM in this thread: the other threads stop after the
                # fsync they are in, rather than flush all their files before the pool lets go.
                stop.set()
                raise
    else:
        _fsync_all(paths)
    directories = set()
    for path in paths:
        directory = os.path.dirname(os.path.abspath(path))
        while directory not in directories:
            directories.add(directory)
            if root is None or not directory.startswith(root + os.sep):
                break
            directory = os.path.dirname(directory)
    for directory in sorted(directories, key=len, reverse=True):
        sync_directory(directory)
