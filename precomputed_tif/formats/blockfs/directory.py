"""Reading and writing a blockfs 1.0.0 volume.

Directory file layout (all integers little-endian)::

    8 bytes   b"BlockFS\\0"
    4 bytes   uint32 M, length of the JSON metadata
    4 bytes   uint32 DirOffset = 16 + M, where the entries start
    M bytes   UTF-8 JSON metadata (sizes, extents, dtype, block file names, ...)
    entries   one per block slot, E = ceil((NOffsetBits + NSizeBits) / 8) bytes each

An entry is an unsigned integer of E bytes: the low ``NOffsetBits`` bits are the
offset of the block's Blosc frame in its block file, the next ``NSizeBits`` its
length. Length 0 means "never written": the block reads as zeros. Both this
package and the original create the directory file at its full size, so a
shorter one has lost entries: it is reported as damaged, not read as zeros.

Block files are looked for beside the directory file first, and at the path
recorded in ``BlockFilenames`` only when there is none there: a copy of a
volume (``cp -a``) reads its own block files, never the original's.

Every frame is checked before it is decoded (:mod:`precomputed_tif.formats.zarr.blosc_frame`):
its size fields against the bytes its entry spans and the block's size. Volumes
this package writes record ``"precomputed_tif_checksum": "crc32"`` in their
metadata and store each block as its Blosc frame followed by the CRC-32 of the
frame, both inside the size the entry records; readers that decode the frame by
its own header (the original package, numcodecs) ignore the four extra bytes.
Block (x, y, z) -- in block units -- has slot
``x*XStride + y*YStride + z*ZStride`` and lives in
``BlockFilenames[slot % len(BlockFilenames)]``. A block's frame decodes to a
C-ordered (z, y, x) array, truncated (not padded) at the volume's far edges.

Writers append a block's frame to its block file under an exclusive lock on
that file, and only then write the block's entry: a writer killed at any point
leaves every recorded entry pointing at complete data. Entries are written in
batches (:meth:`Directory.sync`, called by :meth:`Directory.close`): the block
files are flushed to disk first, then the entries are written and the directory
file flushed, so even a power loss leaves no entry pointing at data that never
reached the disk. Entries of different
slots are distinct bytes, so processes writing different blocks never touch the
same entry. Locks are POSIX record locks (``fcntl.lockf``), which also work on
NFS.

Space that no entry records -- the blocks of a writer killed before its batch
was recorded -- is not left to grow with every interruption. Beside the
directory file, ``<directory>.unrecorded`` (same entry layout, not part of the
format: other readers never look at it, and a finished conversion removes it)
holds, for each slot, where its last frame was put. A writer that writes a slot
again puts the new frame back into that spot when it fits and no entry records
it, and writes nothing at all when the recorded frame already holds exactly the
new bytes. Before a conversion resumes, :func:`reclaim` cuts each block file
back to the end of its last recorded frame and forgets the spots that are gone
or that overlap anything else. Writers hold a shared lock on that file while
they write, :func:`reclaim` an exclusive one, so it never runs under a writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import stat
import struct
import threading
import zlib
from collections.abc import Sequence

import numcodecs
import numpy as np

from ...errors import DamagedData, PrecomputedTifError
from ...geometry import as_triple, ceil_div
from ...storage.atomic import sync_directory, temporary_name
from ...storage.regular_files import file_version
from ..zarr.blosc_frame import check_frame

MAGIC = b"BlockFS\0"
VERSION = "1.0.0"
BLOCKFS_SUFFIX = "precomputed.blockfs"
COMPRESSIONS = ("zstd", "blosclz", "lz4", "lz4hc", "zlib", "snappy")
CHECKSUM_KEY = "precomputed_tif_checksum"
UNRECORDED_SUFFIX = ".unrecorded"  # where each slot's last frame was put, recorded or not
_STANDARD_KEYS = (
    "XBlockSize", "YBlockSize", "ZBlockSize", "DType", "NOffsetBits", "NSizeBits",
    "XExtent", "YExtent", "ZExtent", "BlockFilenames", "XStride", "YStride", "ZStride",
    "Compression", "CompressionLvl", "Version",
)


def entry_bits(block_size: Sequence[int], extent: Sequence[int], strides: Sequence[int],
               itemsize: int, n_files: int) -> tuple[int, int]:
    """(NOffsetBits, NSizeBits) exactly as the original package chooses them.

    ``block_size``, ``extent`` and ``strides`` are (x, y, z).
    """
    block_bytes = int(np.prod(block_size)) * itemsize + 16  # a Blosc frame's worst case
    n_size_bits = int(math.floor(math.log2(block_bytes))) + 1
    last_slot = sum(((e + b - 1) // b) * s for e, b, s in zip(extent, block_size, strides))
    n_offset_bits = int(math.floor(math.log2(max(1.0, last_slot * block_bytes / n_files)))) + 1
    return n_offset_bits, n_size_bits


class Directory:
    """An open blockfs volume: metadata, entries, block reads and (when writable) writes.

    Coordinates are voxels, (x, y, z); arrays are (z, y, x). Picklable: open
    files are not carried along, a copy reopens what it needs.
    """

    def __init__(self, path: str, writable: bool = False):
        self.path = os.path.abspath(path)
        self.writable = writable
        try:
            fd = _open_regular(self.path, os.O_RDONLY)
            try:
                header = os.pread(fd, 16, 0)
                if len(header) < 16 or header[:8] != MAGIC:
                    raise DamagedData(f"{self.path} is not a blockfs directory file")
                meta_len, self.dir_offset = struct.unpack("<II", header[8:])
                meta = os.pread(fd, meta_len, 16)
                file_size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            self.metadata = json.loads(meta.decode("utf-8"))
        except FileNotFoundError:
            raise PrecomputedTifError(f"{self.path} does not exist") from None
        except (OSError, ValueError, struct.error) as exc:
            raise DamagedData(f"{self.path} is not a readable blockfs directory file ({exc})") from None
        m = self.metadata
        if not isinstance(m, dict):
            raise DamagedData(f"{self.path} is not a readable blockfs directory file (its metadata is not an object)")
        missing = [k for k in _STANDARD_KEYS if k not in m]
        if missing:
            raise DamagedData(f"{self.path} lacks blockfs metadata {', '.join(missing)}")
        self.block_size = (m["XBlockSize"], m["YBlockSize"], m["ZBlockSize"])
        self.extent = (m["XExtent"], m["YExtent"], m["ZExtent"])
        self.strides = (m["XStride"], m["YStride"], m["ZStride"])
        self.dtype = np.dtype(m["DType"])
        self.n_offset_bits, self.n_size_bits = m["NOffsetBits"], m["NSizeBits"]
        self.entry_size = ceil_div(self.n_offset_bits + self.n_size_bits, 8)
        self.block_files = [self._locate(name) for name in m["BlockFilenames"]]
        self.checksum = m.get(CHECKSUM_KEY) == "crc32"
        self.codec = numcodecs.Blosc(cname=m["Compression"], clevel=m["CompressionLvl"],
                                     shuffle=numcodecs.Blosc.SHUFFLE)
        self.n_slots = n_slots = sum((g - 1) * s for g, s in zip(self.grid(), self.strides)) + 1
        if file_size < self.dir_offset + n_slots * self.entry_size:
            raise DamagedData(f"{self.path} is truncated: {file_size} bytes, its {n_slots} entries need "
                              f"{self.dir_offset + n_slots * self.entry_size}")
        self.unrecorded_path = self.path + UNRECORDED_SUFFIX
        self._fds: dict = {}
        self._fds_lock = threading.Lock()  # a server's threads share one open volume
        self._pending: dict[int, int] = {}  # slot -> entry value, written by sync()
        self._dirty: set[str] = set()  # block files appended to since the last sync()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fds"] = {}
        state["_pending"], state["_dirty"] = {}, set()
        del state["_fds_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fds_lock = threading.Lock()

    def _locate(self, name: str) -> str:
        """A block file's path: beside the directory file, or as recorded when there is none there."""
        beside = os.path.join(os.path.dirname(self.path), os.path.basename(name))
        if os.path.exists(beside) or not os.path.isabs(name) or not os.path.exists(name):
            return beside
        return name

    @property
    def is_copy(self) -> bool:
        """True when the block files read are not the ones recorded (the volume was copied or moved)."""
        return self.block_files != list(self.metadata["BlockFilenames"])

    # -- geometry -------------------------------------------------------------

    def grid(self) -> tuple[int, int, int]:
        """Blocks along x, y, z."""
        return as_triple(ceil_div(e, b) for e, b in zip(self.extent, self.block_size))

    def slot(self, x: int, y: int, z: int) -> int:
        """Slot of the block holding voxel (x, y, z)."""
        return sum((v // b) * s for v, b, s in zip((x, y, z), self.block_size, self.strides))

    def block_shape(self, x0: int, y0: int, z0: int) -> tuple[int, int, int]:
        """(z, y, x) shape of the block starting at voxel (x0, y0, z0), truncated at the edge."""
        (bx, by, bz), (ex, ey, ez) = self.block_size, self.extent
        return (min(bz, ez - z0), min(by, ey - y0), min(bx, ex - x0))

    def _check_origin(self, x0: int, y0: int, z0: int) -> None:
        if any(v % b or v < 0 or v >= e for v, b, e in zip((x0, y0, z0), self.block_size, self.extent)):
            raise ValueError(f"({x0}, {y0}, {z0}) is not the origin of a block of {self.path}")

    # -- files ----------------------------------------------------------------

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            return fd
        with self._fds_lock:
            return self._open(path)

    def _open(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            if not self.writable:
                flags = os.O_RDONLY
            elif path == self.path:
                flags = os.O_RDWR
            else:
                flags = os.O_RDWR | os.O_CREAT
            try:
                fd = _open_regular(path, flags)
            except OSError as exc:
                raise PrecomputedTifError(f"cannot open blockfs file {path}: {exc.strerror}") from None
            if path == self.unrecorded_path:
                # Held while this volume is open for writing: reclaim() never runs under a writer.
                # (POSIX locks belong to the process and go with any of its descriptors of the
                # file, so this is the only one opened.)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_SH)
                except OSError as exc:
                    os.close(fd)
                    raise PrecomputedTifError(f"cannot lock blockfs file {path}: {exc.strerror}") from None
            self._fds[path] = fd
        return fd

    def sync(self) -> None:
        """Make the blocks written so far durable and recorded: flush the block files, then
        write their entries, then flush the directory file."""
        if not self._pending:
            return
        path = self.path
        try:
            for path in sorted(self._dirty):
                os.fsync(self._fd(path))
            path = self.path
            fd = self._fd(path)
            for slot, value in sorted(self._pending.items()):
                _pwrite_all(fd, value.to_bytes(self.entry_size, "little"), self.dir_offset + slot * self.entry_size)
            os.fsync(fd)
        except OSError as exc:
            raise PrecomputedTifError(f"cannot record blocks of {self.path} ({path}): {exc.strerror}") from None
        self._pending, self._dirty = {}, set()

    def close(self) -> None:
        """Record what was written (see :meth:`sync`) and close the files."""
        try:
            self.sync()
        finally:
            with self._fds_lock:
                fds, self._fds = self._fds, {}
            for fd in fds.values():
                os.close(fd)

    # -- entries --------------------------------------------------------------

    def entry(self, slot: int) -> tuple[int, int]:
        """(offset, size) recorded for a slot; size 0 when the block was never written."""
        value = self._pending.get(slot)
        if value is not None:
            return value & ((1 << self.n_offset_bits) - 1), value >> self.n_offset_bits
        raw = os.pread(self._fd(self.path), self.entry_size, self.dir_offset + slot * self.entry_size)
        if len(raw) < self.entry_size:
            raise DamagedData(f"{self.path} is truncated: it lost the entry of slot {slot}")
        return self._split(int.from_bytes(raw, "little"))

    def _split(self, value: int) -> tuple[int, int]:
        """(offset, size) of an entry's value."""
        return value & ((1 << self.n_offset_bits) - 1), (value >> self.n_offset_bits) & ((1 << self.n_size_bits) - 1)

    def _last_spot(self, slot: int) -> tuple[int, int]:
        """(offset, size) of where the slot's last frame was put (size 0: not known)."""
        raw = os.pread(self._fd(self.unrecorded_path), self.entry_size, slot * self.entry_size)
        return self._split(int.from_bytes(raw, "little")) if len(raw) == self.entry_size else (0, 0)

    def n_written(self) -> int:
        """How many blocks have an entry."""
        total = int(np.prod(self.grid()))
        with open(self.path, "rb") as f:
            f.seek(self.dir_offset)
            raw = f.read()
        n = 0
        mask = (1 << self.n_size_bits) - 1
        for i in range(0, min(len(raw), total * self.entry_size), self.entry_size):
            value = int.from_bytes(raw[i:i + self.entry_size], "little")
            n += ((value >> self.n_offset_bits) & mask) != 0
        return n

    # -- blocks ---------------------------------------------------------------

    def read_frame(self, x0: int, y0: int, z0: int) -> bytes | None:
        """The stored (compressed) frame of a block, or None if it was never written."""
        self._check_origin(x0, y0, z0)
        slot = self.slot(x0, y0, z0)
        offset, size = self.entry(slot)
        if size == 0:
            return None
        path = self.block_files[slot % len(self.block_files)]
        data = os.pread(self._fd(path), size, offset)
        if len(data) != size:
            raise DamagedData(f"{path} is shorter than its directory says; the volume is damaged")
        return data

    def read_block(self, x0: int, y0: int, z0: int) -> np.ndarray:
        """The block whose origin is voxel (x0, y0, z0), as (z, y, x); zeros if never written.

        A frame that fails its checks (sizes, checksum) raises :class:`DamagedData`."""
        shape = self.block_shape(x0, y0, z0)
        frame = self.read_frame(x0, y0, z0)
        if frame is None:
            return np.zeros(shape, self.dtype)
        # The block file holds the frame that fails: the message names it, beside the volume.
        block_file = self.block_files[self.slot(x0, y0, z0) % len(self.block_files)]
        what = f"block at ({x0}, {y0}, {z0}) of {self.path} in {block_file}"
        expected = int(np.prod(shape)) * self.dtype.itemsize
        payload: bytes | memoryview = frame
        if self.checksum:
            check_frame(frame, expected, what, trailing=4)
            if zlib.crc32(memoryview(frame)[:-4]) != int.from_bytes(frame[-4:], "little"):
                raise DamagedData(f"{what}: checksum mismatch, the stored block is corrupt")
            payload = memoryview(frame)[:-4]
        else:
            check_frame(frame, expected, what)
        try:
            data = self.codec.decode(payload)
        except Exception as exc:
            raise DamagedData(f"{what} does not decode ({exc})") from None
        if len(data) != expected:
            raise DamagedData(f"{what} decodes to {len(data)} bytes, not {expected}")
        return np.frombuffer(data, self.dtype).reshape(shape)

    def write_block(self, x0: int, y0: int, z0: int, block: np.ndarray) -> None:
        """Store a block's frame in its block file -- appended, or put back where the slot's
        unrecorded frame was, or not written at all when the recorded frame is these very bytes;
        its entry is written by the next :meth:`sync`."""
        if not self.writable:
            raise PrecomputedTifError(f"{self.path} was opened read-only")
        self._check_origin(x0, y0, z0)
        shape = self.block_shape(x0, y0, z0)
        if block.shape != shape:
            raise ValueError(f"block at ({x0}, {y0}, {z0}) must have shape {shape}, not {block.shape}")
        frame = self.codec.encode(np.ascontiguousarray(block, self.dtype))
        if self.checksum:
            frame = frame + zlib.crc32(frame).to_bytes(4, "little")
        if len(frame) >= 1 << self.n_size_bits:
            raise PrecomputedTifError(f"{self.path}: a block's frame of {len(frame)} bytes is more than its "
                                      f"entries can record")
        slot = self.slot(x0, y0, z0)
        path = self.block_files[slot % len(self.block_files)]
        try:
            recorded = self.entry(slot)
            fd = self._fd(path)
            if recorded[1] == len(frame) and os.pread(fd, len(frame), recorded[0]) == frame:
                return  # recorded by a run stopped before it logged its task: nothing to write
            spot = self._last_spot(slot)
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                if len(frame) <= spot[1] and spot != recorded:
                    offset = spot[0]  # the slot's own unrecorded frame: overwritten, not left behind
                else:
                    offset = os.lseek(fd, 0, os.SEEK_END)
                    if offset >= 1 << self.n_offset_bits:
                        raise PrecomputedTifError(
                            f"{path} holds {offset} bytes, more than the {self.n_offset_bits}-bit offsets of "
                            f"{self.path} can address")
                _pwrite_all(fd, frame, offset)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            # Only now, with the frame wholly written, is its spot the slot's to reuse.
            value = offset | (len(frame) << self.n_offset_bits)
            _pwrite_all(self._fd(self.unrecorded_path), value.to_bytes(self.entry_size, "little"),
                        slot * self.entry_size)
        except OSError as exc:
            raise PrecomputedTifError(f"cannot write blockfs block file {path}: {exc.strerror}") from None
        self._pending[slot] = value
        self._dirty.add(path)

    def version(self, x0: int, x1: int, y0: int, y1: int, z0: int, z1: int) -> tuple[tuple, int]:
        """What a box of voxels (half-open ranges) is read from, without reading it:
        ``(version, mtime_ns)``. The version holds the directory file's
        :func:`~precomputed_tif.storage.regular_files.file_version` and the entry of every block the box
        overlaps (block files are only appended to, so an entry names its bytes); mtime_ns is the
        directory file's modification time, which an entry's writing updates; 0 when no block the
        box overlaps was written (it reads as zeros)."""
        st = os.fstat(self._fd(self.path))
        (bx, by, bz) = self.block_size
        entries = []
        for bz0 in range(z0 // bz * bz, z1, bz):
            for by0 in range(y0 // by * by, y1, by):
                for bx0 in range(x0 // bx * bx, x1, bx):
                    entries.append(self.entry(self.slot(bx0, by0, bz0)))
        written = any(size for _, size in entries)
        return (file_version(st), tuple(entries)), st.st_mtime_ns if written else 0

    def read(self, x0: int, x1: int, y0: int, y1: int, z0: int, z1: int) -> np.ndarray:
        """Any box of voxels (half-open ranges) as a (z, y, x) array."""
        (bx, by, bz) = self.block_size
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), self.dtype)
        for bz0 in range(z0 // bz * bz, z1, bz):
            for by0 in range(y0 // by * by, y1, by):
                for bx0 in range(x0 // bx * bx, x1, bx):
                    block = self.read_block(bx0, by0, bz0)
                    sz, sy, sx = block.shape
                    cz0, cy0, cx0 = max(z0, bz0), max(y0, by0), max(x0, bx0)
                    cz1, cy1, cx1 = min(z1, bz0 + sz), min(y1, by0 + sy), min(x1, bx0 + sx)
                    out[cz0 - z0:cz1 - z0, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = \
                        block[cz0 - bz0:cz1 - bz0, cy0 - by0:cy1 - by0, cx0 - bx0:cx1 - bx0]
        return out


def _open_regular(path: str, flags: int) -> int:
    """A descriptor of ``path`` if it is a regular file; never blocks on a FIFO."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DamagedData(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (a pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.pwrite(fd, view, offset + len(data) - len(view)):]


def _decode(raw: bytes, entry_size: int, n_offset_bits: int, n_size_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, sizes) of consecutive entries, as uint64 arrays; a torn last entry is dropped."""
    n = len(raw) // entry_size
    padded = np.zeros((n, 16), np.uint8)  # entries are at most 128 bits
    padded[:, :entry_size] = np.frombuffer(raw, np.uint8, n * entry_size).reshape(n, entry_size)
    lo, hi = padded[:, :8].copy().view("<u8").ravel(), padded[:, 8:].copy().view("<u8").ravel()
    offsets = lo & np.uint64((1 << n_offset_bits) - 1)
    sizes = (lo >> np.uint64(n_offset_bits)) | (hi << np.uint64(64 - n_offset_bits))
    return offsets, sizes & np.uint64((1 << n_size_bits) - 1)


_RECLAIM_SLOTS = 1 << 20  # entries decoded at a time: memory stays ~50 MB however large the volume


def reclaim(path: str) -> int:
    """Give back the space of frames that no entry records, before a conversion resumes writing
    ``path``; returns the bytes cut from the block files.

    Each block file is cut back to the end of the last frame an entry records in it, and of the
    spots listed in ``<path>.unrecorded`` (see the module's notes) only those are kept that lie
    wholly before that end and overlap no recorded frame and no other spot: a writer may reuse
    any spot kept. Recorded frames are never touched. Raises :class:`PrecomputedTifError` when
    a writer still has the volume open (a run still going, or its workers still finishing).
    """
    d = Directory(path, writable=True)
    try:
        try:
            fd = _open_regular(d.unrecorded_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise PrecomputedTifError(f"cannot open blockfs file {d.unrecorded_path}: {exc.strerror}") from None
        d._fds[d.unrecorded_path] = fd  # closed with the volume, which ends the lock
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PrecomputedTifError(
                f"{path} is being written by another process (a conversion still running, or its workers "
                "still finishing); wait for it to end, then run again") from None
        try:
            return _reclaim(d, fd)
        except OSError as exc:
            raise PrecomputedTifError(f"cannot reclaim unrecorded space of {path}: {exc.strerror}") from None
    finally:
        d.close()


def _reclaim(d: Directory, unrecorded_fd: int) -> int:
    """Cut each block file back to the end of its last recorded frame and keep, in the
    unrecorded file, only the spots still wholly inside their block file and overlapping no
    recorded frame nor each other. Returns the bytes cut."""
    directory_fd = d._fd(d.path)
    e = d.entry_size

    def chunks():
        """(first slot, recorded offsets, sizes, spot offsets, sizes), a slice of slots at a time."""
        for first in range(0, d.n_slots, _RECLAIM_SLOTS):
            n = min(_RECLAIM_SLOTS, d.n_slots - first)
            raw = os.pread(directory_fd, n * e, d.dir_offset + first * e)
            spots = os.pread(unrecorded_fd, n * e, first * e).ljust(n * e, b"\0")
            yield (first, *_decode(raw, e, d.n_offset_bits, d.n_size_bits),
                   *_decode(spots, e, d.n_offset_bits, d.n_size_bits))

    cut, limits = _cut_to_recorded_ends(d, chunks)
    by_file: dict[int, list] = {}
    for spot in _spots_inside(d, chunks, limits):
        by_file.setdefault(spot[1], []).append(spot)
    good = []
    for i, spots in by_file.items():
        good += _trusted_spots(d, chunks, i, spots)
    os.ftruncate(unrecorded_fd, 0)
    for slot, _, start, stop in good:
        value = start | ((stop - start) << d.n_offset_bits)
        _pwrite_all(unrecorded_fd, value.to_bytes(e, "little"), slot * e)
    return cut


def _cut_to_recorded_ends(d: Directory, chunks) -> tuple[int, list[int]]:
    """Truncate each block file to the end of its last recorded frame: (bytes cut, each
    file's length now)."""
    n_files = len(d.block_files)
    ends = [0] * n_files
    for first, offsets, sizes, _, _ in chunks():
        files = (np.arange(first, first + len(sizes)) % n_files)
        for i in range(n_files):
            sel = (files == i) & (sizes > 0)
            if sel.any():
                ends[i] = max(ends[i], int((offsets[sel] + sizes[sel]).max()))
    cut = 0
    limits = []
    for i, name in enumerate(d.block_files):
        bfd = d._fd(name)
        size = os.fstat(bfd).st_size
        if size > ends[i]:
            os.ftruncate(bfd, ends[i])
            cut += size - ends[i]
        limits.append(min(size, ends[i]))
    return cut, limits


def _spots_inside(d: Directory, chunks, limits: list[int]) -> list[tuple[int, int, int, int]]:
    """(slot, file, start, stop) of each unrecorded spot wholly inside what is left of its
    block file and not the slot's recorded frame itself."""
    n_files = len(d.block_files)
    kept = []
    for first, offsets, sizes, spot_offsets, spot_sizes in chunks():
        slots = np.arange(first, first + len(sizes))
        files = slots % n_files
        limit = np.array(limits, np.uint64)[files]
        sel = (spot_sizes > 0) & (spot_offsets + spot_sizes <= limit) & \
              ~((spot_offsets == offsets) & (spot_sizes == sizes))
        for slot, f, start, length in zip(slots[sel], files[sel], spot_offsets[sel], spot_sizes[sel]):
            kept.append((int(slot), int(f), int(start), int(start + length)))
    return kept


def _trusted_spots(d: Directory, chunks, i: int, spots: list) -> list:
    """The spots of block file ``i`` that overlap neither each other nor a recorded frame."""
    n_files = len(d.block_files)
    spots.sort(key=lambda s: s[2])
    starts = np.array([s[2] for s in spots], np.uint64)
    stops = np.array([s[3] for s in spots], np.uint64)
    # Spots overlapping each other: neither is trusted.
    overlap = np.zeros(len(spots), bool)
    overlap[1:] = starts[1:] < np.maximum.accumulate(stops)[:-1]
    overlap[:-1] |= stops[:-1] > starts[1:]
    reach = np.maximum.accumulate(stops)  # sorted, unlike stops when spots overlap
    bad = np.zeros(len(spots) + 1, np.int64)  # a difference array: +1 where a hit range starts, -1 after
    # Spots overlapping a recorded frame of their file.
    for first, offsets, sizes, _, _ in chunks():
        files = np.arange(first, first + len(sizes)) % n_files
        sel = (files == i) & (sizes > 0)
        s, t = offsets[sel], offsets[sel] + sizes[sel]
        lo = np.searchsorted(reach, s, side="right")  # spots before lo all end before the frame starts
        hi = np.searchsorted(starts, t, side="left")  # spots starting before the frame ends
        hit = lo < hi
        np.add.at(bad, lo[hit], 1)
        np.add.at(bad, hi[hit], -1)
    overlap |= np.cumsum(bad)[:-1] > 0
    return [s for s, o in zip(spots, overlap) if not o]


def create(path: str, extent: Sequence[int], block_size: Sequence[int], dtype, n_files: int = 1,
           compression: str = "lz4", compression_level: int = 5, metadata: dict | None = None) -> Directory:
    """Create an empty volume: the directory file (every entry zero) and empty block files.

    ``extent`` and ``block_size`` are (x, y, z) voxels. Block files are
    ``<path>.0`` .. ``<path>.<n_files-1>``, recorded with absolute paths as the
    original package does; block files of an older volume at ``path`` are emptied or removed. ``metadata`` is kept
    alongside the standard keys. The directory file appears last and whole
    (written under a temporary name, flushed, renamed, its directory flushed):
    a crash or a full disk leaves either no directory file or a complete one,
    never a half-made one. Returns the volume opened for writing.
    """
    if compression not in COMPRESSIONS:
        raise PrecomputedTifError(f"unknown blockfs compression {compression!r}; choose one of {COMPRESSIONS}")
    path = os.path.abspath(path)
    dtype = np.dtype(dtype)
    ex, ey, ez = (int(v) for v in extent)
    bx, by, bz = (int(v) for v in block_size)
    gx, gy = ceil_div(ex, bx), ceil_div(ey, by)
    strides = (1, gx, gx * gy)
    n_offset_bits, n_size_bits = entry_bits((bx, by, bz), (ex, ey, ez), strides, dtype.itemsize, n_files)
    # Room for the frame's worst case (raw size + 16-byte header) and its 4-byte checksum.
    n_size_bits = max(n_size_bits, (bx * by * bz * dtype.itemsize + 20).bit_length())
    meta = dict(metadata or {})
    meta[CHECKSUM_KEY] = "crc32"
    meta.update({
        "XBlockSize": bx, "YBlockSize": by, "ZBlockSize": bz, "DType": dtype.name,
        "NOffsetBits": n_offset_bits, "NSizeBits": n_size_bits,
        "XExtent": ex, "YExtent": ey, "ZExtent": ez,
        "BlockFilenames": [f"{path}.{i}" for i in range(n_files)],
        "XStride": strides[0], "YStride": strides[1], "ZStride": strides[2],
        "Compression": compression, "CompressionLvl": int(compression_level), "Version": VERSION,
    })
    encoded = json.dumps(meta).encode("utf-8")
    entry_size = ceil_div(n_offset_bits + n_size_bits, 8)
    n_slots = gx * gy * ceil_div(ez, bz)
    tmp = temporary_name(path)
    try:
        # No frame of an older volume at this path stays to be found, nor any spot of it listed.
        directory, base = os.path.split(path)
        stale = re.compile(re.escape(base) + r"(\.\d+|" + re.escape(UNRECORDED_SUFFIX) + ")")
        for name in os.listdir(directory):
            if stale.fullmatch(name) and os.path.join(directory, name) not in meta["BlockFilenames"]:
                os.unlink(os.path.join(directory, name))
        for name in meta["BlockFilenames"]:
            open(name, "wb").close()
        with open(tmp, "xb") as f:
            f.write(MAGIC + struct.pack("<II", len(encoded), 16 + len(encoded)) + encoded)
            f.truncate(16 + len(encoded) + n_slots * entry_size)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_directory(os.path.dirname(path))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise PrecomputedTifError(f"cannot create blockfs volume {path}: {exc.strerror}") from None
    return Directory(path, writable=True)
