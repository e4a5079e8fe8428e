"""A reader for precomputed point annotations written from annotations.md and sharded.md alone,
to check the project's writer (it shares no code with it)."""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

from tests.helpers.shard_reader import shard_entries

SIZES = {"uint32": 4, "int32": 4, "float32": 4, "uint16": 2, "int16": 2, "uint8": 1, "int8": 1}


def record_layout(info):
    """(record size, [(id, numpy type, byte offset)]) per the single-annotation encoding."""
    offset = 12
    layout = []
    for size in (4, 2, 1):  # the spec's order: 4-byte types, then 2-byte, then 1-byte
        for p in info["properties"]:
            if SIZES[p["type"]] == size:
                layout.append((p["id"], np.dtype(p["type"]).newbyteorder("<"), offset))
                offset += size
    return offset + (-offset % 4), layout


def decode_record(info, raw: bytes):
    size, layout = record_layout(info)
    assert len(raw) >= size
    point = struct.unpack_from("<3f", raw, 0)
    props = {pid: np.frombuffer(raw, t, 1, off)[0].item() for pid, t, off in layout}
    assert raw[size - (-(12 + sum(t.itemsize for _, t, _ in layout)) % 4):size] == b"\0" * (
        -(12 + sum(t.itemsize for _, t, _ in layout)) % 4)
    return point, props


def decode_list(info, data: bytes):
    """[(id, (x, y, z), properties)] from the multiple-annotation encoding."""
    (count,) = struct.unpack_from("<Q", data, 0)
    size, _ = record_layout(info)
    assert len(data) == 8 + count * (size + 8), "length does not match count"
    out = []
    for i in range(count):
        point, props = decode_record(info, data[8 + i * size:8 + (i + 1) * size])
        (aid,) = struct.unpack_from("<Q", data, 8 + count * size + 8 * i)
        out.append((aid, point, props))
    return out


def read_shards(directory: str, spec: dict) -> dict[int, bytes]:
    """Every key and value of a sharded index (see :mod:`shard_reader`)."""
    return {k: data[start:end] for k, (data, start, end) in shard_entries(directory, spec).items()}


def morton_decode(code: int, grid_shape):
    bits = [math.ceil(math.log2(g)) if g > 1 else 0 for g in grid_shape]
    cell = [0] * len(grid_shape)
    j = 0
    for i in range(max(bits, default=0)):
        for d in range(len(grid_shape)):
            if i < bits[d]:
                cell[d] |= ((code >> j) & 1) << i
                j += 1
    return tuple(cell)


def read_layer(directory: str):
    """(info, levels: [{cell: [(id, point, props)]}], by_id: {id: (point, props)} or None)."""
    with open(os.path.join(directory, "info")) as f:
        info = json.load(f)
    levels = []
    for level in info["spatial"]:
        path = os.path.join(directory, level["key"])
        cells = {}
        if "sharding" in level:
            for code, value in read_shards(path, level["sharding"]).items():
                cells[morton_decode(code, level["grid_shape"])] = decode_list(info, value)
        else:
            for name in os.listdir(path):
                entries = decode_list(info, open(os.path.join(path, name), "rb").read())
                if entries:  # an empty cell may have a file or none
                    cells[tuple(int(v) for v in name.split("_"))] = entries
        levels.append(cells)
    by_id = None
    if "by_id" in info:
        path = os.path.join(directory, info["by_id"]["key"])
        if "sharding" in info["by_id"]:
            raw = read_shards(path, info["by_id"]["sharding"])
        else:
            raw = {int(n): open(os.path.join(path, n), "rb").read() for n in os.listdir(path)}
        by_id = {k: decode_record(info, v) for k, v in raw.items()}
        by_id_raw = raw
    else:
        by_id_raw = None
    return info, levels, by_id, by_id_raw
