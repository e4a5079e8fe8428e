"""Storage in a local directory: the guarantees every writer of this project had, in one place.

A put is a write to a temporary name beside the file and a rename (:mod:`..atomic`), so a
reader or a crash sees the old file or the whole new one; :meth:`LocalStorage.flush` makes
a batch of them durable (each file's data, then the directories naming them, up to the
root). Reads open regular files inside the root only (:mod:`..regular_files`): a symlink
leading out of the root, or a FIFO that would block a reader forever, is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import PrecomputedTifError
from .atomic import is_temporary_name, sync_directory, sync_files, temporary_name, write_atomic
from .base import ObjectReader, ObjectStat, Storage, StreamWriter, check_key, check_prefix, under
from .regular_files import NotRegularFile, file_version, open_regular_or_raise

_ABSENT = (FileNotFoundError, NotADirectoryError)
class LocalStorage(Storage):
    """Files under the directory ``root`` (which need not exist yet: the first put makes it).

    Keys map to paths by their ``/``-separated parts. Directories are made as puts need them
    and never listed; they stay when their files are deleted.
    """

    can_append = True

    def __init__(self, root: str | os.PathLike, confined: bool = True):
        """``confined``: reads refuse what leads out of the root through symlinks -- what a
        server reads for a request must stay inside the dataset. A user's own dataset read
        as a source (whose levels may be symlinks to other disks) is opened unconfined.
        Writes never land outside the root either way."""
        self._shown = os.fspath(root)  # as the user gave it, for messages
        self.root = os.path.abspath(self._shown)
        self.local_root = self.root
        self.confined = confined
        self._unsynced: set[str] = set()  # paths put, closed or appended since the last flush()
        self._dirty: set[str] = set()  # directories that lost an entry since then
        self._made: set[str] = set()  # directories known to exist inside the root
        # Directories found to lie inside the root, for reads: a read then looks at its own
        # name only, not at every directory above it. (The dataset's directories are its
        # owner's: a directory swapped for a symlink while a process reads is not a threat.)
        self._inside_dirs: set[str] = set()
        self._real: str | None = None  # the root's real path, once the root exists

    def __getstate__(self):
        # A copy in a worker flushes what it writes itself; the caches are per process.
        return {**self.__dict__, "_unsynced": set(), "_dirty": set(), "_made": set(), "_inside_dirs": set(),
                "_real": None}

    def __repr__(self) -> str:
        return f"LocalStorage({self.root!r})"

    def location(self, key: str = "") -> str:
        """The path as the user gave the root (relative, perhaps), for messages; see :meth:`_path`."""
        return self._shown if key == "" else os.path.join(self._shown, *check_key(key).split("/"))

    def _path(self, key: str) -> str:
        """The absolute path of ``key``."""
        return os.path.join(self.root, *check_key(key).split("/"))

    # Paths

    def _real_root(self) -> str:
        # Cached once the root exists: it may be made after this object (by a put, or by the caller).
        if self._real is not None:
            return self._real
        real = os.path.realpath(self.root)
        if os.path.isdir(real):
            self._real = real
        return real

    def _inside(self, real: str) -> bool:
        root = self._real_root()
        return real == root or real.startswith(root + os.sep)

    def _read_path(self, key: str) -> str:
        """The path of ``key``, refused (when ``confined``) if it leads through symlinks out of
        the root."""
        path = self._path(key)
        if not self.confined:
            return path
        directory = os.path.dirname(path)
        if directory in self._inside_dirs:
            if not os.path.islink(path) or self._inside(os.path.realpath(path)):
                return path
        elif self._inside(os.path.realpath(path)):
            if self._inside(os.path.realpath(directory)):
                self._inside_dirs.add(directory)
            return path
        raise PrecomputedTifError(f"{self.location(key)} leads out of {self._shown}: refused")

    def _write_path(self, key: str) -> str:
        """The path of ``key``, its directory made, refused when that directory leads out of the
        root (a write would land outside). The name itself is replaced, never followed."""
        path = self._path(key)
        directory = os.path.dirname(path)
        if directory not in self._made:
            # Checked before making anything: realpath resolves the part that exists.
            if not self._inside(os.path.realpath(directory)):
                raise PrecomputedTifError(f"{directory} leads out of {self.root}: refused")
            try:
                os.makedirs(directory, exist_ok=True)
            except FileExistsError:  # a file where a directory is wanted
                raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", directory) from None
            self._made.add(directory)
        return path

    def _open(self, key: str) -> BinaryIO | None:
        """``key``'s file opened for reading; None when absent or a directory (not an object)."""
        path = self._read_path(key)
        try:
            return open_regular_or_raise(path)
        except _ABSENT:
            return None
        except NotRegularFile:
            if os.path.isdir(path):
                return None
            raise PrecomputedTifError(
                f"{self.location(key)} is not a regular file (a FIFO, device or socket): refused") from None

    # Whole objects

    def put(self, key: str, data: bytes, durable: bool = False, compressible: bool = False) -> None:
        """See :meth:`Storage.put`; ``durable`` flushes the data before the rename and the
        directory after it (:func:`~..atomic.write_atomic`). ``compressible`` changes nothing:
        the servers that read a local directory compress on the way."""
        path = self._write_path(key)
        try:
            write_atomic(path, data, durable=durable)
        except FileNotFoundError:
            # Its directory was removed since this object made it (an --overwrite, say): once more.
            self._made.discard(os.path.dirname(path))
            write_atomic(self._write_path(key), data, durable=durable)
        if durable:
            self._unsynced.discard(path)
        else:
            self._unsynced.add(path)

    def get(self, key: str) -> bytes | None:
        f = self._open(key)
        if f is None:
            return None
        with f:
            return f.read()

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        if start < 0 or length < 0:
            raise ValueError(f"byte range start={start}, length={length}: both must be >= 0")
        f = self._open(key)
        if f is None:
            return None
        with f:
            # One open file: every byte comes from the version that was there when it was opened.
            return _pread_all(f.fileno(), start, length)

    def stat(self, key: str) -> ObjectStat | None:
        f = self._open(key)
        if f is None:
            return None
        with f:
            return _stat_of(os.fstat(f.fileno()))

    def open_reader(self, key: str) -> ObjectReader | None:
        f = self._open(key)
        return None if f is None else _LocalReader(f)

    def list(self, prefix: str = "") -> Iterator[str]:
        """See :meth:`Storage.list`. Regular files, and symlinks to regular files inside the
        root; never temporary files of writes in progress, FIFOs or devices. Collected before
        the first key is returned (the order is sorted)."""
        prefix = check_prefix(prefix)
        top = self.root if prefix == "" else self._path(prefix)
        keys = []
        if os.path.isfile(top) and not os.path.isdir(top):  # the prefix names an object itself
            if self._listable(top, os.path.basename(top)):
                keys.append(prefix)
        elif os.path.isdir(top) and (not self.confined or self._inside(os.path.realpath(top))):
            for base, _dirs, files in os.walk(top):  # symlinked directories are not followed
                rel = os.path.relpath(base, self.root)
                for name in files:
                    if self._listable(os.path.join(base, name), name):
                        keys.append(name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}")
        return iter(sorted(k for k in keys if under(k, prefix)))

    def list_stats(self, prefix: str = "") -> Iterator[tuple[str, ObjectStat]]:
        """See :meth:`Storage.list_stats`: one ``stat`` per listed file (the listing has already
        refused what is not a regular file inside the root)."""
        for key in self.list(prefix):
            try:
                st = os.stat(self._path(key))
            except OSError:
                continue  # deleted since it was listed
            yield key, _stat_of(st)

    def _listable(self, path: str, name: str) -> bool:
        if is_temporary_name(name):
            return False
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if stat.S_ISREG(st.st_mode):
            return True
        return os.path.islink(path) and os.path.isfile(path) and (not self.confined
                                                                  or self._inside(os.path.realpath(path)))

    def delete(self, key: str) -> None:
        path = self._path(key)
        directory = os.path.dirname(path)
        if not self._inside(os.path.realpath(directory)):
            raise PrecomputedTifError(f"{directory} leads out of {self.root}: refused")
        try:
            os.unlink(path)
        except (*_ABSENT, IsADirectoryError):
            return
        except PermissionError:
            if os.path.isdir(path):  # some systems say EPERM for unlink of a directory: not an object
                return
            raise
        self._unsynced.discard(path)
        self._dirty.add(directory)

    def append(self, key: str, data: bytes) -> None:
        """See :meth:`Storage.append`: one ``write`` in append mode, so lines appended by one
        writer are never interleaved with another's."""
        path = self._write_path(key)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self._unsynced.add(path)

    # Streams

    def open_stream(self, key: str) -> StreamWriter:
        return _LocalStream(self, self._write_path(key))

    def flush(self) -> None:
        paths, self._unsynced = self._unsynced, set()
        dirty, self._dirty = self._dirty, set()
        # A file removed since it was written (its whole directory removed with it, say) needs
        # no flushing: only the directory that lost it, if that is still there.
        gone = {p for p in paths if not os.path.lexists(p)}
        paths -= gone
        dirty |= {os.path.dirname(p) for p in gone}
        try:
            sync_files(sorted(paths), self.root)
            for directory in sorted(dirty - {os.path.dirname(p) for p in paths}):
                with contextlib.suppress(FileNotFoundError):
                    sync_directory(directory)
        except BaseException:
            self._unsynced |= paths  # still not durable: the next flush tries again
            self._dirty |= dirty
            raise


