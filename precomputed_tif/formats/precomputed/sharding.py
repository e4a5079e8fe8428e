"""Neuroglancer's sharded format (``neuroglancer_uint64_sharded_v1``), for writing.

A sharded index stores many small values, each under a uint64 key, in a few
``<shard>.shard`` files. Each file starts with a shard index (one
``[start, end)`` pair per minishard, relative to the end of the shard index),
then holds the values, then each minishard's index: a ``[3, n]`` uint64 array
of delta-encoded keys, delta-encoded offsets and sizes, gzip-compressed here.
See ``sharded.md`` in the neuroglancer repository.

Keys are hashed with the identity function: the keys written here (annotation
ids, which are consecutive, and Morton codes of grid cells) already spread
evenly over the low bits.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence

import numpy as np

from ...geometry import ceil_div, morton_bits
from ...storage import Storage, check_key

# A minishard index is what a viewer fetches to find one key: keep it small.
KEYS_PER_MINISHARD = 512
KEYS_PER_SHARD = 65536
MAX_SHARD_BITS = 10


def sharding_spec(n_keys: int) -> dict:
    """A sharding specification sized for about ``n_keys`` keys."""
    n_keys = max(1, int(n_keys))
    shard_bits = min(MAX_SHARD_BITS, max(0, math.ceil(math.log2(n_keys / KEYS_PER_SHARD)))) \
        if n_keys > KEYS_PER_SHARD else 0
    per_shard = n_keys / 2**shard_bits
    minishard_bits = max(0, math.ceil(math.log2(per_shard / KEYS_PER_MINISHARD))) \
        if per_shard > KEYS_PER_MINISHARD else 0
    return {
        "@type": "neuroglancer_uint64_sharded_v1",
        "preshift_bits": 0,
        "hash": "identity",
        "minishard_bits": minishard_bits,
        "shard_bits": shard_bits,
        "minishard_index_encoding": "gzip",
        "data_encoding": "raw",
    }


def shard_file_name(spec: dict, shard: int) -> str:
    """``<shard>.shard`` with the number in lower-case hex, zero-padded to ceil(shard_bits / 4) digits."""
    digits = ceil_div(spec["shard_bits"], 4)
    return f"{shard:0{digits}x}.shard" if digits else "0.shard"


def write_sharded(storage: Storage, prefix: str, spec: dict, keys: Sequence[int] | np.ndarray,
                  values: Sequence[bytes], prefixes: Sequence[bytes] | None = None, durable: bool = True) -> list[str]:
    """Put every (key, value) into the shard objects ``<prefix>/<shard>.shard`` of ``storage``;
    returns their storage keys.

    Keys must be distinct. Each shard is one whole put (``durable``: flushed before the
    next one, as :meth:`~precomputed_tif.storage.Storage.put` says; else the caller flushes).
    With ``prefixes``, each value is stored right after its prefix, which the index does not
    cover: a multi-resolution mesh keeps its fragments just before its manifest this way
    (``meshes.md``).
    """
    if spec["hash"] != "identity" or spec.get("data_encoding", "raw") != "raw":
        raise ValueError("only identity hashing and raw data are written here")
    check_key(prefix)
    key_array = np.asarray(keys, dtype=np.uint64)
    hashed = key_array >> np.uint64(spec["preshift_bits"])
    mb, sb = spec["minishard_bits"], spec["shard_bits"]
    minishard = (hashed & np.uint64((1 << mb) - 1)).astype(np.int64)
    shard = ((hashed >> np.uint64(mb)) & np.uint64((1 << sb) - 1)).astype(np.int64)
    order = np.lexsort((key_array, minishard, shard))
    written = []
    bounds = np.searchsorted(shard[order], np.arange(2**sb + 1))
    for s in range(2**sb):
        members = order[bounds[s]:bounds[s + 1]]
        if len(members) == 0:
            continue
        key = f"{prefix}/{shard_file_name(spec, s)}"
        storage.put(key, _shard_bytes(mb, key_array[members], minishard[members], [values[i] for i in members],
                                      None if prefixes is None else [prefixes[i] for i in members]),
                    durable=durable)
        written.append(key)
    return written


def _shard_bytes(minishard_bits: int, keys: np.ndarray, minishards: np.ndarray, values: list[bytes],
                 prefixes: list[bytes] | None = None) -> bytes:
    """One shard file: shard index, then all (prefixes and) values, then the minishard indices."""
    n_mini = 2**minishard_bits
    sizes = np.array([len(v) for v in values], np.uint64)
    if prefixes is None:
        data = b"".join(values)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)  # relative to index_end
    else:
        data = b"".join(b for pair in zip(prefixes, values) for b in pair)
        ends = np.cumsum(np.array([len(p) + len(v) for p, v in zip(prefixes, values)], np.uint64))
        starts = (ends - sizes).astype(np.uint64)
    shard_index, tail = minishard_indexes(n_mini, minishards, keys, starts, sizes, len(data))
    return shard_index + data + tail


def minishard_indexes(n_mini: int, minishards: np.ndarray, keys: np.ndarray, starts: np.ndarray,
                      sizes: np.ndarray, data_end: int) -> tuple[bytes, bytes]:
    """(shard index, minishard indexes) of a shard whose values, sorted by minishard then key,
    start at ``starts`` (relative to the end of the shard index) and whose minishard indexes
    follow the values, from ``data_end`` on."""
    shard_index = np.zeros((n_mini, 2), np.uint64)
    tail = []
    pos = data_end
    bounds = np.searchsorted(minishards, np.arange(n_mini + 1))
    for m in range(n_mini):
        lo, hi = bounds[m], bounds[m + 1]
        if lo == hi:
            shard_index[m] = (pos, pos)
            continue
        k, st, sz = keys[lo:hi], starts[lo:hi], sizes[lo:hi]
        table = np.empty((3, hi - lo), np.uint64)
        table[0, 0], table[0, 1:] = k[0], np.diff(k)
        table[1, 0], table[1, 1:] = st[0], st[1:] - (st[:-1] + sz[:-1])
        table[2] = sz
        encoded = gzip.compress(table.astype("<u8").tobytes(), compresslevel=6, mtime=0)
        shard_index[m] = (pos, pos + len(encoded))
        pos += len(encoded)
        tail.append(encoded)
    return shard_index.astype("<u8").tobytes(), b"".join(tail)


def compressed_morton_codes(cells: np.ndarray, grid_shape: Sequence[int]) -> np.ndarray:
    """Compressed Morton codes (``volume.md``) of integer grid cells, one per row of ``cells``.

    Bit i of each axis, x first, is taken only while that axis still has bits:
    axes that stop subdividing stop contributing.
    """
    bits = morton_bits(grid_shape)
    cells = np.asarray(cells, dtype=np.uint64).reshape(-1, len(grid_shape))
    out = np.zeros(len(cells), np.uint64)
    j = 0
    for i in range(max(bits, default=0)):
        for d, b in enumerate(bits):
            if i < b:
                out |= ((cells[:, d] >> np.uint64(i)) & np.uint64(1)) << np.uint64(j)
                j += 1
    return out
