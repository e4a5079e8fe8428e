"""Stage 2: one sequential pass that streams the encoded tiles into the OME-TIFF.

tifffile writes the file from iterators of already-encoded tiles: first the
full-resolution page of every (z, channel) plane with room for its SubIFDs,
then each coarser level, one SubIFD per plane. It is a BigTIFF (as raw2ometiff
writes), little-endian, with the OME-XML in the first page's ImageDescription.
Memory stays that of one tile: tiles are read one at a time from the work
files.

The file is written under a hidden temporary name in the destination; its
offsets index is written next, and only then is the file renamed to its final
name -- so ``X.ome.tif`` exists only whole, with ``X.offsets.json`` beside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import tifffile
from tqdm import tqdm

from ...storage.atomic import sync_directory, temporary_name
from .codecs import tifffile_compression
from .layout import Layout
from .metadata import ome_metadata
from .offsets import top_level_ifd_offsets, write_offsets
from .spill import SpillReader, spill_path


def _level_tiles(layout: Layout, work: str, level: int, bar) -> Iterator[bytes]:
    """Encoded tiles of one level, plane after plane in file order (z, then channel)."""
    first = sum(layout.n_tiles(lv) for lv in range(level))
    n = layout.n_tiles(level)
    for z in range(layout.size[2]):
        with SpillReader(spill_path(work, z), layout.channels * layout.tiles_per_plane) as tiles:
            for c in range(layout.channels):
                yield from tiles.tiles(c * layout.tiles_per_plane + first, n)
        bar.update(1)


def assemble(plan, progress: bool = False) -> str:
    """Write ``plan.dest/X.ome.tif`` and ``X.offsets.json`` from the work files; returns the image path."""
    layout, dest = plan.layout, plan.dest
    work = os.path.join(dest, plan.names.work)
    final = os.path.join(dest, plan.names.image)
    tmp = temporary_name(final)
    metadata = ome_metadata(plan.voxel_size, plan.channel_names, plan.channel_colors, plan.names.image, plan.job,
                            dest)
    options = dict(dtype=layout.dtype, tile=(layout.tile, layout.tile), photometric="minisblack",
                   compression=tifffile_compression(plan.compression), software="precomputed-tif")
    try:
        with tqdm(total=layout.size[2] * layout.n_levels, desc="writing OME-TIFF", unit="plane",
                  disable=not progress) as bar, \
                tifffile.TiffWriter(tmp, bigtiff=True, byteorder="<", ome=True) as tif:
            for level, (x, y) in enumerate(layout.levels):
                if level == 0:
                    extra = dict(metadata=metadata, subifds=layout.n_levels - 1 or None)
                else:
                    extra = dict(metadata=None, subfiletype=1)  # FILETYPE.REDUCEDIMAGE
                tif.write(_level_tiles(layout, work, level, bar), shape=(layout.size[2], layout.channels, y, x),
                          **options, **extra)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        write_offsets(os.path.join(dest, plan.names.offsets), top_level_ifd_offsets(tmp))
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    sync_directory(dest)
    return final
