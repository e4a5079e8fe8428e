"""Zarr v3 shard files (the ``sharding_indexed`` codec): many inner chunks in one file.

A shard file holds the encoded inner chunks, one after another in any order,
followed by the *shard index*: for every inner chunk of the shard, in C order
of the shard's chunk grid, two little-endian uint64 -- the chunk's byte offset
in the file and its length -- then the CRC-32C of those index bytes
(little-endian uint32). A chunk that was never written has offset and length
both 2**64 - 1 and reads as the fill value. This is the layout zarr-python
writes by default (``index_codecs`` bytes + crc32c, ``index_location`` end);
the array's ``zarr.json``, which records it, is written by zarr-python itself.

Only bytes here: which codec encodes a chunk is the caller's business.
A shard is written whole by one writer, streaming: each chunk goes to disk as
it arrives, so memory holds one chunk, never the shard.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct

import google_crc32c
import numpy as np

from ...errors import DamagedData
from ...storage.atomic import temporary_name

EMPTY = np.uint64(2**64 - 1)
# The index codecs this module writes and reads, as zarr.json records them.
INDEX_CODECS = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]


def index_size(chunks_per_shard) -> int:
    """Bytes of a shard index for a shard of ``chunks_per_shard`` inner chunks per axis."""
    return 16 * int(np.prod(chunks_per_shard)) + 4


def encode_index(offsets_and_lengths: np.ndarray) -> bytes:
    """The index bytes (offsets, lengths, CRC-32C) of an (..., 2) uint64 array."""
    raw = np.ascontiguousarray(offsets_and_lengths, "<u8").tobytes()
    return raw + struct.pack("<I", google_crc32c.value(raw))


def decode_index(data: bytes, chunks_per_shard, path: str) -> np.ndarray:
    """The (..., 2) offsets and lengths of an index read from the end of a shard file;
    :class:`DamagedData` when it is cut short or its checksum does not match."""
    if len(data) != index_size(chunks_per_shard):
        raise DamagedData(f"{path}: the shard index is truncated")
    raw, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if google_crc32c.value(raw) != crc:
        raise DamagedData(f"{path}: the shard index fails its checksum")
    return np.frombuffer(raw, "<u8").reshape(*chunks_per_shard, 2)


class ZarrShardWriter:
    """Writes one shard file; inner chunks arrive in any order, at most once each.

    ``chunks_per_shard`` is the shard's inner-chunk grid, in the array's axis
    order; ``add`` takes an inner chunk's position within the shard in the same
    order. The file appears under ``path`` only when :meth:`finish` succeeds.
    """

    def __init__(self, path: str, chunks_per_shard):
        self.path = path
        self.chunks_per_shard = tuple(int(n) for n in chunks_per_shard)
        self._index = np.full((*self.chunks_per_shard, 2), EMPTY, np.uint64)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._tmp = temporary_name(path)
        self._file: io.BufferedWriter | None = open(self._tmp, "xb")  # noqa: SIM115 - held by the object, which closes it
        self._offset = 0

    def add(self, position, data: bytes) -> None:
        position = tuple(int(p) for p in position)
        if self._index[position][0] != EMPTY:
            raise ValueError(f"inner chunk {position} of {self.path} written twice")
        self._open_file().write(data)
        self._index[position] = (self._offset, len(data))
        self._offset += len(data)

    def finish(self, durable=None) -> None:
        """Append the index and rename the file into place; ``durable(f)`` (if given) is called
        on the finished file before the rename."""
        try:
            f = self._open_file()
            f.write(encode_index(self._index))
            if durable is not None:
                f.flush()
                durable(f)
            f.close()
            os.replace(self._tmp, self.path)
        finally:
            self.close()

    def _open_file(self) -> io.BufferedWriter:
        # Only close() drops the file, and a writer is not used once closed (or finished).
        assert self._file is not None, f"writer of {self.path} used after it was closed"
        return self._file

    def close(self) -> None:
        """Drop the unfinished file (after :meth:`finish`, or instead of it)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)


def read_index(f, path: str, chunks_per_shard) -> np.ndarray:
    """The index of an open shard file (see :func:`decode_index`)."""
    size = os.fstat(f.fileno()).st_size
    n = index_size(chunks_per_shard)
    if size < n:
        raise DamagedData(f"{path} is too short to be a shard ({size} bytes)")
    data = os.pread(f.fileno(), n, size - n)
    index = decode_index(data, chunks_per_shard, path)
    used = index[index[..., 0] != EMPTY]
    if used.size and int((used[:, 0] + used[:, 1]).max()) > size - n:
        raise DamagedData(f"{path}: the shard index points past the chunks")
    return index
