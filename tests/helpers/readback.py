"""Reading converted datasets back without the project's stores, for comparison."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import tifffile

from precomputed_tif.pipeline.destination import INPUTS
from precomputed_tif.pipeline.progress import DONE_LOG


def expected_chunk_names(size_xyz, chunk_xyz) -> set[str]:
    names = set()
    (sx, sy, sz), (cx, cy, cz) = size_xyz, chunk_xyz
    for z in range(0, sz, cz):
        for y in range(0, sy, cy):
            for x in range(0, sx, cx):
                names.add(f"{x}-{min(x + cx, sx)}_{y}-{min(y + cy, sy)}_{z}-{min(z + cz, sz)}")
    return names


def read_tiff_level(level_dir: str, size_xyz, chunk_xyz, dtype, channels: int = 1) -> np.ndarray:
    """Assemble a level from its chunk files, checking that exactly the expected files exist;
    (c, z, y, x) with several channels (each file holds channel 0's planes, then channel 1's...)."""
    files = [f for f in os.listdir(level_dir) if not f.startswith(".")]
    assert all(f.endswith(".tiff") for f in files), files
    names = {f[: -len(".tiff")] for f in files}
    assert names == expected_chunk_names(size_xyz, chunk_xyz)
    sx, sy, sz = size_xyz
    out = np.zeros((channels, sz, sy, sx), dtype)
    for name in names:
        x0, x1, y0, y1, z0, z1 = map(int, re.split("[-_]", name))
        chunk = tifffile.imread(os.path.join(level_dir, name + ".tiff"))
        assert chunk.dtype == np.dtype(dtype)
        out[:, z0:z1, y0:y1, x0:x1] = chunk.reshape(channels, z1 - z0, y1 - y0, x1 - x0)
    return out if channels > 1 else out[0]


def read_zarr_level(level_dir: str) -> np.ndarray:
    import zarr

    with open(os.path.join(level_dir, ".zarray")) as f:
        meta = json.load(f)
    assert meta["zarr_format"] == 2 and meta["dimension_separator"] == "/"
    return zarr.open_array(level_dir, mode="r")[:]


def read_level(dest: str, fmt: str, scale: dict, dtype, channels: int = 1) -> np.ndarray:
    """A level as (z, y, x), or (c, z, y, x) with several channels, read without the project's stores."""
    level_dir = os.path.join(dest, scale["key"])
    if fmt == "tiff":
        return read_tiff_level(level_dir, scale["size"], scale["chunk_sizes"][0], dtype, channels)
    if fmt == "zarr":
        return read_zarr_level(level_dir)
    if fmt == "blockfs":
        from tests.helpers.blockfs_reader import read_blockfs

        names = ["precomputed.blockfs"] + [f"precomputed_c{c}.blockfs" for c in range(1, channels)]
        levels = [read_blockfs(os.path.join(level_dir, n)) for n in names]
        return levels[0] if channels == 1 else np.stack(levels)
    raise ValueError(fmt)


def files_of(root):
    """Every file's bytes, by path relative to root, leaving out the run's own bookkeeping."""
    out = {}
    for base, _, names in os.walk(root):
        for n in names:
            if n in (DONE_LOG, ".precomputed-tif.json", INPUTS):
                continue
            path = os.path.join(base, n)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    if ".zattrs" in out:  # the NGFF image is named after its directory
        attrs = json.loads(out[".zattrs"])
        attrs["multiscales"][0].pop("name")
        out[".zattrs"] = json.dumps(attrs).encode()
    return out


def dataset_contents(dest, fmt: str = "") -> dict:
    """What two runs of the same conversion must agree on: every file byte for byte
    (:func:`files_of`), except for blockfs, whose files record blocks in the order tasks
    finished and their own paths: its ``info`` and voxels, read independently."""
    if fmt != "blockfs":
        return files_of(dest)
    with open(os.path.join(dest, "info")) as f:
        info = json.load(f)
    return {"info": info, **{s["key"]: read_level(str(dest), "blockfs", s, info["data_type"],
                                                   info.get("num_channels", 1)) for s in info["scales"]}}


def assert_same_contents(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, v in want.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(got[k], v, err_msg=k)
        else:
            assert got[k] == v, k


def ome_tiff_levels(path):
    """Every level of a pyramidal OME-TIFF as tifffile reads it: (c, z, y, x) arrays."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        assert tif.is_ome and tif.is_bigtiff
        out = []
        for level in series.levels:
            data, axes = level.asarray(), level.axes
            for axis in "CZ":
                if axis not in axes:
                    data, axes = data[None], axis + axes
            out.append(data.transpose([axes.index(a) for a in "CZYX"]))
        return out
