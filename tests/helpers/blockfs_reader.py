"""A blockfs 1.0.0 reader written from the format description alone, for checking the project's writer.

Deliberately simple and separate from ``precomputed_tif.formats.blockfs``: it reads
the whole directory at once and decodes with numcodecs directly.
"""

from __future__ import annotations

import json
import os
import struct

import numcodecs
import numpy as np


def read_header(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"BlockFS\0"
    m, dir_offset = struct.unpack("<II", data[8:16])
    assert dir_offset == 16 + m
    meta = json.loads(data[16:16 + m].decode("utf-8"))
    return meta, data[dir_offset:]


def read_blockfs(path) -> np.ndarray:
    meta, entries = read_header(path)
    bx, by, bz = meta["XBlockSize"], meta["YBlockSize"], meta["ZBlockSize"]
    ex, ey, ez = meta["XExtent"], meta["YExtent"], meta["ZExtent"]
    obits, sbits = meta["NOffsetBits"], meta["NSizeBits"]
    esize = (obits + sbits + 7) // 8
    dtype = np.dtype(meta["DType"])
    files = []
    for name in meta["BlockFilenames"]:
        if not os.path.exists(name):
            name = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.basename(name))
        with open(name, "rb") as f:
            files.append(f.read())
    out = np.zeros((ez, ey, ex), dtype)
    for z0 in range(0, ez, bz):
        for y0 in range(0, ey, by):
            for x0 in range(0, ex, bx):
                slot = x0 // bx * meta["XStride"] + y0 // by * meta["YStride"] + z0 // bz * meta["ZStride"]
                raw = entries[slot * esize:(slot + 1) * esize]
                if len(raw) < esize:
                    continue
                value = int.from_bytes(raw, "little")
                offset, size = value % (1 << obits), (value >> obits) % (1 << sbits)
                if size == 0:
                    continue
                frame = files[slot % len(files)][offset:offset + size]
                shape = (min(bz, ez - z0), min(by, ey - y0), min(bx, ex - x0))
                block = np.frombuffer(numcodecs.Blosc().decode(frame), dtype).reshape(shape)
                out[z0:z0 + shape[0], y0:y0 + shape[1], x0:x0 + shape[2]] = block
    return out
