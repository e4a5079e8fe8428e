"""Where everything lies in a pyramidal OME-TIFF: level sizes, tile grids, plane order, file names.

Conventions (as in the rest of the project): sizes are given **x, y** (and z)
in voxels; arrays are (y, x); ranges are half-open. Levels are numbered from 0
here, as OME-TIFF readers number them: level 0 is full resolution, level ``n``
is level ``n - 1`` halved in x and y (never in z), rounding up, so an odd last
row or column of level ``n - 1`` becomes a row or column of its own at level
``n`` (see :mod:`.tiles` for its values).

Planes are stored z-major, channels fastest (OME ``DimensionOrder="XYCZT"``,
what raw2ometiff writes by default): top-level page ``z * channels + c`` is
plane (z, c), and its SubIFDs hold levels 1, 2, ... of that plane.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...errors import PrecomputedTifError, param, setting
from ...storage import Storage

DEFAULT_TILE_SIZE = 512
# TIFF tiles are multiples of 16; readers (Viv) want powers of two.
MIN_TILE_SIZE, MAX_TILE_SIZE = 16, 8192
WORK_DIR = ".ome-tiff-work"  # per-plane compressed tiles between the two stages


def check_tile_size(tile: int) -> int:
    """``tile`` if it is a power of two a TIFF reader accepts, else a user error."""
    if not (MIN_TILE_SIZE <= tile <= MAX_TILE_SIZE) or tile & (tile - 1):
        raise PrecomputedTifError(
            f"{param('tile_size')} must be a power of two from {MIN_TILE_SIZE} to {MAX_TILE_SIZE}, got {tile}")
    return tile


def level_sizes(size_x: int, size_y: int, tile: int, levels: int | None = None) -> tuple[tuple[int, int], ...]:
    """(x, y) size of every level: halved (rounding up) until the coarsest fits in one tile,
    or ``levels`` of them (at most until the coarsest is 1 x 1)."""
    sizes = [(size_x, size_y)]
    while sizes[-1] != (1, 1) and (len(sizes) < levels if levels else max(sizes[-1]) > tile):
        x, y = sizes[-1]
        sizes.append((-(-x // 2), -(-y // 2)))
    if levels is not None:
        if levels < 1:
            raise PrecomputedTifError(f"{param('levels')} must be at least 1, got {levels}")
        if levels > len(sizes):
            raise PrecomputedTifError(
                f"{setting('levels', levels)} is too many for {size_x}x{size_y} planes: at most {len(sizes)} "
                f"(level {len(sizes)} is already 1x1)")
    return tuple(sizes)


@dataclass(frozen=True)
class Layout:
    """Sizes of one OME-TIFF pyramid: ``size`` (x, y, z) voxels, ``channels``, ``dtype``,
    square tiles of ``tile`` voxels, and the (x, y) size of each level."""

    size: tuple[int, int, int]
    channels: int
    dtype: str
    tile: int
    levels: tuple[tuple[int, int], ...]

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_planes(self) -> int:
        """Top-level pages: one per (z, channel)."""
        return self.size[2] * self.channels

    def grid(self, level: int) -> tuple[int, int]:
        """Tiles along x and y at ``level``."""
        x, y = self.levels[level]
        return -(-x // self.tile), -(-y // self.tile)

    def n_tiles(self, level: int) -> int:
        gx, gy = self.grid(level)
        return gx * gy

    @property
    def tiles_per_plane(self) -> int:
        """Tiles of one (z, channel) plane, all levels together."""
        return sum(self.n_tiles(level) for level in range(self.n_levels))


@dataclass(frozen=True)
class Names:
    """The files of an OME-TIFF destination ``DIR``, as plain names inside it:
    ``DIR.ome.tif``, and ``DIR.offsets.json`` beside it (the name Viv's Avivator
    derives from the image's by replacing ``ome.tif`` with ``offsets.json``). ``DIR``
    is the last part of the destination's path, or of its URL (``s3://bucket/brain``
    holds ``brain.ome.tif``; a whole bucket is named after the bucket)."""

    image: str
    offsets: str
    work: str = WORK_DIR

    @classmethod
    def of(cls, dest: str | Storage) -> Names:
        root = dest.local_root if isinstance(dest, Storage) else dest
        if isinstance(dest, Storage) and root is None:
            base = dest.location().rstrip("/").rsplit("/", 1)[-1]
        else:
            assert root is not None
            base = os.path.basename(os.path.normpath(os.path.abspath(root)))
        return cls(f"{base}.ome.tif", f"{base}.offsets.json")
