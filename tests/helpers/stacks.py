"""Small generated TIFF stacks for tests, and a slow, obvious reference pyramid."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import tifffile


def make_volume(shape_zyx, dtype, segmentation=False, seed=0) -> np.ndarray:
    """A (z, y, x) volume with structure and noise, using the dtype's full range."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if segmentation:
        # Blocky labels with ragged borders, so modes and ties both happen.
        z, y, x = np.indices(shape_zyx)
        labels = (z // 5) * 1000 + (y // 7) * 10 + (x // 3) % 4
        labels = labels + (rng.random(shape_zyx) < 0.2) * rng.integers(1, 4, shape_zyx)
        offset = {1: 0, 2: 0, 4: 2**31, 8: 2**40}[dtype.itemsize]
        modulus = {1: 251, 2: 65521, 4: 2**31, 8: 2**60}[dtype.itemsize]
        return (labels % modulus + offset).astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape_zyx) < 0.5
    if dtype.kind == "f":
        return (rng.standard_normal(shape_zyx) * 1000).astype(dtype)
    top = np.iinfo(dtype).max
    v = rng.integers(0, top, shape_zyx, dtype=np.uint64, endpoint=True)
    v[:, :5, :] = top  # saturated rows: sums of maxima must not overflow
    return v.astype(dtype)


def write_planes(directory, volume, prefix="img_", compression=None, tile=None, **kw) -> str:
    """One TIFF per z plane; returns the glob that matches them."""
    os.makedirs(directory, exist_ok=True)
    for z, plane in enumerate(volume):
        tifffile.imwrite(os.path.join(directory, f"{prefix}{z:04d}.tif"), plane,
                         compression=compression, tile=tile, photometric="minisblack", **kw)
    return os.path.join(str(directory), f"{prefix}*.tif")


def _mode(values) -> int:
    counts = Counter(values.ravel().tolist())
    best = max(counts.values())
    return min(v for v, c in counts.items() if c == best)


def reference_downsample(arr: np.ndarray, step_xyz, segmentation: bool) -> np.ndarray:
    """Block by block, the way the spec is worded: mean (rounded half up) or mode of in-bounds voxels."""
    sz, sy, sx = (2 if s == 2 else 1 for s in reversed(step_xyz))
    out_shape = tuple(-(-n // s) for n, s in zip(arr.shape, (sz, sy, sx)))
    if segmentation:
        out = np.empty(out_shape, arr.dtype)
        for i in np.ndindex(*out_shape):
            block = arr[i[0] * sz:(i[0] + 1) * sz, i[1] * sy:(i[1] + 1) * sy, i[2] * sx:(i[2] + 1) * sx]
            out[i] = _mode(block)
        return out
    padded = np.full(tuple(n * s for n, s in zip(out_shape, (sz, sy, sx))), np.nan)
    padded[: arr.shape[0], : arr.shape[1], : arr.shape[2]] = arr
    blocks = padded.reshape(out_shape[0], sz, out_shape[1], sy, out_shape[2], sx)
    mean = np.nanmean(blocks, axis=(1, 3, 5))
    if arr.dtype.kind == "f":
        return mean.astype(arr.dtype)
    return np.floor(mean + 0.5).astype(arr.dtype)


def reference_pyramid(volume: np.ndarray, steps, segmentation: bool) -> list[np.ndarray]:
    """Levels 1..n from the full-resolution volume and each level's (x, y, z) step."""
    levels = [volume]
    for step in steps[1:]:
        levels.append(reference_downsample(levels[-1], step, segmentation))
    return levels
