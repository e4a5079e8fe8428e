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
indexes -- under a temporary name and renames it into place.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import threading
import zlib
from collections.abc import Sequence

import numpy as np

from ...errors import DamagedData, PrecomputedTifError
from ...storage.atomic import temporary_name
from ...storage.regular_files import NotRegularFile, file_version, open_regular_or_raise
from .sharding import compressed_morton_codes, minishard_indexes, morton_bits, shard_file_name

# Chunks per minishard: what a viewer reads to find one chunk is the minishard's index,
# 24 bytes per chunk before gzip.
PRESHIFT_BITS = 6


def box_bits(grid: Sequence[int], low_bits: int) -> tuple[int, ...]:
    """How many of each axis' bits are among the lowest ``low_bits`` bits of the compressed
    Morton code of a grid of ``grid`` cells: the chunks that share the other bits make a box
    of 2**bits cells per axis."""
    total = morton_bits(grid)
    counts = [0] * len(grid)
    j = 0
    for i in range(max(total, default=0)):
        for d, b in enumerate(total):
            if i < b:
                if j == low_bits:
                    return tuple(counts)
                counts[d] += 1
                j += 1
    return tuple(counts)


def low_bits_for_box(grid: Sequence[int], bits: Sequence[int]) -> int | None:
    """The number of low Morton bits whose chunks make a box of 2**bits cells per axis
    (each capped at what the grid has), or None when no number of bits makes that box."""
    capped = tuple(min(b, t) for b, t in zip(bits, morton_bits(grid)))
    n = sum(capped)
    return n if box_bits(grid, n) == capped else None


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


def shard_path(directory: str, spec: dict, shard: int) -> str:
    return os.path.join(directory, shard_file_name(spec, shard))


class ShardWriter:
    """Writes one shard file; chunks arrive in any order, at most once each."""

    def __init__(self, directory: str, spec: dict, shard: int):
        self.path = shard_path(directory, spec, shard)
        self.spec = spec
        self._spill_path = temporary_name(self.path)
        self._spill: io.BufferedRandom | None = open(self._spill_path, "xb+")  # noqa: SIM115 - held by the object, which closes it
        self._entries: list[tuple[int, int, int, int]] = []  # minishard, key, offset in spill, size

    def add(self, key: int, data: bytes) -> None:
        if self.spec.get("data_encoding", "raw") == "gzip":
            data = gzip.compress(data, compresslevel=1, mtime=0)
        spill = self._open_spill()
        offset = spill.tell()
        spill.write(data)
        self._entries.append((_split(self.spec, key)[1], key, offset, len(data)))

    def finish(self, durable=None) -> None:
        """Write the shard under its own name; ``durable(f)`` (if given) is called on the finished
        file before it is renamed into place."""
        spill = self._open_spill()
        entries = sorted(self._entries)
        sizes = np.array([e[3] for e in entries], np.uint64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64) if entries else sizes
        shard_index, tail = minishard_indexes(
            1 << self.spec["minishard_bits"], np.array([e[0] for e in entries], np.int64),
            np.array([e[1] for e in entries], np.uint64), starts, sizes, int(sizes.sum()) if entries else 0)
        tmp = temporary_name(self.path)
        try:
            with open(tmp, "xb") as out:
                out.write(shard_index)
                for _, _, offset, size in entries:
                    spill.seek(offset)
                    out.write(spill.read(size))
                out.write(tail)
                if durable is not None:
                    durable(out)
            os.replace(tmp, self.path)
        except BaseException:
            _unlink(tmp)
            raise
        finally:
            self.close()

    def _open_spill(self) -> io.BufferedRandom:
        # Only close() drops the spill file, and a writer is not used once closed (or finished).
        assert self._spill is not None, f"writer of {self.path} used after it was closed"
        return self._spill

    def close(self) -> None:
        """Drop the temporary data (after :meth:`finish`, or instead of it)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None
            _unlink(self._spill_path)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class ShardReader:
    """Reads chunks of one sharded scale; minishard indexes are cached (they are small), each
    with the version of the shard file it was read from, so a shard written anew is read anew.
    Bytes that fail a check raise :class:`DamagedData` naming the shard file."""

    def __init__(self, directory: str, spec: dict):
        self.directory, self.spec = directory, spec
        # (shard, minishard) -> (the shard file's version, the minishard's key -> (offset, size))
        self._cache: dict[tuple[int, int], tuple[tuple[int, int, int, int], dict[int, tuple[int, int]] | None]] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"directory": self.directory, "spec": self.spec}

    def __setstate__(self, state):
        self.__init__(state["directory"], state["spec"])

    def _minishard(self, f, path: str, st: os.stat_result, shard: int, minishard: int):
        version, size = file_version(st), st.st_size
        cached = self._cache.get((shard, minishard))
        if cached is not None and cached[0] == version:
            return cached[1]
        n_mini = 1 << self.spec["minishard_bits"]
        index_end = 16 * n_mini
        f.seek(16 * minishard)
        raw = f.read(16)
        if len(raw) != 16:
            raise DamagedData(f"{path} is shorter than its shard index")
        start, end = (int(v) for v in np.frombuffer(raw, "<u8"))
        table = None
        if end > start:
            if index_end + end > size:
                raise DamagedData(f"{path}: a minishard index lies past the end of the file")
            f.seek(index_end + start)
            data = f.read(end - start)
            if self.spec.get("minishard_index_encoding", "raw") == "gzip":
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError, zlib.error) as exc:
                    raise DamagedData(f"{path}: a minishard index does not decompress ({exc})") from None
            if len(data) % 24:
                raise DamagedData(f"{path}: a minishard index is not a whole number of entries")
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
        path = shard_path(self.directory, self.spec, shard)
        try:
            f = open_regular_or_raise(path)  # used by the with below; only opening may mean "no shard"
        except FileNotFoundError:
            return None
        except NotRegularFile:
            raise DamagedData(f"{path} is not a regular file") from None
        with f:
            st = os.fstat(f.fileno())
            size = st.st_size
            table = self._minishard(f, path, st, shard, minishard)
            if not table or key not in table:
                return None
            offset, n = table[key]
            if offset + n > size:
                raise DamagedData(f"{path}: a chunk lies past the end of the file")
            f.seek(offset)
            data = f.read(n)
        if self.spec.get("data_encoding", "raw") == "gzip":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error) as exc:
                raise DamagedData(f"{path}: a chunk does not decompress ({exc})") from None
        return data
