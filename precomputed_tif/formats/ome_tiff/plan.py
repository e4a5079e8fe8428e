"""Deciding an OME-TIFF conversion: sizes, tiles, compression, workers and slabs. Writes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ... import channels
from ...geometry import ceil_div
from ...pipeline import memory
from ...pyramid import DEFAULT_BLOCK_BYTES
from ...storage import Storage, StorageLike, absolute, open_storage
from .codecs import DEFAULT_COMPRESSION, check_compression
from .format import OmeTiffFormat
from .layout import DEFAULT_TILE_SIZE, Layout, Names, check_tile_size, level_sizes
from .metadata import check_pixel_type

log = logging.getLogger(__name__)

FORMAT = OmeTiffFormat.name
# Besides the slab it reads, a worker holds about this many planes (of one channel) while it
# makes one plane's levels: an edge-padded copy of an odd-sized level, the wider sums of the
# next level, and that level.
PLANE_OVERHEAD = 2


@dataclass(frozen=True)
class OmeTiffPlan:
    """Everything an OME-TIFF conversion will do, decided before anything is written.

    ``dest`` names the destination in messages and records (a path or URL), ``storage`` is
    where everything is written; ``voxel_size`` is in µm (x, y, z); ``slab_planes`` is how many
    z planes one stage-1 task reads at once.
    """

    source: object
    dest: str
    storage: Storage
    layout: Layout
    names: Names
    compression: str
    voxel_size: tuple[float, float, float]
    voxel_size_from: str
    segmentation: bool
    rgb: bool
    slab_planes: int
    n_workers: int | None
    dask_scheduler: str | None
    job: dict
    # A name and a "#rrggbb" colour per channel (see ..channels).
    channel_names: tuple[str, ...] = ()
    channel_colors: tuple[str, ...] = ()


def plan(stack, dest: StorageLike, *, voxel_size, voxel_size_from: str, levels: int | None = None,
         tile_size: int | None = None, compression: str | None = None, segmentation: bool = False,
         n_cores: int | None = None, memory_limit: int | None = None, dask_scheduler: str | None = None,
         block_bytes: int = DEFAULT_BLOCK_BYTES, channel: int | None = None,
         timepoint: int | None = None) -> OmeTiffPlan:
    """Plan writing ``stack`` (already opened; ``voxel_size`` in µm, x, y, z) as one OME-TIFF in ``dest``
    (a local directory's path, or a :class:`~...storage.Storage`: a bucket's prefix, say)."""
    storage = open_storage(dest)
    dest = storage.location()
    tile = check_tile_size(DEFAULT_TILE_SIZE if tile_size is None else int(tile_size))
    compression = check_compression(DEFAULT_COMPRESSION if compression is None else compression)
    check_pixel_type(stack.dtype)
    z, y, x = stack.shape
    layout = Layout((x, y, z), stack.n_channels, stack.dtype.name, tile, level_sizes(x, y, tile, levels))
    n_workers, slab_planes = _fit_memory(memory_limit, n_cores, dask_scheduler, layout, stack.dtype.itemsize,
                                         block_bytes)
    names = Names.of(storage)
    channel_names, channel_colors = channels.of_source(stack)
    job = {
        "format": FORMAT,
        "source": {"first": absolute(stack.files[0]), "last": absolute(stack.files[-1]),
                   "planes": stack.n_planes, "channel": channel, "timepoint": timepoint},
        "ome_tiff": {"size": list(layout.size), "channels": layout.channels, "data_type": layout.dtype,
                     "tile_size": tile, "levels": [list(s) for s in layout.levels], "compression": compression,
                     "voxel_size_um": list(voxel_size), "segmentation": segmentation, "rgb": bool(stack.rgb),
                     "channel_names": channel_names, "channel_colors": channel_colors},
        # What destination.py removes on --overwrite; the first is there only when the run finished.
        "files": [names.image, names.offsets, names.work],
    }
    log.info("%d planes of %dx%d %s%s -> %s, %d levels, tiles of %d, %s", z, x, y, stack.dtype.name,
             f", {layout.channels} channels" if layout.channels > 1 else "", storage.location(names.image),
             layout.n_levels, tile, compression)
    return OmeTiffPlan(stack, dest, storage, layout, names, compression, tuple(voxel_size), voxel_size_from,
                       segmentation, bool(stack.rgb), slab_planes, n_workers, dask_scheduler, job,
                       tuple(channel_names), tuple(channel_colors))


def _fit_memory(limit, n_cores, dask_scheduler, layout: Layout, itemsize: int,
                block_bytes: int) -> tuple[int | None, int]:
    """(workers, z planes per task) under the memory limit: a worker holds a slab of planes plus
    the work of one plane, never the volume."""
    x, y, nz = layout.size
    plane = x * y * itemsize
    z_bytes = plane * layout.channels
    overhead = PLANE_OVERHEAD * plane
    channels = f" with {layout.channels} channels" if layout.channels > 1 else ""
    n, block = memory.fit(limit, n_cores, dask_scheduler, z_bytes + overhead, block_bytes + overhead,
                          needs=f"for planes of {x}x{y} {layout.dtype}{channels}")
    slab = max(1, (block - overhead) // z_bytes)
    if n is not None:
        # Enough tasks that every worker has some, and a rerun after a kill has little to redo.
        slab = max(1, min(slab, ceil_div(nz, 2 * n)))
    log.debug("%d planes per task", slab)
    return n, slab
