"""Pure numpy downsampling by 2 (or 1) per axis.

Both functions take a (z, y, x) array and a step in **x, y, z** order, each 1 or
2, and return an array of shape ``ceil(n / step)`` per axis; :func:`downsample`
also takes (c, z, y, x) arrays and downsamples each channel. Where an axis has
odd length the last output voxel along it is made only from the voxels that
exist (the array is never padded with zeros).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SUM_DTYPE = {
    np.dtype(np.int8): np.int16,
    np.dtype(np.int16): np.int32,
    np.dtype(np.int32): np.int64,
    np.dtype(np.uint8): np.uint16,
    np.dtype(np.uint16): np.uint32,
    np.dtype(np.uint32): np.uint64,
    np.dtype(np.uint64): np.uint64,
    np.dtype(np.float32): np.float64,
}


def _pad_odd(arr: np.ndarray, steps_zyx: Sequence[int]) -> np.ndarray:
    """Repeat the last plane along odd axes that are halved.

    Repeating the single in-bounds voxel of an edge block counts every voxel of
    that block equally often, so both the mean and the mode of the padded block
    equal those of the voxels that exist.
    """
    pad = [(0, (n % 2) if s == 2 else 0) for n, s in zip(arr.shape, steps_zyx)]
    if any(p for _, p in pad):
        arr = np.pad(arr, pad, mode="edge")
    return arr


def _pairs(arr: np.ndarray, steps_zyx: Sequence[int]) -> list[np.ndarray]:
    """The 2, 4 or 8 strided views whose elementwise combination is one output voxel."""
    views = [arr]
    for axis, s in enumerate(steps_zyx):
        if s == 2:
            index = [slice(None)] * 3
            nxt = []
            for v in views:
                index[axis] = slice(0, None, 2)
                nxt.append(v[tuple(index)])
                index[axis] = slice(1, None, 2)
                nxt.append(v[tuple(index)])
            views = nxt
    return views


def downsample_mean(arr: np.ndarray, step: Sequence[int]) -> np.ndarray:
    """Mean of each block of in-bounds voxels; integers rounded to nearest, half up (towards
    +infinity, also for negative values: -2.5 becomes -2).

    Sums are accumulated in a wider type so nothing overflows; the result has
    the input's dtype.
    """
    steps_zyx = tuple(reversed(tuple(step)))
    if steps_zyx == (1, 1, 1):
        return arr.copy()
    arr = _pad_odd(arr, steps_zyx)
    views = _pairs(arr, steps_zyx)
    acc = views[0].astype(_SUM_DTYPE[arr.dtype])
    for v in views[1:]:
        acc += v
    n = len(views)
    if arr.dtype.kind == "f":
        acc /= n
        return acc.astype(arr.dtype)
    acc += n // 2
    acc //= n
    return acc.astype(arr.dtype)


def downsample_mode(arr: np.ndarray, step: Sequence[int]) -> np.ndarray:
    """Most frequent label of each block; ties go to the smallest of the tied labels.

    Meant for segmentations: no label is ever made up, every output label occurs
    in its block.
    """
    steps_zyx = tuple(reversed(tuple(step)))
    if steps_zyx == (1, 1, 1):
        return arr.copy()
    arr = _pad_odd(arr, steps_zyx)
    views = [np.ascontiguousarray(v) for v in _pairs(arr, steps_zyx)]
    best = views[0].copy()
    best_count = np.zeros(best.shape, np.uint8)
    for candidate in views:
        count = np.zeros(best.shape, np.uint8)
        for other in views:
            count += candidate == other
        better = (count > best_count) | ((count == best_count) & (candidate < best))
        np.copyto(best, candidate, where=better)
        np.copyto(best_count, count, where=better)
    return best


def downsample(arr: np.ndarray, step: Sequence[int], segmentation: bool) -> np.ndarray:
    """Mode for segmentations, mean for images; a (c, z, y, x) array channel by channel."""
    if arr.ndim == 4:
        return np.stack([downsample(channel, step, segmentation) for channel in arr])
    return downsample_mode(arr, step) if segmentation else downsample_mean(arr, step)
