"""Point annotations in Neuroglancer's precomputed format (``annotations.md``).

:func:`write_points` writes ``info``, a multi-level spatial index and the
``by_id`` index for an array of points, unsharded (a file per cell and per
point) or sharded (a few files per index).

The spatial index follows the spec's algorithm. Level 0 is one cell covering
``[lower_bound, upper_bound)``; each finer level halves the cells along the
axes where that makes them more nearly cubic in physical units. At each level
every cell emits a uniformly random subset of the points that remain in it --
``ceil(n * limit / max_n)`` of its ``n`` points, where ``max_n`` is the fullest
cell's count, so no cell holds more than ``limit`` -- in random order, and the
rest move on to the level below. Every point is emitted at exactly one level.
Neuroglancer reads coarse levels first and stops when it has enough, so a view
of the whole volume downloads a uniform sample, not every point.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .atomic import write_atomic
from .sharding import compressed_morton_codes, sharding_spec, write_sharded

DEFAULT_LIMIT = 10_000
# Levels stop being refined once cells are this small (in voxels) on every
# axis; whatever remains there is emitted at once, over the limit if need be
# (only many points at almost the same spot do that).
MIN_CELL_VOXELS = 1.0
MAX_EMPTY_CELL_FILES = 65_536  # unsharded levels with at most this many cells get files for empty cells too
SHARD_ABOVE = 100_000  # points: above this the indexes are sharded unless asked otherwise

PROPERTY_TYPES = ("uint32", "int32", "float32", "uint16", "int16", "uint8", "int8")


@dataclass
class Property:
    """One per-point value: ``id`` as Neuroglancer shows it, numpy ``type`` name, the values."""

    id: str
    type: str
    values: np.ndarray
    description: str | None = None
    enum_labels: list[str] | None = None

    def to_json(self) -> dict:
        d = {"id": self.id, "type": self.type}
        if self.description:
            d["description"] = self.description
        if self.enum_labels is not None:
            d["enum_values"] = list(range(len(self.enum_labels)))
            d["enum_labels"] = list(self.enum_labels)
        return d


@dataclass
class PointSet:
    """Points in voxel coordinates (n, 3: x, y, z) with their properties and the box they lie in."""

    points: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    properties: list[Property] = field(default_factory=list)

    def __post_init__(self):
        # The spec encodes 4-byte properties first, then 2-byte, then 1-byte;
        # listing them in that order in info keeps the two in step.
        self.properties.sort(key=lambda p: -np.dtype(p.type).itemsize)


def record_dtype(properties: list[Property]) -> np.dtype:
    """The single-annotation encoding of a point: float32 x, y, z, the properties, padding to 4 bytes."""
    fields = [("position", "<f4", (3,))]
    size = 12
    for i, p in enumerate(properties):
        fields.append((f"p{i}", np.dtype(p.type).newbyteorder("<")))
        size += np.dtype(p.type).itemsize
    if size % 4:
        fields.append(("padding", "u1", (4 - size % 4,)))
    return np.dtype(fields)


def encode_records(ps: PointSet) -> np.ndarray:
    """Every point's encoding, as a structured array (one record per point)."""
    records = np.zeros(len(ps.points), record_dtype(ps.properties))
    records["position"] = ps.points
    for i, p in enumerate(ps.properties):
        records[f"p{i}"] = p.values
    return records


def encode_list(records: np.ndarray, ids: np.ndarray) -> bytes:
    """The multiple-annotation encoding: count, the records, then the ids."""
    return (np.array([len(ids)], "<u8").tobytes() + records.tobytes()
            + np.asarray(ids, "<u8").tobytes())


@dataclass
class SpatialLevel:
    grid_shape: list[int]
    chunk_size: list[float]
    limit: int
    cells: dict = field(default_factory=dict)  # cell (tuple) -> (ids in order)


