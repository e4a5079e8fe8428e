"""A reader for multi-resolution meshes written from meshes.md and sharded.md alone (with DracoPy
to decode the fragments), to check the project's writer independently of cloud-volume."""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from tests.helpers.shard_reader import shard_entries  # noqa: F401  (part of this reader)


def read_mesh_dir(directory: str) -> tuple[dict, dict[int, tuple[bytes, bytes]]]:
    """(info, {segment: (fragment data, manifest)}) for sharded and unsharded layouts."""
    with open(os.path.join(directory, "info")) as f:
        info = json.load(f)
    assert info["@type"] == "neuroglancer_multilod_draco"
    out = {}
    if "sharding" in info:
        for seg, (data, start, end) in shard_entries(directory, info["sharding"]).items():
            man = data[start:end]
            # The fragment data sits right before the manifest in the same shard file.
            total = sum(int(lod["sizes"].sum()) for lod in parse_manifest(man)["lods"])
            assert start - total >= 16 * 2 ** info["sharding"]["minishard_bits"]
            out[seg] = (data[start - total:start], man)
    else:
        for name in os.listdir(directory):
            if name.endswith(".index"):
                seg = int(name[:-6])
                with open(os.path.join(directory, name), "rb") as f:
                    man = f.read()
                with open(os.path.join(directory, str(seg)), "rb") as f:
                    out[seg] = (f.read(), man)
    return info, out


def parse_manifest(raw: bytes) -> dict:
    chunk_shape = struct.unpack_from("<3f", raw, 0)
    grid_origin = struct.unpack_from("<3f", raw, 12)
    (num_lods,) = struct.unpack_from("<I", raw, 24)
    pos = 28
    lod_scales = np.frombuffer(raw, "<f4", num_lods, pos)
    pos += 4 * num_lods
    offsets = np.frombuffer(raw, "<f4", 3 * num_lods, pos).reshape(num_lods, 3)
    pos += 12 * num_lods
    counts = np.frombuffer(raw, "<u4", num_lods, pos)
    pos += 4 * num_lods
    lods = []
    for n in counts:
        positions = np.frombuffer(raw, "<u4", 3 * n, pos).reshape(3, n).T
        pos += 12 * n
        sizes = np.frombuffer(raw, "<u4", n, pos)
        pos += 4 * n
        lods.append({"positions": positions, "sizes": sizes})
    assert pos == len(raw), "manifest has trailing bytes"
    return {"chunk_shape": np.array(chunk_shape), "grid_origin": np.array(grid_origin), "lod_scales": lod_scales,
            "vertex_offsets": offsets, "lods": lods}


def fragments(data: bytes, manifest: dict, bits: int):
    """Yield (lod, position, quantized vertices, faces, stored-model vertices) of every non-empty fragment."""
    import DracoPy

    at = 0
    for lod, level in enumerate(manifest["lods"]):
        for position, size in zip(level["positions"], level["sizes"]):
            blob = data[at:at + int(size)]
            at += int(size)
            if not size:
                continue
            mesh = DracoPy.decode(blob)
            q = np.asarray(mesh.points, np.float64).reshape(-1, 3)
            assert np.all(q == np.round(q)) and q.min() >= 0 and q.max() <= 2**bits - 1
            faces = np.asarray(mesh.faces, np.int64).reshape(-1, 3)
            scale = manifest["chunk_shape"] * 2**lod
            stored = (manifest["grid_origin"] + manifest["vertex_offsets"][lod]
                      + scale * (position + q / (2**bits - 1)))
            yield lod, tuple(int(v) for v in position), q, faces, stored
    assert at == len(data)


def to_model(info: dict, stored: np.ndarray) -> np.ndarray:
    t = np.array(info["transform"], np.float64).reshape(3, 4)
    return stored @ t[:, :3].T + t[:, 3]
