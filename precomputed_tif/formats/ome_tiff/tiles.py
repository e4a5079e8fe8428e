"""Stage 1: independent tasks that turn slabs of z planes into compressed tiles of every level.

A task reads planes z0 <= z < z1 (all channels) from the source, and for each
z plane and channel makes the levels one after the other -- each the 2 x 2
mean in x and y of the one before (the most frequent label for
segmentations), through :func:`~precomputed_tif.pyramid.downsample.downsample` -- and
encodes each level's tiles as it goes. An odd last column or row is averaged
on its own: its coarser voxels are the mean of the 2 (or 1) voxels that
exist, integers rounded half up, as everywhere in the project. The tiles go to
one work file per z (:mod:`.spill`) in the destination's storage, flushed
before the task returns, so a task recorded as done has its files stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...geometry import Box
from ...pyramid.downsample import downsample
from ...sources import Source
from ...storage import Storage
from .codecs import encoder
from .layout import Layout
from .spill import SpillWriter, spill_key


@dataclass(frozen=True)
class SlabTask:
    """Planes z0 <= z < z1 of ``source`` (cut to them), to tile into work files in ``storage``."""

    source: Source
    layout: Layout
    z0: int
    z1: int
    storage: Storage
    compression: str
    segmentation: bool

    @property
    def id(self) -> str:
        return f"ome-tiff/z{self.z0}-{self.z1}"


def slab_tasks(source, layout: Layout, slab_planes: int, storage: Storage, compression: str,
               segmentation: bool) -> Iterator[SlabTask]:
    """Tasks of ``slab_planes`` z planes each (the last one may have fewer), in z order."""
    nz = layout.size[2]
    for z0 in range(0, nz, slab_planes):
        z1 = min(z0 + slab_planes, nz)
        yield SlabTask(source.subset(z0, z1), layout, z0, z1, storage, compression, segmentation)


def plane_levels(plane: np.ndarray, n_levels: int, segmentation: bool) -> Iterator[np.ndarray]:
    """The (y, x) levels of one plane, finest first; only two are held at a time."""
    level = plane
    for number in range(n_levels):
        yield level
        if number + 1 < n_levels:
            level = downsample(level[None], (2, 2, 1), segmentation)[0]


def plane_tiles(level: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Whole ``tile`` x ``tile`` tiles of a (y, x) level, row by row; edge tiles padded with zeros
    (as TIFF stores them)."""
    height, width = level.shape
    dtype = level.dtype.newbyteorder("<")
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            part = level[y0:y0 + tile, x0:x0 + tile]
            if part.shape == (tile, tile):
                yield np.ascontiguousarray(part, dtype)
            else:
                padded = np.zeros((tile, tile), dtype)
                padded[:part.shape[0], :part.shape[1]] = part
                yield padded


def run_slab(task: SlabTask) -> tuple[str, int]:
    """Write the work files of the task's planes; returns (task id, planes done)."""
    layout = task.layout
    x, y, _ = layout.size
    data = task.source.read(Box(0, x, 0, y, task.z0, task.z1))
    if data.ndim == 3:
        data = data[None]  # (c, z, y, x) always
    encode = encoder(task.compression)
    for i, z in enumerate(range(task.z0, task.z1)):
        with SpillWriter(task.storage, spill_key(z)) as out:
            for c in range(layout.channels):
                for level in plane_levels(data[c, i], layout.n_levels, task.segmentation):
                    for tile in plane_tiles(level, layout.tile):
                        out.add(encode(tile.tobytes()))
    task.storage.flush()
    return task.id, task.z1 - task.z0