def spatial_levels(ps: PointSet, voxel_size, limit: int = DEFAULT_LIMIT, seed: int = 0) -> list[SpatialLevel]:
    """The spatial index, coarse to fine, as the spec describes (see the module docstring)."""
    rng = np.random.default_rng(seed)
    extent = (ps.upper - ps.lower).astype(np.float64)
    voxel_size = np.asarray(voxel_size, np.float64)
    grid = np.ones(3, np.int64)
    remaining = np.arange(len(ps.points))
    levels = []
    while len(remaining):
        chunk = extent / grid
        cells = np.floor((ps.points[remaining] - ps.lower) / chunk).astype(np.int64)
        np.clip(cells, 0, grid - 1, out=cells)
        flat = np.ravel_multi_index(cells.T, tuple(grid), order="F") if len(cells) else np.zeros(0, np.int64)
        order = np.lexsort((rng.random(len(remaining)), flat))
        flat_sorted = flat[order]
        starts = np.flatnonzero(np.r_[True, flat_sorted[1:] != flat_sorted[:-1]])
        counts = np.diff(np.r_[starts, len(order)])
        max_count = counts.max()
        last = not bool((chunk > MIN_CELL_VOXELS).any())  # cells cannot get any smaller
        take = counts if (max_count <= limit or last) else -(-counts * limit // max_count)
        rank = np.arange(len(order)) - np.repeat(starts, counts)
        emitted = rank < np.repeat(take, counts)
        level = SpatialLevel(grid.tolist(), chunk.tolist(), int(limit if not last else max(limit, take.max())))
        chosen = order[emitted]
        cell_of = flat_sorted[emitted]
        bounds = np.flatnonzero(np.r_[True, cell_of[1:] != cell_of[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            cell = tuple(int(v) for v in np.unravel_index(cell_of[a], tuple(grid), order="F"))
            level.cells[cell] = remaining[chosen[a:b]]
        levels.append(level)
        remaining = np.sort(remaining[order[~emitted]])
        grid = grid * _refine_step(chunk, voxel_size)
    return levels


def _refine_step(chunk: np.ndarray, voxel_size: np.ndarray) -> np.ndarray:
    """2 for the axes to halve next (those within a factor sqrt(2) of the largest, in microns), else 1."""
    refinable = chunk > MIN_CELL_VOXELS
    physical = np.where(refinable, chunk * voxel_size, 0.0)
    halve = refinable & (physical >= physical.max() / math.sqrt(2))
    return np.where(halve, 2, 1)


def build_info(ps: PointSet, voxel_size, levels: list[SpatialLevel], sharded: bool, by_id: bool) -> dict:
    """The annotation ``info``: dimensions in metres per voxel, so points sit on an image of the same voxel size."""
    info = {
        "@type": "neuroglancer_annotations_v1",
        "dimensions": {axis: [float(v) * 1e-6, "m"] for axis, v in zip("xyz", voxel_size)},
        "lower_bound": [float(v) for v in ps.lower],
        "upper_bound": [float(v) for v in ps.upper],
        "annotation_type": "POINT",
        "properties": [p.to_json() for p in ps.properties],
        "relationships": [],
        "spatial": [],
    }
    for i, level in enumerate(levels):
        entry = {"key": f"spatial{i}", "grid_shape": level.grid_shape, "chunk_size": level.chunk_size,
                 "limit": level.limit}
        if sharded:
            entry["sharding"] = sharding_spec(len(level.cells))
        info["spatial"].append(entry)
    if by_id:
        info["by_id"] = {"key": "by_id"}
        if sharded:
            info["by_id"]["sharding"] = sharding_spec(len(ps.points))
    return info


def write_points(ps: PointSet, directory: str, voxel_size, sharded: bool | None = None, by_id: bool = True,
                 limit: int = DEFAULT_LIMIT, seed: int = 0) -> dict:
    """Write an annotation layer for ``ps`` into ``directory`` (which must be new or empty); returns ``info``.

    ``sharded`` defaults to True above :data:`SHARD_ABOVE` points. ``info`` is
    written last.
    """
    if sharded is None:
        sharded = len(ps.points) > SHARD_ABOVE
    levels = spatial_levels(ps, voxel_size, limit, seed)
    info = build_info(ps, voxel_size, levels, sharded, by_id)
    records = encode_records(ps)
    os.makedirs(directory, exist_ok=True)
    for entry, level in zip(info["spatial"], levels):
        path = os.path.join(directory, entry["key"])
        cells = list(level.cells)
        values = [encode_list(records[level.cells[c]], level.cells[c]) for c in cells]
        if sharded:
            keys = compressed_morton_codes(np.array(cells, np.int64), level.grid_shape)
            write_sharded(path, entry["sharding"], keys, values)
        else:
            os.makedirs(path, exist_ok=True)
            for cell, value in zip(cells, values):
                write_atomic(os.path.join(path, "_".join(map(str, cell))), value, durable=False)
            if np.prod(level.grid_shape) <= MAX_EMPTY_CELL_FILES:
                # Empty cells get a file too, so a viewer's requests for them succeed
                # instead of ending in 404s (which Neuroglancer also takes as empty).
                empty = encode_list(records[:0], np.zeros(0, np.uint64))
                for cell in np.ndindex(*level.grid_shape):
                    if cell not in level.cells:
                        write_atomic(os.path.join(path, "_".join(map(str, cell))), empty, durable=False)
    if by_id:
        path = os.path.join(directory, "by_id")
        raw = records.view(np.uint8).reshape(len(records), -1)
        if sharded:
            write_sharded(path, info["by_id"]["sharding"], np.arange(len(records)), [r.tobytes() for r in raw])
        else:
            os.makedirs(path, exist_ok=True)
            for i, r in enumerate(raw):
                with open(os.path.join(path, str(i)), "wb") as f:
                    f.write(r.tobytes())
    # Up to tens of thousands of small cell files: one flush of everything is far cheaper
    # than one per file, and it puts them on disk before the info that makes them a layer.
    os.sync()
    write_atomic(os.path.join(directory, "info"), json.dumps(info, indent=1).encode())
    return info
