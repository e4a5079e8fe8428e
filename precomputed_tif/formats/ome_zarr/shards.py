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
it arrives, so memory holds one chunk, never the shard. The shard appears in
the storage only when finished (:meth:`~precomputed_tif.storage.Storage.open_stream`).
"""

from __future__ import annotations

import contextlib
import struct
from typing import BinaryIO

import google_crc32c
import numpy as np

from ...errors import DamagedData
from ...storage import ObjectReader, Storage, StreamWriter
from ...storage.scratch import scratch_file, spilling

# Bytes copied at a time from a spill file into its storage's stream.
COPY_BLOCK = 1 << 22

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


def decode_index(data: bytes, chunks_per_shard, name: str) -> np.ndarray:
    """The (..., 2) offsets and lengths of an index read from the end of a shard file;
    :class:`DamagedData` (naming the shard by ``name``) when it is cut short or its checksum
    does not match."""
    if len(data) != index_size(chunks_per_shard):
        raise DamagedData(f"{name}: the shard index is truncated")
    raw, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if google_crc32c.value(raw) != crc:
        raise DamagedData(f"{name}: the shard index fails its checksum")
    return np.frombuffer(raw, "<u8").reshape(*chunks_per_shard, 2)


class ZarrShardWriter:
    """Writes one shard, the object ``key`` of ``storage``; inner chunks arrive in any order, at
    most once each.

    ``chunks_per_shard`` is the shard's inner-chunk grid, in the array's axis order; ``add``
    takes an inner chunk's position within the shard in the same order. The shard appears
    under ``key`` only when :meth:`finish` succeeds (durable after the storage's ``flush``);
    :meth:`close` instead drops it, leaving the key as it was.

    Chunks go to disk as they arrive, never collected in memory. In a local directory they go
    straight into the storage's stream, whose temporary file beside the shard is the spill (a
    killed writer leaves it under a name readers skip and a rerun clears). Elsewhere they go to
    an anonymous temporary file in :func:`tempfile.gettempdir` (gone when closed, or when the
    process dies), copied into the storage's stream once the shard is whole -- so an aborted
    task never starts an upload.
    """

    def __init__(self, storage: Storage, key: str, chunks_per_shard):
        self.storage = storage
        self.key = key
        self.chunks_per_shard = tuple(int(n) for n in chunks_per_shard)
        self._index = np.full((*self.chunks_per_shard, 2), EMPTY, np.uint64)
        self._stream: StreamWriter | None = None
        self._spill: BinaryIO | None = None
        if storage.local_root is not None:
            self._stream = storage.open_stream(key)
        else:
            self._spill = scratch_file()
        self._offset = 0
        self._open = True

    def add(self, position, data: bytes) -> None:
        position = tuple(int(p) for p in position)
        if self._index[position][0] != EMPTY:
            raise ValueError(f"inner chunk {position} of {self.storage.location(self.key)} written twice")
        self._write(data)
        self._index[position] = (self._offset, len(data))
        self._offset += len(data)

    def _write(self, data: bytes) -> None:
        # Only close() drops the file, and a writer is not used once closed (or finished).
        assert self._open, f"writer of {self.storage.location(self.key)} used after it was closed"
        if self._stream is not None:
            self._stream.write(data)
        else:
            assert self._spill is not None
            with spilling(f"collecting shard {self.storage.location(self.key)}"):
                self._spill.write(data)

    def finish(self) -> None:
        """Append the index and make the shard appear under its key."""
        try:
            self._write(encode_index(self._index))
            if self._spill is not None:
                spill = self._spill
                with spilling(f"collecting shard {self.storage.location(self.key)}"):
                    spill.seek(0)  # buffered data is written out here, when at all
                with self.storage.open_stream(self.key) as stream:  # aborted by an exception
                    while block := spill.read(COPY_BLOCK):
                        stream.write(block)
            else:
                assert self._stream is not None
                self._stream.close()
        finally:
            self.close()

    def close(self) -> None:
        """Drop the unfinished shard (after :meth:`finish`, or instead of it); harmless twice."""
        self._open = False
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.abort()  # nothing after close()
        if self._spill is not None:
            spill, self._spill = self._spill, None
            with contextlib.suppress(OSError):  # unwritten buffered data of a full disk: dropped anyway
                spill.close()


def read_index(reader: ObjectReader, name: str, chunks_per_shard) -> np.ndarray:
    """The index of one version of a shard (see :func:`decode_index`); ``name`` names the shard
    in messages."""
    size = reader.stat.size
    n = index_size(chunks_per_shard)
    if size < n:
        raise DamagedData(f"{name} is too short to be a shard ({size} bytes)")
    data = reader.read(size - n, n)
    index = decode_index(data, chunks_per_shard, name)
    used = index[index[..., 0] != EMPTY]
    if used.size and int((used[:, 0] + used[:, 1]).max()) > size - n:
        raise DamagedData(f"{name}: the shard index points past the chunks")
    return index
