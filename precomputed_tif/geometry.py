"""Geometry of a precomputed pyramid: levels, their sizes and chunk grids, chunk names.

This is the only module that knows how a level's size follows from the one
before it, where chunk boundaries fall and how a chunk is named. Everything
else asks it.

Conventions, used throughout the project:

* Sizes, offsets, chunk sizes, factors and voxel sizes given as triples are in
  **x, y, z** order (as in Neuroglancer's ``info`` and in chunk names).
* Arrays in memory are **(z, y, x)**, C-ordered.
* Ranges are half-open: ``x0 <= x < x1``.
* Levels are numbered from 1 (full resolution).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import PrecomputedTifError, param, setting

DEFAULT_CHUNK_SIZE = (64, 64, 64)
DEFAULT_VOXEL_SIZE_UM = (1.8, 1.8, 2.0)

# An axis is halved while its voxels are at most this many times the finest
# axis' voxels; coarser axes wait until the finer ones catch up. With 2 the
# usual light-sheet sizes (1.8, 1.8, 2.0) give the familiar 2_2_2, 4_4_4 keys.
ANISOTROPY_THRESHOLD = 2.0

_CHUNK_NAME = re.compile(r"^(\d+)-(\d+)_(\d+)-(\d+)_(\d+)-(\d+)$")

_T = TypeVar("_T")


def as_triple(values: Iterable[_T]) -> tuple[_T, _T, _T]:
    """The three values of an (x, y, z) or (z, y, x) triple as a 3-tuple, order kept.

    Raises ``ValueError`` unless there are exactly three: callers check user input
    themselves first (:func:`check_triple`) and use this where three is certain, e.g.
    on ``zip`` of two triples.
    """
    a, b, c = values
    return (a, b, c)


@dataclass(frozen=True)
class Box:
    """A box of voxels, half-open on every axis, in the coordinates of one level."""

    x0: int
    x1: int
    y0: int
    y1: int
    z0: int
    z1: int

    @property
    def name(self) -> str:
        """Chunk name as precomputed uses it: ``x0-x1_y0-y1_z0-z1``."""
        return f"{self.x0}-{self.x1}_{self.y0}-{self.y1}_{self.z0}-{self.z1}"

    @classmethod
    def parse(cls, name: str) -> Box:
        """Inverse of :attr:`name`; raises ``ValueError`` for anything else."""
        m = _CHUNK_NAME.match(name)
        if m is None:
            raise ValueError(f"not a chunk name: {name!r}")
        return cls(*(int(v) for v in m.groups()))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) shape of the box."""
        return (self.z1 - self.z0, self.y1 - self.y0, self.x1 - self.x0)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """(z, y, x) slices that cut this box out of a level-sized array."""
        return (slice(self.z0, self.z1), slice(self.y0, self.y1), slice(self.x0, self.x1))

    def relative_to(self, outer: Box) -> tuple[slice, slice, slice]:
        """(z, y, x) slices of this box inside an array that holds ``outer``."""
        return (
            slice(self.z0 - outer.z0, self.z1 - outer.z0),
            slice(self.y0 - outer.y0, self.y1 - outer.y0),
            slice(self.x0 - outer.x0, self.x1 - outer.x0),
        )

    def intersect(self, other: Box) -> Box | None:
        """The common part of two boxes, or None when they do not overlap."""
        b = Box(
            max(self.x0, other.x0), min(self.x1, other.x1),
            max(self.y0, other.y0), min(self.y1, other.y1),
            max(self.z0, other.z0), min(self.z1, other.z1),
        )
        if b.x0 >= b.x1 or b.y0 >= b.y1 or b.z0 >= b.z1:
            return None
        return b

    def scaled_down(self, factor: Sequence[int]) -> Box:
        """The box one level down that this box's voxels shrink into (x, y, z factors)."""
        fx, fy, fz = factor
        return Box(
            self.x0 // fx, ceil_div(self.x1, fx),
            self.y0 // fy, ceil_div(self.y1, fy),
            self.z0 // fz, ceil_div(self.z1, fz),
        )


