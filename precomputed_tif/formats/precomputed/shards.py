"""Volume chunks in Neuroglancer's sharded format: choosing shard shapes, writing one shard
file at a time, reading chunks back.

A chunk's key is the compressed Morton code of its grid position; with the
identity hash a shard is then an aligned box of 2^a x 2^b x 2^c chunks, the
chunks whose keys agree above their lowest ``preshift_bits + minishard_bits``
bits (:func:`box_bits` says which box a number of low bits makes). The
conversion plans its tasks so that one task writes exactly one shard of every
sharded level it makes, so no two processes ever touch one file.

A :class:`ShardWriter` takes chunks in any order, appends them to a temporary
file as they come (memory stays small whatever the shard's size), and at the
end writes the shard -- index, chunks sorted by minishard and key, minishard
indexes -- through its storage as one stream, which appears whole when closed
(:meth:`~precomputed_tif.storage.Storage.open_stream`). Shards are named by
storage keys, ``<scale key>/<shard>.shard``, and read by byte ranges of one
version of the object (:class:`ShardReader`): nothing here needs a local path.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import threading
import zlib
from collections.abc import Hashable, Sequence
from typing import BinaryIO

import numpy as np

from ...errors import DamagedData, PrecomputedTifError
from ...geometry import morton_bits
from ...storage import ObjectReader, Storage
from ...storage.atomic import temporary_name
from ...storage.scratch import scratch_file, spilling
from ..store import ChunkStore
from .sharding import compressed_morton_codes, minishard_indexes, shard_file_name

# Chunks per minishard: what a viewer reads to find one chunk is the minishard's index,
# 24 bytes per chunk before gzip.
PRESHIFT_BITS = 6


def sharding_spec(grid: Sequence[int], low_bits: int, data_encoding: str) -> dict:
    """A ``neuroglancer_uint64_sharded_v1`` spec whose shards are the boxes of ``low_bits``."""
    preshift = min(PRESHIFT_BITS, low_bits)
    return {
        "@type": "neuroglancer_uint64_sharded_v1",
        "preshift_bits": preshift,
        "hash": "identity",
        "minishard_bits": low_bits - preshift,
        "shard_bits": sum(morton_bits(grid)) - low_bits,
        "minishard_index_encoding": "gzip",
        "data_encoding": data_encoding,
    }


def chunk_key(grid: Sequence[int], index: Sequence[int]) -> int:
    return int(compressed_morton_codes(np.array([index]), grid)[0])


def _split(spec: dict, key: int) -> tuple[int, int]:
    """(shard, minishard) of a key under an identity-hash spec."""
    if spec.get("hash", "identity") != "identity":
        raise PrecomputedTifError(f"sharding hash {spec.get('hash')!r} is not supported; only identity")
    hashed = key >> spec["preshift_bits"]
    mb = spec["minishard_bits"]
    return (hashed >> mb) & ((1 << spec["shard_bits"]) - 1), hashed & ((1 << mb) - 1)


def shard_of(spec: dict, key: int) -> int:
    return _split(spec, key)[0]


def shard_key(prefix: str, spec: dict, shard: int) -> str:
    """The storage key of shard ``shard`` of the scale whose objects lie under ``prefix``."""
    return f"{prefix}/{shard_file_name(spec, shard)}"


class ShardWriter:
    """Writes one shard object; chunks arrive in any order, at most once each.

    The chunks wait in a spill file until :meth:`finish`, so memory stays small however large
    the shard: in a local directory beside the shard, under a temporary name (a killed
    writer's leftover is recognised and removed like any other, see
    :func:`~precomputed_tif.storage.atomic.is_temporary_name`); on other storage in an
    anonymous file in :func:`tempfile.gettempdir`, which disappears when closed (or when
    the process dies)."""

    def __init__(self, storage: Storage, prefix: str, spec: dict, shard: int):
        self.storage = storage
        self.key = shard_key(prefix, spec, shard)
        self.spec = spec
        self._spill_path: str | None = None
        if storage.local_root is not None:
            self._spill_path = temporary_name(os.path.join(storage.local_root, *self.key.split("/")))
            self._spill: BinaryIO | None = open(self._spill_path, "xb+")  # noqa: SIM115 - held by the object, which closes it
        else:
            self._spill = scratch_file()
        self._entries: list[tuple[int, int, int, int]] = []  # minishard, key, offset in spill, size

    def add(self, key: int, data: bytes) -> None:
        if self.spec.get("data_encoding", "raw") == "gzip":
            data = gzip.compress(data, compresslevel=1, mtime=0)
        spill = self._open_spill()
        offset = spill.tell()
        with self._spilling():
            spill.write(data)
        self._entries.append((_split(self.spec, key)[1], key, offset, len(data)))

    def finish(self) -> None:
        """Write the shard under its key: it appears whole, replacing any earlier one, or (on
        failure) not at all. The spill file is dropped either way."""
        spill = self._open_spill()
        entries = sorted(self._entries)
        sizes = np.array([e[3] for e in entries], np.uint64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64) if entries else sizes
        shard_index, tail = minishard_indexes(
            1 << self.spec["minishard_bits"], np.array([e[0] for e in entries], np.int64),
            np.array([e[1] for e in entries], np.uint64), starts, sizes, int(sizes.sum()) if entries else 0)
        try:
            # Leaving the block by an exception aborts the stream: the key keeps its old shard.
            with self.storage.open_stream(self.key) as out:
                out.write(shard_index)
                for _, _, offset, size in entries:
                    with self._spilling():
                        spill.seek(offset)  # buffered data is written out here, when at all
                        part = spill.read(size)
                    out.write(part)
                out.write(tail)
        finally:
            self.close()

    def _spilling(self):
        """Errors of the spill file: in a local directory it lies beside the shard (a full disk
        is the destination's, named by the shard); elsewhere in the temporary directory."""
        if self._spill_path is None:
            return spilling(f"collecting shard {self.storage.location(self.key)}")
        return _naming(self.storage.location(self.key))

    def _open_spill(self) -> BinaryIO:
        # Only close() drops the spill file, and a writer is not used once closed (or finished).
        assert self._spill is not None, f"writer of {self.storage.location(self.key)} used after it was closed"
        return self._spill

    def close(self) -> None:
        """Drop the temporary data (after :meth:`finish`, or instead of it)."""
        if self._spill is not None:
            spill, self._spill = self._spill, None
            try:
                with contextlib.suppress(OSError):  # unwritten buffered data of a full disk: dropped anyway
                    spill.close()
            finally:
                if self._spill_path is not None:
                    _unlink(self._spill_path)


@contextlib.contextmanager
def _naming(name: str):
    """An ``OSError`` without a file name gets ``name``: a full disk names what was being written."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = name
        raise


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class ShardReader:
    """Reads chunks of one sharded scale, whose shards lie under ``prefix``, through ``store``
    (:meth:`~precomputed_tif.formats.store.ChunkStore.open_object`: one version of a shard per
    read, so a chunk and the index pointing to it come from the same shard). Minishard indexes
    are cached (they are small), each with the version of the shard it was read from, so a
    shard written anew is read anew. Bytes that fail a check raise :class:`DamagedData` naming
    the shard as the storage names it (its path, or its URL)."""

    def __init__(self, store: ChunkStore, prefix: str, spec: dict):
        self.store, self.prefix, self.spec = store, prefix, spec
        # (shard, minishard) -> (the shard's version, the minishard's key -> (offset, size))
        self._cache: dict[tuple[int, int], tuple[Hashable, dict[int, tuple[int, int]] | None]] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"store": self.store, "prefix": self.prefix, "spec": self.spec}

    def __setstate__(self, state):
        ShardReader.__init__(self, state["store"], state["prefix"], state["spec"])

    def _damaged(self, object_key: str, what: str) -> DamagedData:
        """Damage to the shard ``object_key``, named as the storage names it; ``what`` follows the name."""
        return DamagedData(f"{self.store.location(object_key)}{what}")

    def _minishard(self, reader: ObjectReader, object_key: str, shard: int, minishard: int):
        version, size = reader.stat.version, reader.stat.size
        cached = self._cache.get((shard, minishard))
        if cached is not None and cached[0] == version:
            return cached[1]
        n_mini = 1 << self.spec["minishard_bits"]
        index_end = 16 * n_mini
        raw = reader.read(16 * minishard, 16)
        if len(raw) != 16:
            raise self._damaged(object_key, " is shorter than its shard index")
        start, end = (int(v) for v in np.frombuffer(raw, "<u8"))
        table = None
        if end > start:
            if index_end + end > size:
                raise self._damaged(object_key, ": a minishard index lies past the end of the file")
            data = reader.read(index_end + start, end - start)
            if self.spec.get("minishard_index_encoding", "raw") == "gzip":
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError, zlib.error) as exc:
                    raise self._damaged(object_key, f": a minishard index does not decompress ({exc})") from None
            if len(data) % 24:
                raise self._damaged(object_key, ": a minishard index is not a whole number of entries")
            t = np.frombuffer(data, "<u8").reshape(3, -1)
            keys = np.cumsum(t[0], dtype=np.uint64)
            sizes = t[2]
            starts = np.cumsum(t[1] + np.concatenate([[0], sizes[:-1]]).astype(np.uint64), dtype=np.uint64)
            table = {int(k): (index_end + int(s), int(n)) for k, s, n in zip(keys, starts, sizes)}
        with self._lock:
            self._cache[(shard, minishard)] = (version, table)
        return table

    def read(self, key: int) -> bytes | None:
        """The chunk stored under ``key``, decoded from the shard's data encoding; None when absent."""
        shard, minishard = _split(self.spec, key)
        object_key = shard_key(self.prefix, self.spec, shard)
        reader = self.store.open_object(object_key)  # DamagedData for what is not an object
        if reader is None:
            return None
        with reader:
            table = self._minishard(reader, object_key, shard, minishard)
            if not table or key not in table:
                return None
            offset, n = table[key]
            if offset + n > reader.stat.size:
                raise self._damaged(object_key, ": a chunk lies past the end of the file")
            data = reader.read(offset, n)
        if self.spec.get("data_encoding", "raw") == "gzip":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error) as exc:
                raise self._damaged(object_key, f": a chunk does not decompress ({exc})") from None
        return data
