"""How a dataset should look the first time it opens: a contrast range and a colour per channel
(names and colours themselves: :mod:`.channels`).

Microscope cameras fill 12 or 14 bits of a uint16, so Neuroglancer's default
range (the whole type) shows them nearly black. The range is measured once, at
conversion, as robust percentiles of a coarse level, and kept in ``info``
under ``precomputed_tif`` so every link the tools print can carry it.
"""

from __future__ import annotations

import numpy as np

from .. import channels
from ..formats.store import ChunkStore
from ..info import EXTRA, INFO, VolumeInfo

LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
# Voxels (all channels) read to measure the range: the finest level at most this large,
# or chunks spread over the coarsest one.
SAMPLE_VOXELS = 1 << 23


def _sample(store: ChunkStore, volume: VolumeInfo) -> np.ndarray:
    """(c, n) voxels of the finest level small enough to read whole (or chunks spread over
    the coarsest level)."""
    scales = volume.scales
    c = store.channels
    grid = next((s for s in scales if np.prod(s.size) * c <= SAMPLE_VOXELS), scales[-1])
    boxes = [grid.bounds]
    if np.prod(grid.size) * c > SAMPLE_VOXELS:
        boxes = list(grid.chunk_boxes())
        step = max(1, int(np.ceil(len(boxes) * np.prod(grid.chunk_size) * c / SAMPLE_VOXELS)))
        boxes = boxes[::step]
    parts = [store.read_region(grid.key, b).reshape(c, -1) for b in boxes]
    return np.concatenate(parts, axis=1)


def display_range(store: ChunkStore, info: dict | VolumeInfo, rgb: bool = False) -> list[list[float]]:
    """[lo, hi] per channel: the 0.5 and 99.5 percentiles (the type's range for colour images,
    whose values mean colours already)."""
    volume = VolumeInfo.of(info)
    dtype = volume.dtype
    if rgb and dtype.kind in "ui":
        return [[0, int(np.iinfo(dtype).max)]] * store.channels
    ranges = []
    for channel in _sample(store, volume):
        if dtype.kind == "f":
            channel = channel[np.isfinite(channel)]
        if channel.size == 0:
            ranges.append([0.0, 1.0])
            continue
        lo, hi = np.percentile(channel, [LOW_PERCENTILE, HIGH_PERCENTILE])
        if dtype.kind in "ui":
            lo, hi = int(np.floor(lo)), int(np.ceil(hi))
            hi = max(hi, lo + 1)
        else:
            lo, hi = float(lo), float(hi)
            hi = hi if hi > lo else lo + 1.0
        ranges.append([lo, hi])
    return ranges


def add_display(info: dict, store: ChunkStore, rgb: bool) -> dict:
    """``info`` with the display settings of an image (a segmentation needs none)."""
    volume = VolumeInfo.of(info, store.location(INFO))
    if volume.volume_type != "image":
        return info
    old = dict(volume.extra)
    extra = {
        "display_range": display_range(store, volume, rgb),
        # The source's colours, chosen when the conversion was planned (see .channels).
        "channel_colors": list(volume.channel_colors) or channels.colors(store.channels, rgb),
    }
    if rgb:
        extra["rgb"] = True
    return {**info, EXTRA: {**old, **extra}}
