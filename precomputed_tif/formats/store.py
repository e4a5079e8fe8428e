"""The interface every chunk store implements, and what they share."""

from __future__ import annotations

import contextlib
import copy
import os
import stat
import struct
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from ..errors import DamagedData, PrecomputedTifError
from ..geometry import Box, Scale
from ..info import INFO, VolumeInfo
from ..storage import ObjectReader, Storage, StorageLike, open_storage
from ..storage.atomic import sync_directory, sync_files


class ChunkStore(ABC):
    """Chunks of every scale of one precomputed volume, stored in some format.

    A store is built from where the dataset lives -- a :class:`~precomputed_tif.storage.Storage`,
    or a local path or ``file://`` URL for one -- and its ``info`` (a dict, or a
    :class:`~precomputed_tif.info.VolumeInfo`: the scales' keys, sizes and chunk sizes and the
    data type come from there; ``volume_info`` is it parsed, ``info`` the dict). It is small and picklable:
    workers receive it as an argument. Boxes are in the coordinates of the scale they name;
    arrays are (z, y, x), or (c, z, y, x) when the volume has several channels
    (``num_channels`` > 1).

    Stores read and write through ``self.storage`` by key (:meth:`get_object`,
    :meth:`put_object`, :meth:`open_object`, :meth:`chunk_keys`), so they work on any storage.
    A format whose files must be local (appended to, updated in place, served only by this
    project's servers) sets ``local_only`` and uses paths (:meth:`level_dir`); it is refused,
    in one line, on any other storage.
    """

    format: str = ""
    # The time point this store reads and writes, of a time series' store (see :meth:`at_timepoint`).
    timepoint: int = 0
    # The format's files are appended to or updated in place: a local directory only.
    local_only: bool = False
    # Scales whose chunks are also kept losslessly, to be read back (see the precomputed store).
    lossless_copies: frozenset = frozenset()
    # What a store caches of its files (opened directories, parsed metadata, shard indexes):
    # per process, so a pickled copy starts with these empty, and ``_lock`` guards filling them
    # from a server's threads.
    _caches: tuple[str, ...] = ()

    def __init__(self, root: StorageLike, info: dict | VolumeInfo):
        self.storage: Storage = open_storage(root)
        self.check_storage(self.storage)
        local = self.storage.local_root
        # Messages name ``root``; paths below it exist only for a local directory.
        self.root = local if local is not None else self.storage.location()
        self.volume_info = VolumeInfo.of(info, self.storage.location(INFO))
        self.info: dict = self.volume_info.to_json() if isinstance(info, VolumeInfo) else info
        self.dtype = self.volume_info.dtype
        self._scales = {s.key: s for s in self.volume_info.scales}
        self.channels = self.volume_info.n_channels
        self._sums: dict[str, dict[int, tuple[int, int]]] = {}  # key -> slot -> (size, crc), for finish()
        self._lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sums"] = {}
        state.update({name: {} for name in self._caches})
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @classmethod
    def check_storage(cls, storage: Storage) -> None:
        """A user error, one line, when this format cannot keep its files in ``storage``."""
        if storage.local_root is None and cls.local_only:
            raise PrecomputedTifError(
                f"{storage.location()}: the {cls.format} format keeps its files in a local directory only "
                "(it updates them in place); write precomputed, zarr or ome-zarr there instead")

    @property
    def n_timepoints(self) -> int:
        """How many time points the volume holds (1 unless its arrays have a leading t axis)."""
        return self.volume_info.n_timepoints

    def time_index(self) -> tuple[int, ...]:
        """The index of :attr:`timepoint` on the arrays' leading t axis: ``(t,)`` for a time
        series, ``()`` for a volume without a t axis."""
        return (self.timepoint,) if self.n_timepoints > 1 else ()

    def at_timepoint(self, t: int) -> ChunkStore:
        """The same store reading and writing time point ``t`` (0 <= t < :attr:`n_timepoints`)
        of a time series, its boxes and arrays still (z, y, x) or (c, z, y, x). Only formats
        whose arrays can have a t axis (OME-Zarr) are made with one."""
        if not 0 <= t < self.n_timepoints:
            raise ValueError(f"time point {t} of {self.n_timepoints}")
        view = copy.copy(self)
        view.timepoint = t
        return view

    def array_shape(self, box: Box) -> tuple[int, ...]:
        """Shape of the array that holds ``box``: (z, y, x), or (c, z, y, x) with channels."""
        return box.shape if self.channels == 1 else (self.channels, *box.shape)

    def scale(self, key: str) -> Scale:
        """Scale ``key`` of ``info``; a user error naming the dataset when it has none."""
        try:
            return self._scales[key]
        except KeyError:
            raise PrecomputedTifError(f"{self.root} has no scale {key!r}") from None

    def chunk_size(self, key: str) -> tuple[int, int, int]:
        """(x, y, z) chunk size of a scale."""
        return self.scale(key).chunk_size

    def size(self, key: str) -> tuple[int, int, int]:
        """(x, y, z) size of a scale in voxels."""
        return self.scale(key).size

    def level_dir(self, key: str) -> str:
        """The directory of scale ``key`` (a local directory's only); a user error for a scale
        ``info`` does not have (its chunks would otherwise read as zeros)."""
        self.scale(key)
        assert self.storage.local_root is not None, f"{type(self).__name__} used a path on {self.storage!r}"
        return os.path.join(self.root, key)

    @property
    def is_local(self) -> bool:
        """Whether the store's objects are files in a local directory (see :meth:`level_dir`)."""
        return self.storage.local_root is not None

    def level_key(self, key: str, *parts: str) -> str:
        """The storage key of ``parts`` (``/``-joined) inside scale ``key``'s prefix; a user error
        for a scale ``info`` does not have."""
        self.scale(key)
        return "/".join((key, *parts))

    def location(self, object_key: str) -> str:
        """How messages name a stored object: its path, or its URL."""
        return self.storage.location(object_key)

    def get_object(self, object_key: str) -> bytes | None:
        """The whole stored object, or None when there is none. What cannot be read as an
        object of the dataset (a FIFO, a symlink out of the dataset, an I/O error) is
        :class:`DamagedData` naming it."""
        with self._reading(object_key):
            return self.storage.get(object_key)

    def open_object(self, object_key: str) -> ObjectReader | None:
        """A reader of one version of the stored object (see :meth:`Storage.open_reader`), or None
        when there is none; unreadable ones are :class:`DamagedData`, as for :meth:`get_object`."""
        with self._reading(object_key):
            return self.storage.open_reader(object_key)

    @contextlib.contextmanager
    def _reading(self, object_key: str) -> Iterator[None]:
        """Failures to read ``object_key`` as :class:`DamagedData` naming it."""
        try:
            yield
        except DamagedData:
            raise
        except PrecomputedTifError as exc:
            raise DamagedData(str(exc)) from None
        except OSError as exc:
            raise DamagedData(f"cannot read {self.location(object_key)}: {exc.strerror or exc}") from None

    def put_object(self, object_key: str, data: bytes, compressible: bool = False) -> None:
        """Store a whole object atomically; durable once :meth:`finish` returns. ``compressible``:
        read whole and worth gzipping where nothing compresses on the way (see :meth:`Storage.put`)."""
        self.storage.put(object_key, data, compressible=compressible)

    @classmethod
    def holds(cls, storage: Storage, level_key: str) -> bool:
        """True when the level under ``level_key`` looks like it was written in this format
        (:meth:`holds_dir` in a local directory, :meth:`holds_objects` elsewhere)."""
        if storage.local_root is not None:
            path = os.path.join(storage.local_root, *level_key.split("/"))
            return os.path.isdir(path) and cls.holds_dir(path)
        return cls.holds_objects(storage, level_key)

    @classmethod
    def holds_dir(cls, level_dir: str) -> bool:
        """True when a local level directory looks like it was written in this format."""
        return False

    @classmethod
    def holds_objects(cls, storage: Storage, level_key: str) -> bool:
        """True when the objects under ``level_key`` (not a local directory) look like this
        format's; False for a format that keeps its files in local directories only."""
        return False

    def create(self, n_writers: int = 1) -> None:
        """Make what writers need before any chunk is written (called once, by one process).

        ``n_writers`` is how many processes will write at once. What an earlier
        run of the same conversion made is kept, so a rerun resumes. On storage
        other than a local directory there is nothing to make: objects need no
        directories.
        """
        if not self.is_local:
            return
        for key in self.volume_info.keys:
            os.makedirs(self.level_dir(key), exist_ok=True)
        if type(self).create is ChunkStore.create:
            self.create_checksums()
            self.sync_created()

    def sync_created(self) -> None:
        """Flush what :meth:`create` made -- the objects it put, the files it made beside the
        storage (:meth:`created_files`), the level directories -- so no chunk recorded later
        depends on metadata that could still be lost. Chunks an earlier run wrote are not
        touched: each task flushed its own."""
        self.storage.flush()
        if not self.is_local:
            return
        sync_files(self.created_files(), self.root)
        for key in self.volume_info.keys:
            sync_directory(self.level_dir(key))
        sync_directory(self.root)

    def created_files(self) -> list[str]:
        """The local files :meth:`create` made or changed other than through the storage: the
        checksum files (a format with files of its own, like blockfs', adds them)."""
        return [p for p in (self.checksum_path(k) for k in self.volume_info.keys) if os.path.exists(p)]

    @abstractmethod
    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        """Store one chunk (``array`` has :meth:`array_shape`); atomic: never seen half written."""

    @abstractmethod
    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        """One chunk as an :meth:`array_shape` array of the volume's dtype; zeros where never written."""

    def chunk_version(self, key: str, box: Box) -> tuple[tuple, int] | None:
        """What the chunk ``box`` of scale ``key`` is read from, found without reading or decoding
        it: ``(version, mtime_ns)``. ``version`` is a hashable value that differs whenever the
        stored bytes the chunk is decoded from may differ, for this opening of the store;
        ``mtime_ns`` is the latest modification time (ns since the epoch) of the files they are
        in, 0 when nothing is stored (the chunk reads as zeros). None when the store cannot tell
        cheaply. Servers derive a chunk's HTTP validators from it; they take it before reading
        the chunk, so a chunk rewritten in between goes out under its older version, which the
        next request then corrects (never the reverse, which a cache would keep)."""
        keys = self.chunk_keys(key, box)
        return None if keys is None else self.objects_version(keys)

    def objects_version(self, object_keys: list[str]) -> tuple[tuple, int] | None:
        """:meth:`chunk_version` of a chunk read from the objects ``object_keys``: each one's
        version (None for a missing one) and the latest modification time; None when one
        cannot be looked at (its read will say why)."""
        versions = []
        latest = 0
        for k in object_keys:
            try:
                st = self.storage.stat(k)
            except (OSError, PrecomputedTifError):
                return None
            versions.append(None if st is None else st.version)
            latest = max(latest, 0 if st is None else st.mtime_ns)
        return tuple(versions), latest

    def chunk_keys(self, key: str, box: Box) -> list[str] | None:
        """The storage keys of the objects the chunk ``box`` of scale ``key`` is decoded from
        (missing ones read as zeros); None for a store that does not keep chunks in objects
        of their own or of a few shards."""
        return None

    def read_region(self, key: str, box: Box) -> np.ndarray:
        """Any box of a scale, assembled from the chunks it overlaps."""
        cx, cy, cz = self.chunk_size(key)
        sx, sy, sz = self.size(key)
        out = np.empty(self.array_shape(box), self.dtype)
        for z0 in range(box.z0 // cz * cz, box.z1, cz):
            for y0 in range(box.y0 // cy * cy, box.y1, cy):
                for x0 in range(box.x0 // cx * cx, box.x1, cx):
                    chunk = Box(x0, min(x0 + cx, sx), y0, min(y0 + cy, sy), z0, min(z0 + cz, sz))
                    part = chunk.intersect(box)
                    # Each chunk visited starts inside ``box`` (x0 < box.x1 ...) and, ``box`` lying in
                    # the scale, inside the scale: the two overlap.
                    assert part is not None
                    out[(...,) + part.relative_to(box)] = self.read_chunk(key, chunk)[(...,) + part.relative_to(chunk)]
        return out

    def finish(self) -> None:
        """Make every chunk written so far durable (flushed to disk, data before names, then
        their checksums), and close whatever a writer holds open; the store stays usable. A
        conversion records a task as done only after its store's ``finish`` returned."""
        sums, self._sums = self._sums, {}
        self.storage.flush()
        for key, entries in sums.items():
            try:
                fd = os.open(self.checksum_path(key), os.O_WRONLY)
            except FileNotFoundError:
                continue  # a level made before checksums existed
            try:
                for slot, (size, crc) in sorted(entries.items()):
                    os.pwrite(fd, struct.pack("<II", size, crc), 8 * slot)
                os.fsync(fd)
            finally:
                os.close(fd)

    def write_metadata(self, info: dict, name: str) -> None:  # noqa: B027 - optional; most formats have none
        """Write what the format keeps besides chunks, once every chunk is written and before
        ``info`` (e.g. a Zarr root group's NGFF metadata); ``name`` names the dataset."""

    def drop_lossless_copies(self) -> None:  # noqa: B027 - optional; most formats keep none
        """Remove the lossless copies kept for reading back, once nothing needs them."""

    def writer(self) -> DirectWriter:
        """What one task writes through; its ``finish`` is called when the task's chunks are all
        written, ``abort`` when the task fails. Layouts whose files hold many chunks (shards)
        collect them here."""
        return DirectWriter(self)

    @contextlib.contextmanager
    def task(self) -> Iterator[DirectWriter]:
        """One task's writing: a :meth:`writer`, finished when the block ends, aborted when it
        ends by an exception; either way the store's written files are flushed (:meth:`finish`)."""
        writer = self.writer()
        try:
            yield writer
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        finally:
            self.finish()

    # -- checksums of file-per-chunk stores ---------------------------------------------------
    #
    # Beside the chunk files, each level directory of a tiff or zarr store written by this
    # project holds CHECKSUMS: for chunk (ix, iy, iz) of the level's grid, at offset
    # 8 * ((iz * gy + iy) * gx + ix), the stored file's size and CRC-32 (two little-endian
    # uint32). Size 0: no checksum recorded (the chunk was never written, or was written by
    # another tool). Writers fill their chunks' entries when a task ends, after the chunk
    # files are on disk; readers check a chunk file against its entry before decoding it.
    # Only in a local directory: the file is updated in place, which an object store cannot do,
    # and an object store's objects appear whole or not at all (a torn or half-renamed file,
    # which the checksums catch after a crash, cannot happen there).

    def checksum_path(self, key: str) -> str:
        return os.path.join(self.level_dir(key), CHECKSUMS)

    def _grid(self, key: str) -> tuple[int, int, int]:
        """Chunks along (x, y, z) of a scale."""
        return self.scale(key).grid

    def _slot(self, key: str, index_zyx: tuple[int, int, int]) -> int:
        gx, gy, gz = self._grid(key)
        iz, iy, ix = index_zyx
        # A time series keeps one grid of entries per time point, one after the other.
        return ((self.timepoint * gz + iz) * gy + iy) * gx + ix

    def create_checksums(self) -> None:
        """An empty checksum file in every level directory that has none (called by ``create``)."""
        if not self.is_local:
            return
        for key in self.volume_info.keys:
            path = self.checksum_path(key)
            if not os.path.exists(path):
                gx, gy, gz = self._grid(key)
                with open(path, "wb") as f:
                    f.truncate(8 * gx * gy * gz * self.n_timepoints)

    def record_checksum(self, key: str, index_zyx: tuple[int, int, int], data) -> None:
        """Remember a written chunk file's checksum; :meth:`finish` records it."""
        if not self.is_local:
            return
        self._sums.setdefault(key, {})[self._slot(key, index_zyx)] = (len(data), zlib.crc32(data))

    def verify_checksum(self, key: str, index_zyx: tuple[int, int, int], data: bytes, path: str) -> None:
        """Raise :class:`DamagedData` if a chunk file's bytes differ from those recorded."""
        if not self.is_local:
            return
        try:
            fd = os.open(self.checksum_path(key), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DamagedData(f"{self.checksum_path(key)} is not a regular file")
            raw = os.pread(fd, 8, 8 * self._slot(key, index_zyx))
        finally:
            os.close(fd)
        if len(raw) < 8:
            raise DamagedData(f"{self.checksum_path(key)} is truncated")
        size, crc = struct.unpack("<II", raw)
        if size == 0:
            return
        if size != len(data):
            raise DamagedData(f"{path} holds {len(data)} bytes, {size} were written; the chunk is damaged")
        if zlib.crc32(data) != crc:
            raise DamagedData(f"{path}: checksum mismatch, the stored chunk is corrupt")


CHECKSUMS = ".precomputed-tif-crc32"


class DirectWriter:
    """Writes every chunk straight into the store."""

    def __init__(self, store: ChunkStore):
        self.store = store

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        self.store.write_chunk(key, box, array)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


class OwnedShard(Protocol):
    """What :class:`ShardOwningWriter` needs of a shard writer besides ``add`` (whose arguments
    differ between layouts)."""

    def finish(self) -> None: ...

    def close(self) -> None: ...


class ShardOwningWriter(DirectWriter):
    """What one task writes into a layout whose files hold many chunks (shards): per scale, the
    one shard the task owns, collected by a shard writer (``add``, ``finish``, ``close``)
    and finished -- put in place whole, through the storage -- when the task is."""

    def __init__(self, store: ChunkStore):
        super().__init__(store)
        self._shards: dict[str, tuple[object, OwnedShard]] = {}

    def owned(self, key: str, shard, open_writer):
        """The writer of scale ``key``'s shard ``shard`` (``open_writer()`` makes it on first use);
        a task that reaches a second shard of one scale is a planning bug."""
        owned = self._shards.get(key)
        if owned is None:
            owned = self._shards[key] = (shard, open_writer())
        elif owned[0] != shard:
            raise AssertionError(f"a task wrote to shards {owned[0]} and {shard} of scale {key}")
        return owned[1]

    def finish(self) -> None:
        for _, w in self._shards.values():
            w.finish()
        self._shards = {}

    def abort(self) -> None:
        for _, w in self._shards.values():
            w.close()
        self._shards = {}
