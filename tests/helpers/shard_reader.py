"""A reader of Neuroglancer's sharded format (``sharded.md``), written from the description alone,
for checking every sharded writer of the project: point, mesh and volume shards."""

from __future__ import annotations

import gzip
import math
import os
import struct

import numpy as np


def shard_entries(directory: str, spec: dict) -> dict[int, tuple[bytes, int, int]]:
    """{key: (shard file bytes, start, end)} of a sharded index (identity hash), checking that
    each key is in the shard and minishard its hash says."""
    assert spec["@type"] == "neuroglancer_uint64_sharded_v1" and spec["hash"] == "identity"
    mb, sb = spec["minishard_bits"], spec["shard_bits"]
    digits = math.ceil(sb / 4)
    out = {}
    for name in os.listdir(directory):
        if not name.endswith(".shard"):
            continue
        shard = int(name.split(".")[0], 16)
        assert name == f"{shard:0{digits}x}.shard" or (digits == 0 and name == "0.shard"), name
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        index_end = 16 * 2**mb
        for m in range(2**mb):
            start, end = struct.unpack_from("<QQ", data, 16 * m)
            if start == end:
                continue
            raw = data[index_end + start:index_end + end]
            if spec.get("minishard_index_encoding") == "gzip":
                raw = gzip.decompress(raw)
            table = np.frombuffer(raw, "<u8").reshape(3, -1)
            keys = np.cumsum(table[0])
            pos = index_end
            for k, delta, size in zip(keys, table[1], table[2]):
                pos += int(delta)
                h = int(k) >> spec["preshift_bits"]
                assert h & (2**mb - 1) == m and (h >> mb) & (2**sb - 1) == shard
                assert int(k) not in out
                out[int(k)] = (data, pos, pos + int(size))
                pos += int(size)
    return out
