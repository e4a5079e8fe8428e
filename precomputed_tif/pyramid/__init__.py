"""Plans a pyramid as independent tasks and runs them.

A task takes one block of some level (level 1 comes from the TIFF planes, a
coarser level from the store), writes that level's chunks inside the block if
they are not written yet, and then downsamples the block in memory level after
level, writing each level's chunks as it goes. Blocks are aligned so that every
chunk a task writes lies wholly inside its block, so tasks never write the same
chunk and need no coordination.

How many levels one task makes is limited by the block's size in memory
(``block_bytes``). The levels a pass cannot reach are made by a further pass
that reads the last level written back from the store; it is 8 (or 4) times
smaller per level, so re-reading it is cheap.

For sharded output a task owns a *region* -- one shard of every sharded level
it writes -- and works through it block by block, so memory stays that of one
block however large the shard (see :func:`plan_sharded_passes`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from ..geometry import Box, Geometry, as_triple, ceil_div, low_bits_for_box
from ..sources import Source
from .downsample import downsample

log = logging.getLogger(__name__)

# Largest block a task holds in memory, in bytes of the level it reads. With the
# default 64^3 chunks a 256^3 uint16 block (32 MiB) makes three levels at once.
DEFAULT_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Pass:
    """Levels made in one sweep over blocks of level ``first``, up to ``last``.

    The first pass reads level 1 from the planes and writes it too; later
    passes read level ``first`` back from the store and write the levels after it.
    """

    first: int
    last: int
    block: tuple[int, int, int]  # (x, y, z) block size in voxels of level ``first``
    from_source: bool
    # (x, y, z) size of a task's region in voxels of level ``first``: whole blocks; default one block.
    region: tuple[int, int, int] | None = None
    # Levels written sharded, each with the low Morton bits its shards span.
    shards: tuple[tuple[int, int], ...] = ()

    @property
    def task_size(self) -> tuple[int, int, int]:
        return self.region or self.block

    @property
    def written(self) -> range:
        """Numbers of the levels this pass writes."""
        return range(self.first if self.from_source else self.first + 1, self.last + 1)


class ChunkWriter(Protocol):
    """What a task writes its chunks through (a store's task writer)."""

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None: ...


class Store(Protocol):
    """What the pyramid needs of a chunk store (:class:`~precomputed_tif.formats.store.ChunkStore`
    implements it): one writer per task, and levels read back for the next pass."""

    def task(self) -> AbstractContextManager[ChunkWriter]: ...

    def read_region(self, key: str, box: Box) -> np.ndarray: ...


@dataclass(frozen=True)
class Task:
    """Everything one worker needs, and nothing global: picklable, runs anywhere."""

    geometry: Geometry
    store: Store
    source: Source | None
    segmentation: bool
    plan: Pass
    block: Box  # the task's region, in coordinates of level ``plan.first``
    # The time point of a time series the task makes (``store`` and ``source`` are at it);
    # None for a volume that is no time series.
    timepoint: int | None = None

    @property
    def id(self) -> str:
        """Names the task across runs: the same command plans the same ids (a time series'
        tasks of each time point ``t0/...``, ``t1/...``)."""
        name = f"{self.plan.first}-{self.plan.last}/{self.block.name}"
        return name if self.timepoint is None else f"t{self.timepoint}/{name}"

    def blocks(self) -> Iterator[Box]:
        """The blocks of the task's region, z, y, x order."""
        r, (bx, by, bz) = self.block, self.plan.block
        for z0 in range(r.z0, r.z1, bz):
            for y0 in range(r.y0, r.y1, by):
                for x0 in range(r.x0, r.x1, bx):
                    yield Box(x0, min(x0 + bx, r.x1), y0, min(y0 + by, r.y1), z0, min(z0 + bz, r.z1))

    def n_chunks(self) -> int:
        """How many chunks this task writes."""
        n, region = 0, self.block
        for number in range(self.plan.first, self.plan.last + 1):
            if number > self.plan.first:
                region = region.scaled_down(self.geometry.level(number).step)
            if number in self.plan.written:
                n += sum(1 for _ in self.geometry.chunk_boxes(number, region))
        return n


def plan_passes(geometry: Geometry, voxel_bytes: int, block_bytes: int = DEFAULT_BLOCK_BYTES,
                whole_rows: bool = False) -> list[Pass]:
    """Split levels 1..n into passes whose blocks fit in ``block_bytes``.

    ``voxel_bytes`` is the size of one voxel, all channels. Each pass makes at
    least one new level, however small the budget. With ``whole_rows`` (the
    planes are stored in compressed strips as wide as the plane, so reading any
    columns decodes whole rows) the first pass takes blocks as wide as the
    volume, so each strip is decoded once, when that still fits.
    """
    passes = []
    n = len(geometry.levels)
    first, last = 1, 1
    from_source = True
    while True:
        start = geometry.level(first)
        wide = whole_rows and from_source and _fits(geometry, 1, 1, voxel_bytes, block_bytes, wide=True)
        # Grow the pass while the block that makes its coarsest level still fits.
        while last < n:
            writes_a_level = from_source or last > first
            if writes_a_level and not _fits(geometry, first, last + 1, voxel_bytes, block_bytes, wide):
                break
            last += 1
        block = _block_size(geometry, first, last)
        if wide:
            block = (max(block[0], start.size[0]), *block[1:])
        passes.append(Pass(first, last, block, from_source))
        if last == n:
            return passes
        first, from_source = last, False


# Sharding: a level of at most this many chunks is left unsharded (a few files anyway).
UNSHARDED_MAX_CHUNKS = 64
# A shard holds at least this many chunks (fewer would make many small files) ...
MIN_SHARD_CHUNKS = 8
# ... and a task's region at most 2**MAX_REGION_BITS chunks per axis; smaller when that
# leaves fewer than MIN_TASKS regions, so that workers share the level.
MAX_REGION_BITS = 4
MIN_TASKS = 4


def plan_sharded_passes(geometry: Geometry, voxel_bytes: int, block_bytes: int = DEFAULT_BLOCK_BYTES,
                        shard_all: bool = False) -> list[Pass]:
    """Passes for sharded output: each task's region is one shard of every sharded level the
    pass writes, worked through in blocks that fit ``block_bytes``.

    A level of more than :data:`UNSHARDED_MAX_CHUNKS` chunks (any level, with ``shard_all``)
    is sharded when the pass can give it whole shards of at least
    :data:`MIN_SHARD_CHUNKS` chunks; otherwise the pass ends before it and the next pass,
    reading the last level back, starts a new region. A level no region fits stays
    unsharded. Depends only on the geometry, the voxel size in bytes and the budget, so the
    same command plans the same shards.
    """
    passes = []
    n = len(geometry.levels)
    first, from_source = 1, True
    while True:
        last, start_bits, shards = _sharded_pass(geometry, first, from_source, voxel_bytes, block_bytes, shard_all)
        region = tuple(c * 2 ** b for c, b in zip(geometry.chunk_size, start_bits)) if shards else None
        block = _block_size(geometry, first, last)
        passes.append(Pass(first, last, block, from_source, region, tuple(shards)))
        if last == n:
            return passes
        first, from_source = last, False


def _sharded_pass(geometry: Geometry, first: int, from_source: bool, voxel_bytes: int, block_bytes: int,
                  shard_all: bool) -> tuple[int, list[int], list[tuple[int, int]]]:
    """One pass of :func:`plan_sharded_passes` starting at level ``first``: its last level, the
    Morton bits per axis (x, y, z) of its region at level ``first``, and (level, low bits of
    its shards) of each level it shards."""
    n = len(geometry.levels)
    k = _region_bits(geometry.grid(first))
    # Axes that the next level does not halve get one bit less, so that the region is
    # still a shard-shaped box (x, y before z) one level down.
    nxt = geometry.level(first + 1).step if first < n else (2, 2, 2)
    start_bits = bits = [k - (s != 2) for s in nxt]
    shards: list[tuple[int, int]] = []
    last = first
    for number in range(first if from_source else first + 1, n + 1):
        wrote_already = last > first or (from_source and number > first)
        if number > first:
            step = geometry.level(number).step
            bits = [b - (s == 2) for b, s in zip(bits, step)]
            if shards and min(bits) < 0:
                break  # blocks would outgrow the region that holds this pass's shards
            if wrote_already and not _fits(geometry, first, number, voxel_bytes, block_bytes, False):
                break
        if shard_all or geometry.n_chunks(number) > UNSHARDED_MAX_CHUNKS:
            low = low_bits_for_box(geometry.grid(number), bits) if min(bits) >= 0 else None
            if low is not None and 2 ** low < min(MIN_SHARD_CHUNKS, geometry.n_chunks(number)):
                low = None
            if low is None and wrote_already:
                break  # the next pass starts a region that gives this level whole shards
            if low is not None:
                shards.append((number, low))
        last = number
    return last, start_bits, shards


# Zarr v3 shards: a task's region grows until the finest level it writes has this many chunks
# in it (or the region covers the level), so that a terabyte is not millions of files.
ZARR_SHARD_CHUNKS = 512


def plan_zarr_shard_passes(geometry: Geometry, voxel_bytes: int, block_bytes: int = DEFAULT_BLOCK_BYTES,
                           min_chunks: int = ZARR_SHARD_CHUNKS, min_tasks: int = MIN_TASKS) -> list[Pass]:
    """Passes for Zarr v3 sharded output: those of :func:`plan_passes`, each task owning a
    region of whole blocks that is exactly one shard of every level the pass writes
    (:func:`zarr_shard_sizes`). The region doubles along the axis with the fewest chunks until
    it holds ``min_chunks`` chunks of the pass's finest written level, or covers that level --
    but never so far that the pass has fewer than ``min_tasks`` tasks (workers would idle;
    smaller shards only cost more files)."""
    passes = []
    for p in plan_passes(geometry, voxel_bytes, block_bytes):
        finest = p.first if p.from_source else p.first + 1
        ratio = [b // a for a, b in zip(geometry.level(p.first).factor, geometry.level(finest).factor)]
        size = geometry.level(p.first).size
        region = list(p.block)

        def chunks_along(r, i, size=size, ratio=ratio):
            return ceil_div(min(r[i], size[i]), ratio[i] * geometry.chunk_size[i])

        def tasks(r, size=size):
            return int(np.prod([ceil_div(s, n) for s, n in zip(size, r)]))

        while int(np.prod([chunks_along(region, i) for i in range(3)])) < min_chunks:
            growable = [i for i in range(3) if region[i] < size[i]]
            if not growable:
                break
            axis = min(growable, key=lambda i: (chunks_along(region, i), i))
            grown = list(region)
            grown[axis] *= 2
            if tasks(grown) < min(min_tasks, tasks(region)):
                break
            region = grown
        passes.append(replace(p, region=as_triple(region)))
    return passes


def zarr_shard_sizes(geometry: Geometry, passes: Sequence[Pass]) -> dict[int, tuple[int, int, int]]:
    """Level number -> (x, y, z) shard size in voxels of that level: the task region of the
    pass that writes it, scaled down to the level."""
    sizes: dict[int, tuple[int, int, int]] = {}
    for p in passes:
        first = geometry.level(p.first).factor
        for number in p.written:
            factor = geometry.level(number).factor
            sizes[number] = as_triple(r * a // b for r, a, b in zip(p.task_size, first, factor))
    return sizes


def _region_bits(grid: Sequence[int]) -> int:
    """log2 of a task region's size in chunks per axis at a level of ``grid`` chunks."""
    for k in range(MAX_REGION_BITS, 0, -1):
        regions = int(np.prod([ceil_div(g, 2**k) for g in grid]))
        if regions >= MIN_TASKS:
            return k
    return 1


def _fits(geometry: Geometry, first: int, last: int, voxel_bytes: int, block_bytes: int, wide: bool) -> bool:
    """Whether the block that makes levels ``first``..``last`` fits in ``block_bytes``."""
    size = geometry.level(first).size
    block = [min(b, s) for b, s in zip(_block_size(geometry, first, last), size)]
    if wide:
        block[0] = size[0]
    return int(np.prod(block)) * voxel_bytes <= block_bytes


def _block_size(geometry: Geometry, first: int, last: int) -> tuple[int, int, int]:
    """Block (x, y, z) of level ``first`` that shrinks to whole chunks at every level to ``last``."""
    a, b = geometry.level(first).factor, geometry.level(last).factor
    return as_triple(c * (fb // fa) for c, fa, fb in zip(geometry.chunk_size, a, b))


def tasks_of(p: Pass, geometry: Geometry, store: Store, source: Source,
             segmentation: bool, timepoint: int | None = None) -> Iterator[Task]:
    """Tasks of one pass, generated lazily in z, y, x order (neighbours read the same planes);
    of a time series, those of time point ``timepoint``, whose ``store`` and ``source`` are
    at that time point."""
    sx, sy, sz = geometry.level(p.first).size
    bx, by, bz = p.task_size
    for z0 in range(0, sz, bz):
        z1 = min(z0 + bz, sz)
        sub = source.subset(z0, z1) if p.from_source else None
        for y0 in range(0, sy, by):
            for x0 in range(0, sx, bx):
                box = Box(x0, min(x0 + bx, sx), y0, min(y0 + by, sy), z0, z1)
                yield Task(geometry, store, sub, segmentation, p, box, timepoint)


def count_chunks(p: Pass, geometry: Geometry) -> int:
    """How many chunks a pass writes."""
    return sum(geometry.n_chunks(lv) for lv in p.written)


def run_task(task: Task) -> tuple[str, int]:
    """Make one region's levels, block by block; returns the task's id and the number of chunks written."""
    written = 0
    with task.store.task() as writer:
        for block in task.blocks():
            written += _run_block(task, writer, block)
    return task.id, written


def _run_block(task: Task, writer: ChunkWriter, region: Box) -> int:
    g, plan = task.geometry, task.plan
    if plan.from_source:
        # tasks_of gives every task of a pass that reads the source its part of the source.
        assert task.source is not None
        data = task.source.read(region)
        written = _write_level(writer, g, 1, region, data)
    else:
        data = task.store.read_region(g.level(plan.first).key, region)
        written = 0
    for number in range(plan.first + 1, plan.last + 1):
        level = g.level(number)
        data = downsample(data, level.step, task.segmentation)
        region = region.scaled_down(level.step)
        assert data.shape[-3:] == region.shape, (data.shape, region.shape)
        written += _write_level(writer, g, number, region, data)
    return written


def _write_level(writer: ChunkWriter, g: Geometry, number: int, region: Box, data: np.ndarray) -> int:
    key = g.level(number).key
    n = 0
    for box in g.chunk_boxes(number, region):
        writer.write_chunk(key, box, data[(...,) + box.relative_to(region)])
        n += 1
    return n