def _stat_of(st: os.stat_result) -> ObjectStat:
    return ObjectStat(st.st_size, st.st_mtime_ns, file_version(st))


def _pread_all(fd: int, start: int, length: int) -> bytes:
    """``length`` bytes from ``start`` (fewer at the end of the file), however many reads it takes."""
    parts = []
    while length > 0:
        part = os.pread(fd, length, start)
        if not part:
            break
        parts.append(part)
        start += len(part)
        length -= len(part)
    return b"".join(parts)


class _LocalReader(ObjectReader):
    """An open file: its reads come from the file that was there when it was opened, even if
    a rename has replaced it since."""

    def __init__(self, f: BinaryIO):
        self._file: BinaryIO | None = f
        self.stat = _stat_of(os.fstat(f.fileno()))

    def read(self, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"byte range start={start}, length={length}: both must be >= 0")
        if self._file is None:
            raise ValueError("read from a closed reader")
        return _pread_all(self._file.fileno(), start, length)

    def close(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.close()


class _LocalStream(StreamWriter):
    """A temporary file beside the target, renamed onto it by close()."""

    def __init__(self, storage: LocalStorage, path: str):
        self._storage = storage
        self._path = path
        self._tmp = temporary_name(path)
        self._closed = False
        self._file: BinaryIO | None = open(self._tmp, "xb")  # noqa: SIM115 - closed by close() or abort()

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError(f"write to {self._path} after close or abort")
        try:
            self._file.write(data)
        except OSError as exc:
            exc.filename = self._path  # a full disk is reported for the file being written
            raise

    def close(self) -> None:
        if self._closed:
            return
        if self._file is None:
            raise ValueError(f"{self._path} was aborted: it cannot be closed")
        f, self._file = self._file, None
        try:
            f.close()
            os.replace(self._tmp, self._path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            if isinstance(exc, OSError) and exc.filename in (None, self._tmp):
                exc.filename = self._path
            raise
        self._closed = True
        self._storage._unsynced.add(self._path)

    def abort(self) -> None:
        if self._file is None:
            return
        f, self._file = self._file, None
        with contextlib.suppress(OSError):
            f.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)
