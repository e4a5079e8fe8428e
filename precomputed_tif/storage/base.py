"""What every storage backend promises: where a dataset's bytes live, named by keys.

A key is a path relative to the storage's root, with ``/`` between its parts:
``info``, ``1_1_1/0-64_0-64_0-64.tiff``. No part is empty, ``.`` or ``..``, and a key never
starts with ``/``: a key that could name something outside the root is a
:class:`~precomputed_tif.errors.PrecomputedTifError`, raised before anything is touched.

No key is both an object and the prefix of others (``a/b`` and ``a/b/c``): a local directory
cannot hold both, so no writer makes such a pair, and a backend may refuse the second
(:class:`~.local.LocalStorage` raises ``NotADirectoryError`` or ``IsADirectoryError``).

The operations are the ones an object store (S3, GCS) has -- whole objects put and got,
byte ranges, listing by prefix -- because a local directory can keep those promises and an
object store cannot keep more: there is no rename and no append. A writer that needs
either is local-only and says so (:attr:`Storage.can_append`).
"""

from __future__ import annotations

import io
import re
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator
from dataclasses import dataclass

from ..errors import PrecomputedTifError

# Control characters (a newline, say) would also break the one line a message is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_key(key: str) -> str:
    """``key`` if it is a valid key (see the module's docstring), else a user error naming it."""
    if not isinstance(key, str) or not key:
        raise PrecomputedTifError(f"storage key {key!r} is empty: a key names a file inside the dataset")
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts) or _CONTROL.search(key):
        raise PrecomputedTifError(
            f"storage key {key!r} is not a plain path inside the dataset (no leading '/', no empty, '.' or "
            "'..' parts, no control characters)")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix as a key (a trailing ``/`` dropped), or ``""`` for everything."""
    prefix = prefix.rstrip("/") if prefix != "/" else prefix
    return "" if prefix == "" else check_key(prefix)


def under(key: str, prefix: str) -> bool:
    """Whether ``key`` is ``prefix`` itself or lies below it: whole parts only, so ``a/bc`` is
    not under ``a/b``. Every key is under ``""``."""
    return prefix == "" or key == prefix or key.startswith(prefix + "/")


# Media types of the objects datasets hold, by name; everything else is binary.
_JSON_NAMES = {"info", "zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata", "attributes.json"}
_BY_SUFFIX = {".json": "application/json", ".tif": "image/tiff", ".tiff": "image/tiff", ".csv": "text/csv",
              ".txt": "text/plain", ".html": "text/html"}


def media_type(key: str) -> str:
    """The ``Content-Type`` an object named ``key`` is served with: JSON for ``info`` and the
    zarr metadata files, TIFF for ``.tif``/``.tiff``, ``application/octet-stream`` otherwise
    (chunks, shards, meshes)."""
    name = key.rsplit("/", 1)[-1]
    if name in _JSON_NAMES:
        return "application/json"
    dot = name.rfind(".")
    return _BY_SUFFIX.get(name[dot:].lower(), "application/octet-stream") if dot > 0 else "application/octet-stream"


@dataclass(frozen=True)
class ObjectStat:
    """What tells one version of an object from another, found without reading it.

    ``size`` in bytes; ``mtime_ns`` the last modification, in ns since the epoch; ``version``
    a hashable value that differs whenever the object's bytes may differ (a local file's
    inode, size and times; an object store's ETag or generation). HTTP validators and caches
    of parsed indexes key on ``version``."""

    size: int
    mtime_ns: int
    version: Hashable


class ObjectChanged(PrecomputedTifError):
    """An object was replaced or deleted while an :class:`ObjectReader` was reading it, on a
    backend whose readers cannot keep reading the old version (a bucket)."""


class ObjectReader(ABC):
    """One version of an object, read by byte ranges: every read returns bytes of the version
    :attr:`stat` describes, never a mix of two (a shard's index and the chunk it points to must
    come from the same file). When the object is replaced meanwhile, a reader of a local file
    keeps reading the old one; a bucket's raises :class:`ObjectChanged`
    (:attr:`Storage.readers_keep_versions`). Used as a context manager."""

    stat: ObjectStat

    @abstractmethod
    def read(self, start: int, length: int) -> bytes:
        """Bytes ``start`` (inclusive) to ``start + length`` (exclusive), counted from 0; fewer
        when the object ends sooner. Both >= 0."""

    def close(self) -> None:  # noqa: B027 - a reader holding nothing open needs no closing
        """Release what the reader holds (an open file); harmless twice."""

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


class ReaderFile(io.RawIOBase):
    """An :class:`ObjectReader` as a read-only, seekable binary file (what tifffile and other
    readers of files take): every read is one read of the reader's version, so a bucket's
    object replaced meanwhile raises :class:`ObjectChanged`. ``name`` is what the file is called
    in messages (its URL). Closing it closes the reader. Use :func:`open_file` for a buffered one."""

    def __init__(self, reader: ObjectReader, name: str):
        super().__init__()
        self._reader, self.name, self._pos = reader, name, 0
        self._size = reader.stat.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._reader.read(self._pos, len(view)) if self._pos < self._size else b""
        view[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


def open_file(reader: ObjectReader, name: str, buffer_size: int = 64 << 10) -> io.BufferedReader:
    """``reader`` as a buffered binary file named ``name`` (see :class:`ReaderFile`): reads of
    fewer than ``buffer_size`` bytes fetch that much at once (a TIFF's headers, its small
    strips), larger ones exactly what they ask for."""
    return io.BufferedReader(ReaderFile(reader, name), buffer_size)


class StreamWriter(ABC):
    """An object written piece by piece (a shard, a large file), which appears only when complete.

    Until :meth:`close` returns, readers see the previous object under the key (or none);
    after it, the whole new one. :meth:`abort` leaves the key as it was and nothing else
    behind. Used as a context manager: leaving the block normally closes, by an exception
    aborts (and the exception propagates).
    """

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Add ``data`` after what was written so far."""

    @abstractmethod
    def close(self) -> None:
        """Make the object appear, whole, under its key (durable after :meth:`Storage.flush`)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop what was written; the key keeps its previous object. Harmless after close or abort."""

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Storage(ABC):
    """Objects under one root, named by keys (see the module's docstring).

    Every write is whole: a reader, in this process or another, sees for a key either no
    object, the previous object or the complete new one, never a part. Durability is the
    writer's choice: a ``put(..., durable=True)`` survives a crash once it returns (and a
    crash during it leaves the old object or the whole new one); other writes are durable
    once :meth:`flush` returns. Until then a crash (a power loss) may leave the old object,
    none, or -- on a local file system, whose names can reach the disk before the data --
    a damaged new one: record nothing that depends on such writes (a task as done) before
    flushing them. A storage object is picklable, so tasks can carry it to worker
    processes; each copy flushes what it itself wrote.
    """

    # Whether append() exists: local directories only (object stores cannot append).
    can_append: bool = False
    # Whether an ObjectReader goes on reading the version it opened after the object is
    # replaced (an open local file does), rather than raising ObjectChanged (a bucket).
    readers_keep_versions: bool = True
    # Whether list() gives keys in sorted order (see list()).
    lists_sorted: bool = True
    # The directory the objects are files in, for what only a local directory can do (a
    # format that appends to its files or updates them in place, checksum sidecars); None
    # for storage that is not a local directory.
    local_root: str | None = None

    def check_reachable(self, writing: bool) -> None:  # noqa: B027 - most storage has nothing to check
        """Raise a one-line user error now if requests to this storage cannot succeed as
        configured (a bucket that does not exist, no access, nothing listening), before hours
        of work; ``writing``: objects are to be written. Nothing to check for a local directory:
        its first write says what is wrong."""

    def public_url(self, key: str = "") -> str | None:
        """The URL a browser reads ``key`` (or the root) from without this project's servers (a
        bucket's), or None where a server must serve it (a local directory)."""
        return None

    @abstractmethod
    def location(self, key: str = "") -> str:
        """How a user would name ``key`` (or the root, for ``""``) in a message: a path, a URL."""

    @abstractmethod
    def put(self, key: str, data: bytes, durable: bool = False, compressible: bool = False) -> None:
        """Store ``data`` as the whole object ``key``, replacing any previous one atomically.
        ``durable``: flushed before returning (metadata written one file at a time, like
        ``info``); without, :meth:`flush` makes a batch of puts durable at once.
        ``compressible``: the object is read whole, never by range, and compresses well (an
        unsharded raw chunk): a backend that nothing compresses on the way to a browser (a
        bucket) stores it gzipped with ``Content-Encoding: gzip``; :meth:`get` returns
        ``data`` either way."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The whole object ``key``, or None when there is none."""

    @abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        """Bytes ``start`` (inclusive) to ``start + length`` (exclusive) of the object ``key``,
        counted from 0; fewer when the object ends sooner (``b""`` when ``start`` is at or past
        its end), None when there is no object. ``start`` and ``length`` are >= 0 (a
        ``ValueError`` otherwise: a bug, not a user's mistake). All the bytes come from one
        version of the object."""

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is none."""
        st = self.stat(key)
        return None if st is None else st.size

    @abstractmethod
    def stat(self, key: str) -> ObjectStat | None:
        """The object's size, modification time and version, or None when there is none."""

    @abstractmethod
    def open_reader(self, key: str) -> ObjectReader | None:
        """An :class:`ObjectReader` of the object as it is now, or None when there is none."""

    def exists(self, key: str) -> bool:
        """Whether there is an object ``key`` (a "directory" holding objects is not one)."""
        return self.size(key) is not None

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """The keys of every object equal to ``prefix`` or below it (whole parts: ``a/b`` lists
        ``a/b`` and ``a/b/c``, never ``a/bc``), at any depth; ``""`` lists everything. Writes in
        progress are never listed. In sorted order (by code point) where :attr:`lists_sorted`
        (a local directory); a bucket lists in its server's order (AWS and Google sort, some
        S3-compatible servers list a tree's levels in turn), the same for the same keys: a
        caller that needs an order sorts (the fingerprint does)."""

    def list_stats(self, prefix: str = "") -> Iterator[tuple[str, ObjectStat]]:
        """(key, :class:`ObjectStat`) of every object :meth:`list` gives, in its order: what
        identifies a dataset's files without reading them (an object store's listing carries
        the stats; a local directory's walk stats each file once)."""
        for key in self.list(prefix):
            st = self.stat(key)
            if st is not None:  # deleted since it was listed
                yield key, st

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object ``key``; nothing there is fine (deleting is idempotent)."""

    @abstractmethod
    def open_stream(self, key: str) -> StreamWriter:
        """A :class:`StreamWriter` for the object ``key``, for what is too large to hold whole."""

    @abstractmethod
    def flush(self) -> None:
        """Make every object this storage object put, closed or deleted so far durable: after
        it returns they survive a crash or power loss. Batched: one flush after many puts
        costs far less than a durable write each."""

    def append(self, key: str, data: bytes) -> None:
        """Add ``data`` at the end of the object ``key``, creating it (only where
        :attr:`can_append`). Not atomic: a crash can leave a torn tail, which readers of such
        objects must tolerate. Not durable until :meth:`flush`."""
        raise PrecomputedTifError(f"{self.location()} cannot append to {key}: this storage has no append")
