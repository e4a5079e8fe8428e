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

Every frame is checked before it is decoded (:mod:`precomputed_tif.blosc_frame`):
its size fields against the bytes its entry spans and the block's size. Volumes
this package writes record ``"precomputed_tif_checksum": "crc32"`` in their
metadata and store each block as its Blosc frame followed by the CRC-32 of the
frame, both inside the size the entry records; readers that decode the frame by
its own header (the original package, numcodecs) ignore the four extra bytes. Block (x, y, z) -- in block units -- has slot
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
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import stat
import struct
import threading
import zlib
from typing import Sequence

import numcodecs
import numpy as np

from ..blosc_frame import check_frame
from ..errors import DamagedData, PrecomputedTifError
from ..regular_files import file_version

MAGIC = b"BlockFS\0"
VERSION = "1.0.0"
BLOCKFS_SUFFIX = "precomputed.blockfs"
COMPRESSIONS = ("zstd", "blosclz", "lz4", "lz4hc", "zlib", "snappy")
CHECKSUM_KEY = "precomputed_tif_checksum"
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
        missing = [k for k in _STANDARD_KEYS if k not in m]
        if missing:
            raise PrecomputedTifError(f"{self.path} lacks blockfs metadata {', '.join(missing)}")
        self.block_size = (m["XBlockSize"], m["YBlockSize"], m["ZBlockSize"])
        self.extent = (m["XExtent"], m["YExtent"], m["ZExtent"])
        self.strides = (m["XStride"], m["YStride"], m["ZStride"])
        self.dtype = np.dtype(m["DType"])
        self.n_offset_bits, self.n_size_bits = m["NOffsetBits"], m["NSizeBits"]
        self.entry_size = -(-(self.n_offset_bits + self.n_size_bits) // 8)
        self.block_files = [self._locate(name) for name in m["BlockFilenames"]]
        self.checksum = m.get(CHECKSUM_KEY) == "crc32"
        self.codec = numcodecs.Blosc(cname=m["Compression"], clevel=m["CompressionLvl"],
                                     shuffle=numcodecs.Blosc.SHUFFLE)
        n_slots = sum((g - 1) * s for g, s in zip(self.grid(), self.strides)) + 1
        if file_size < self.dir_offset + n_slots * self.entry_size:
            raise DamagedData(f"{self.path} is truncated: {file_size} bytes, its {n_slots} entries need "
                              f"{self.dir_offset + n_slots * self.entry_size}")
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
        return tuple(-(-e // b) for e, b in zip(self.extent, self.block_size))

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
            self._fds[path] = fd
        return fd

    def sync(self) -> None:
        """Make the blocks written so far durable and recorded: flush the block files, then
        write their entries, then flush the directory file."""
        if not self._pending:
            return
        for path in sorted(self._dirty):
            os.fsync(self._fd(path))
        fd = self._fd(self.path)
        for slot, value in sorted(self._pending.items()):
            os.pwrite(fd, value.to_bytes(self.entry_size, "little"), self.dir_offset + slot * self.entry_size)
        os.fsync(fd)
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
        value = int.from_bytes(raw, "little")
        offset = value & ((1 << self.n_offset_bits) - 1)
        size = (value >> self.n_offset_bits) & ((1 << self.n_size_bits) - 1)
        return offset, size

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
        what = f"block at ({x0}, {y0}, {z0}) of {self.path}"
        expected = int(np.prod(shape)) * self.dtype.itemsize
        if self.checksum:
            check_frame(frame, expected, what, trailing=4)
            if zlib.crc32(memoryview(frame)[:-4]) != int.from_bytes(frame[-4:], "little"):
                raise DamagedData(f"{what}: checksum mismatch, the stored block is corrupt")
            frame = memoryview(frame)[:-4]
        else:
            check_frame(frame, expected, what)
        try:
            data = self.codec.decode(frame)
        except Exception as exc:
            raise DamagedData(f"{what} does not decode ({exc})") from None
        if len(data) != expected:
            raise DamagedData(f"{what} decodes to {len(data)} bytes, not {expected}")
        return np.frombuffer(data, self.dtype).reshape(shape)

    def write_block(self, x0: int, y0: int, z0: int, block: np.ndarray) -> None:
        """Append a block's frame to its block file; its entry is written by the next :meth:`sync`."""
        if not self.writable:
            raise PrecomputedTifError(f"{self.path} was opened read-only")
        self._check_origin(x0, y0, z0)
        shape = self.block_shape(x0, y0, z0)
        if block.shape != shape:
            raise ValueError(f"block at ({x0}, {y0}, {z0}) must have shape {shape}, not {block.shape}")
        frame = self.codec.encode(np.ascontiguousarray(block, self.dtype))
        if self.checksum:
            frame = frame + zlib.crc32(frame).to_bytes(4, "little")
        slot = self.slot(x0, y0, z0)
        fd = self._fd(self.block_files[slot % len(self.block_files)])
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            offset = os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(frame)
            while view:
                view = view[os.pwrite(fd, view, offset + len(frame) - len(view)):]
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        if offset >= 1 << self.n_offset_bits or len(frame) >= 1 << self.n_size_bits:
            raise PrecomputedTifError(f"{self.path}: block file grew past what its entries can address")
        self._pending[slot] = offset | (len(frame) << self.n_offset_bits)
        self._dirty.add(self.block_files[slot % len(self.block_files)])

    def version(self, x0: int, x1: int, y0: int, y1: int, z0: int, z1: int) -> tuple[tuple, int]:
        """What a box of voxels (half-open ranges) is read from, without reading it:
        ``(version, mtime_ns)``. The version holds the directory file's
        :func:`~precomputed_tif.regular_files.file_version` and the entry of every block the box
        overlaps (block files are only appended to, so an entry names its bytes); mtime_ns is the
        directory file's modification time, which an entry's writing updates."""
        st = os.fstat(self._fd(self.path))
        (bx, by, bz) = self.block_size
        entries = []
        for bz0 in range(z0 // bz * bz, z1, bz):
            for by0 in range(y0 // by * by, y1, by):
                for bx0 in range(x0 // bx * bx, x1, bx):
                    entries.append(self.entry(self.slot(bx0, by0, bz0)))
        return (file_version(st), tuple(entries)), st.st_mtime_ns

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


def create(path: str, extent: Sequence[int], block_size: Sequence[int], dtype, n_files: int = 1,
           compression: str = "lz4", compression_level: int = 5, metadata: dict | None = None) -> Directory:
    """Create an empty volume: the directory file (every entry zero) and empty block files.

    ``extent`` and ``block_size`` are (x, y, z) voxels. Block files are
    ``<path>.0`` .. ``<path>.<n_files-1>``, recorded with absolute paths as the
    original package does. ``metadata`` is kept alongside the standard keys.
    Returns the volume opened for writing.
    """
    if compression not in COMPRESSIONS:
        raise PrecomputedTifError(f"unknown blockfs compression {compression!r}; choose one of {COMPRESSIONS}")
    path = os.path.abspath(path)
    dtype = np.dtype(dtype)
    ex, ey, ez = (int(v) for v in extent)
    bx, by, bz = (int(v) for v in block_size)
    gx, gy = -(-ex // bx), -(-ey // by)
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
    entry_size = -(-(n_offset_bits + n_size_bits) // 8)
    n_slots = gx * gy * -(-ez // bz)
    for name in meta["BlockFilenames"]:
        open(name, "wb").close()
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<II", len(encoded), 16 + len(encoded)) + encoded)
        f.truncate(16 + len(encoded) + n_slots * entry_size)
    return Directory(path, writable=True)