@dataclass(frozen=True)
class Level:
    """One resolution level of the pyramid.

    ``step`` is how this level was made from the previous one (x, y, z factors of
    1 or 2; all 1 for level 1); ``factor`` is the product of all steps so far,
    relative to level 1. ``size`` is in voxels of this level, ``resolution`` in
    nanometres per voxel.
    """

    number: int
    step: tuple[int, int, int]
    factor: tuple[int, int, int]
    size: tuple[int, int, int]
    resolution: tuple[float, float, float]
    numbered: bool = False  # keys "0", "1", ... (OME-Zarr's usual paths) instead of factors

    @property
    def key(self) -> str:
        """Scale key and directory name: the factors, e.g. ``1_1_1``, ``2_2_1``; or, in a
        numbered pyramid, the level's number from 0 (``0`` is full resolution)."""
        if self.numbered:
            return str(self.number - 1)
        return "_".join(str(f) for f in self.factor)

    @property
    def bounds(self) -> Box:
        """The whole level as a box."""
        x, y, z = self.size
        return Box(0, x, 0, y, 0, z)


def _level_steps(voxel_size: Sequence[float], n: int) -> list[tuple[int, int, int]]:
    """Downsampling steps (x, y, z) for levels 2..n+1: halve the finer axes first."""
    res = list(voxel_size)
    steps = []
    for _ in range(n):
        finest = min(res)
        step = as_triple(2 if r <= finest * ANISOTROPY_THRESHOLD else 1 for r in res)
        res = [r * s for r, s in zip(res, step)]
        steps.append(step)
    return steps


class Geometry:
    """Sizes and chunk grids of every level of one pyramid.

    ``shape_xyz`` is the full-resolution size in voxels, ``chunk_size`` the
    chunk size in voxels (the same at every level), ``voxel_size`` in microns.
    With ``numbered_keys`` the levels' keys are ``0``, ``1``, ... instead of
    their factors (``1_1_1``, ``2_2_2``, ...).
    """

    def __init__(
        self,
        shape_xyz: Sequence[int],
        chunk_size: Sequence[int] = DEFAULT_CHUNK_SIZE,
        voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE_UM,
        n_levels: int | None = None,
        numbered_keys: bool = False,
    ):
        self.numbered_keys = bool(numbered_keys)
        shape = tuple(int(v) for v in shape_xyz)
        chunk = tuple(int(v) for v in chunk_size)
        voxel = tuple(float(v) for v in voxel_size)
        if len(shape) != 3 or min(shape) < 1:
            raise PrecomputedTifError(f"volume size must be three positive numbers, got {shape_xyz}")
        check_triple(chunk, "chunk size", integer=True)
        check_triple(voxel, "voxel size", integer=False)
        self.shape_xyz: tuple[int, int, int] = as_triple(shape)
        self.chunk_size: tuple[int, int, int] = as_triple(chunk)
        self.voxel_size: tuple[float, float, float] = as_triple(voxel)
        limit = self.max_levels()
        if n_levels is None:
            n_levels = self.default_levels()
        elif n_levels < 1:
            raise PrecomputedTifError(f"{param('levels')} must be at least 1, got {n_levels}")
        elif n_levels > limit:
            raise PrecomputedTifError(
                f"{setting('levels', n_levels)} is too many for a {self.shape_xyz[0]}x{self.shape_xyz[1]}x"
                f"{self.shape_xyz[2]} volume with {self.chunk_size[0]}x{self.chunk_size[1]}x"
                f"{self.chunk_size[2]} chunks: at most {limit} (level {limit} already fits in one chunk)"
            )
        self.levels = self._make_levels(n_levels)

    def _make_levels(self, n: int) -> list[Level]:
        levels = []
        size = self.shape_xyz
        factor = (1, 1, 1)
        steps = [(1, 1, 1)] + _level_steps(self.voxel_size, n - 1)
        for number, step in enumerate(steps, start=1):
            factor = as_triple(f * s for f, s in zip(factor, step))
            size = as_triple(ceil_div(v, s) for v, s in zip(size, step))
            resolution = as_triple(round(v * 1000.0 * f, 6) for v, f in zip(self.voxel_size, factor))
            levels.append(Level(number, step, factor, size, resolution, self.numbered_keys))
        return levels

    def _levels_until(self, fits: Callable[[tuple[int, int, int]], bool]) -> int:
        """Number of levels until ``fits(size)`` holds for the coarsest one (size x, y, z)."""
        size = self.shape_xyz
        n = 1
        for step in _level_steps(self.voxel_size, 64):
            if fits(size):
                return n
            size = as_triple(ceil_div(v, s) for v, s in zip(size, step))
            n += 1
        return n

    def default_levels(self) -> int:
        """Enough levels that the coarsest fits in one chunk in x and y."""
        cx, cy, _ = self.chunk_size
        return self._levels_until(lambda s: s[0] <= cx and s[1] <= cy)

    def max_levels(self) -> int:
        """Levels until the coarsest fits in one chunk on every axis; more make no sense."""
        return max(
            self.default_levels(),
            self._levels_until(lambda s: all(v <= c for v, c in zip(s, self.chunk_size))),
        )

    def level(self, number: int) -> Level:
        """Level by its 1-based number."""
        return self.levels[number - 1]

    def grid(self, level: int) -> tuple[int, int, int]:
        """Number of chunks along x, y, z at a level."""
        return as_triple(ceil_div(s, c) for s, c in zip(self.level(level).size, self.chunk_size))

    def chunk_box(self, level: int, index: Sequence[int]) -> Box:
        """Box of the chunk with grid index (ix, iy, iz), truncated at the volume edge."""
        (cx, cy, cz), (sx, sy, sz) = self.chunk_size, self.level(level).size
        ix, iy, iz = index
        return Box(
            ix * cx, min((ix + 1) * cx, sx),
            iy * cy, min((iy + 1) * cy, sy),
            iz * cz, min((iz + 1) * cz, sz),
        )

    def chunk_boxes(self, level: int, within: Box | None = None) -> Iterator[Box]:
        """Boxes of the chunks of a level that overlap ``within`` (default: all), z slowest."""
        within = within or self.level(level).bounds
        cx, cy, cz = self.chunk_size
        gx, gy, gz = self.grid(level)
        for iz in range(within.z0 // cz, min(gz, ceil_div(within.z1, cz))):
            for iy in range(within.y0 // cy, min(gy, ceil_div(within.y1, cy))):
                for ix in range(within.x0 // cx, min(gx, ceil_div(within.x1, cx))):
                    yield self.chunk_box(level, (ix, iy, iz))

    def n_chunks(self, level: int) -> int:
        gx, gy, gz = self.grid(level)
        return gx * gy * gz

    def is_chunk(self, level: int, box: Box) -> bool:
        """True when ``box`` is exactly one chunk of the level (aligned, truncated at the edge)."""
        return is_chunk(box, self.level(level).size, self.chunk_size)


def is_chunk(box: Box, size: Sequence[int], chunk_size: Sequence[int],
             offset: Sequence[int] = (0, 0, 0)) -> bool:
    """True when ``box`` is exactly one chunk of a scale of ``size`` voxels starting at ``offset``.

    All triples are (x, y, z). A chunk is aligned to the chunk grid (which starts
    at ``offset``) and truncated where the scale ends.
    """
    lo = (box.x0, box.y0, box.z0)
    hi = (box.x1, box.y1, box.z1)
    for a, b, n, c, o in zip(lo, hi, size, chunk_size, offset):
        a, b = a - o, b - o
        if a < 0 or a >= n or a % c or b != min(a + c, n):
            return False
    return True


def check_triple(values: Sequence, what: str, integer: bool) -> None:
    """Raise a user error unless ``values`` are three positive finite numbers."""
    ok = len(values) == 3 and all(
        isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values
    )
    if ok and integer:
        ok = all(float(v).is_integer() for v in values)
    if not ok:
        kind = "positive whole numbers" if integer else "positive numbers"
        raise PrecomputedTifError(f"{what} must be three {kind} x,y,z, got {tuple(values)}")


def parse_triple(text: str, what: str, integer: bool) -> tuple:
    """Parse ``"X,Y,Z"`` from the command line into a checked triple."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) if integer else float(p) for p in parts)
    except ValueError:
        kind = "whole numbers" if integer else "numbers"
        raise PrecomputedTifError(
            f"{what} must be three {kind} separated by commas, like "
            f"{'64,64,64' if integer else '1.8,1.8,2.0'}; got {text!r}"
        ) from None
    check_triple(values, what, integer)
    return values


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive integers."""
    return -(-a // b)


@dataclass(frozen=True)
class Scale:
    """One scale of a volume, as an ``info`` file describes it, and its chunk grid.

    ``size``, ``chunk_size`` and ``voxel_offset`` are (x, y, z) voxels of this
    scale. Boxes given to and returned by the methods are relative to the
    scale's origin (``voxel_offset`` is added only in chunk *names*, as
    precomputed's URLs and files have them). The writer, every reader and the
    server share this one grid. ``resolution`` is nanometres per voxel (x, y, z),
    the numbers as ``info`` writes them; ``encoding`` the chunks' encoding
    (``"raw"`` when ``info`` names none); ``sharding`` the scale's
    ``neuroglancer_uint64_sharded_v1`` spec, None when unsharded (read it, never
    change it). :class:`~.info.VolumeInfo` makes these from an ``info``.
    """

    key: str
    size: tuple[int, int, int]
    chunk_size: tuple[int, int, int]
    voxel_offset: tuple[int, int, int] = (0, 0, 0)
    resolution: tuple[float, float, float] = (1.0, 1.0, 1.0)
    encoding: str = "raw"
    # A dict (stores pickle it with their shard readers); left out of comparisons and hashing.
    sharding: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Number of chunks along x, y, z."""
        return as_triple(ceil_div(s, c) for s, c in zip(self.size, self.chunk_size))

    @property
    def n_chunks(self) -> int:
        gx, gy, gz = self.grid
        return gx * gy * gz

    @property
    def bounds(self) -> Box:
        x, y, z = self.size
        return Box(0, x, 0, y, 0, z)

    def chunk_box(self, index: Sequence[int]) -> Box:
        """Box of the chunk with grid index (ix, iy, iz), truncated where the scale ends."""
        lo = [i * c for i, c in zip(index, self.chunk_size)]
        hi = [min(a + c, s) for a, c, s in zip(lo, self.chunk_size, self.size)]
        return Box(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])

    def chunk_index(self, box: Box) -> tuple[int, int, int]:
        """Grid index (ix, iy, iz) of the chunk whose box this is."""
        return (box.x0 // self.chunk_size[0], box.y0 // self.chunk_size[1], box.z0 // self.chunk_size[2])

    def chunk_boxes(self, within: Box | None = None) -> Iterator[Box]:
        """Boxes of the chunks that overlap ``within`` (default: all), z slowest."""
        within = within or self.bounds
        (cx, cy, cz), (gx, gy, gz) = self.chunk_size, self.grid
        for iz in range(within.z0 // cz, min(gz, ceil_div(within.z1, cz))):
            for iy in range(within.y0 // cy, min(gy, ceil_div(within.y1, cy))):
                for ix in range(within.x0 // cx, min(gx, ceil_div(within.x1, cx))):
                    yield self.chunk_box((ix, iy, iz))

    def name(self, box: Box) -> str:
        """The chunk's file name / URL segment: its box shifted by ``voxel_offset``."""
        x, y, z = self.voxel_offset
        return Box(box.x0 + x, box.x1 + x, box.y0 + y, box.y1 + y, box.z0 + z, box.z1 + z).name

    def parse(self, name: str) -> Box | None:
        """The chunk box (relative to the origin) a chunk name stands for; None when the name is
        not exactly one chunk of this scale."""
        try:
            box = Box.parse(name)
        except ValueError:
            return None
        if not is_chunk(box, self.size, self.chunk_size, self.voxel_offset):
            return None
        x, y, z = self.voxel_offset
        return Box(box.x0 - x, box.x1 - x, box.y0 - y, box.y1 - y, box.z0 - z, box.z1 - z)


# -- Morton order of a chunk grid -------------------------------------------------------------
#
# Neuroglancer's compressed Morton code interleaves the bits of a chunk's grid position, x, y,
# z, from the lowest up, each axis giving only the bits its grid size needs. Chunks that share
# all but the lowest bits of their codes make an aligned box: what a shard of a sharded
# precomputed scale holds, and the region a sharded pass gives one task.


def morton_bits(grid_shape: Sequence[int]) -> list[int]:
    """Bits each axis contributes to a compressed Morton code: ceil(log2(size))."""
    return [max(0, math.ceil(math.log2(g))) if g > 1 else 0 for g in grid_shape]


def box_bits(grid: Sequence[int], low_bits: int) -> tuple[int, ...]:
    """How many of each axis' bits are among the lowest ``low_bits`` bits of the compressed
    Morton code of a grid of ``grid`` cells: the chunks that share the other bits make a box
    of 2**bits cells per axis."""
    total = morton_bits(grid)
    counts = [0] * len(grid)
    j = 0
    for i in range(max(total, default=0)):
        for d, b in enumerate(total):
            if i < b:
                if j == low_bits:
                    return tuple(counts)
                counts[d] += 1
                j += 1
    return tuple(counts)


def low_bits_for_box(grid: Sequence[int], bits: Sequence[int]) -> int | None:
    """The number of low Morton bits whose chunks make a box of 2**bits cells per axis
    (each capped at what the grid has), or None when no number of bits makes that box."""
    capped = tuple(min(b, t) for b, t in zip(bits, morton_bits(grid)))
    n = sum(capped)
    return n if box_bits(grid, n) == capped else None
