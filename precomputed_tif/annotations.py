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

A layer is complete when its ``info`` exists: it is written last. Before
anything else the writer puts a hidden marker file, :data:`UNFINISHED`, in
the directory and removes it after ``info``; a directory with the marker and no
``info`` holds a layer whose writing did not finish (a kill, a crash), and the
next :func:`write_points` into it replaces that layer. A write that fails (a
full disk, a read-only file system) removes what it wrote and raises a user
error naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import PrecomputedTifError
from .formats.precomputed.sharding import compressed_morton_codes, sharding_spec, write_sharded
from .info import INFO
from .storage import Storage, StorageLike, open_storage
from .storage.trees import holds, remove_tree, top_names

DEFAULT_LIMIT = 10_000
# Levels stop being refined once cells are this small (in voxels) on every
# axis; whatever remains there is emitted at once, over the limit if need be
# (only many points at almost the same spot do that).
MIN_CELL_VOXELS = 1.0
MAX_EMPTY_CELL_FILES = 65_536  # unsharded levels with at most this many cells get files for empty cells too
SHARD_ABOVE = 100_000  # points: above this the indexes are sharded unless asked otherwise
# A level's cells are numbered in an int64 (and keyed by uint64 Morton codes when
# sharded): refinement stops before the grid needs more bits than that. Only points
# many orders of magnitude apart, with many of them at one spot, get this far.
MAX_GRID_BITS = 62

UNFINISHED = ".points-unfinished"  # see the module docstring
_OWN_ENTRY = re.compile(r"^(spatial\d+|by_id)$")
# Temporary files of atomic writes (atomic.temporary_name) of info and the marker.
_OWN_TEMPORARY = re.compile(rf"^\.({re.escape(INFO)}|{re.escape(UNFINISHED)})\.\d+\.[0-9a-f]{{8}}\.tmp$")

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
        d: dict[str, Any] = {"id": self.id, "type": self.type}
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
    fields: list[tuple[Any, ...]] = [("position", "<f4", (3,))]  # numpy's (name, type[, shape])
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
        step = _refine_step(chunk, voxel_size)
        # Cells cannot get any smaller, or their number would no longer fit the grid's integers.
        last = not bool((chunk > MIN_CELL_VOXELS).any()) or np.log2(grid * step).sum() > MAX_GRID_BITS
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
        grid = grid * step
    return levels


def _refine_step(chunk: np.ndarray, voxel_size: np.ndarray) -> np.ndarray:
    """2 for the axes to halve next (those within a factor sqrt(2) of the largest, in microns), else 1."""
    refinable = chunk > MIN_CELL_VOXELS
    physical = np.where(refinable, chunk * voxel_size, 0.0)
    halve = refinable & (physical >= physical.max() / math.sqrt(2))
    return np.where(halve, 2, 1)


def build_info(ps: PointSet, voxel_size, levels: list[SpatialLevel], sharded: bool, by_id: bool) -> dict:
    """The annotation ``info``: dimensions in metres per voxel, so points sit on an image of the same voxel size."""
    info: dict[str, Any] = {
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


def check_directory(where: StorageLike, what: str = "output directory") -> None:
    """Raise a user error unless a layer may be written into ``where`` (a
    :class:`~.storage.Storage`, or a directory's path or URL): one that does not exist yet,
    is empty (hidden entries aside) or holds only a layer whose writing did not finish
    (marked :data:`UNFINISHED`, no ``info``), which :func:`write_points` replaces. ``what``
    names the place in messages (a command-line option, say)."""
    storage = open_storage(where, what)
    shown = storage.location()
    root = storage.local_root
    if root is not None and os.path.lexists(root) and not os.path.isdir(root):
        raise PrecomputedTifError(f"{what} {shown} is a file; give a new or empty directory")
    try:
        entries = [e for e in top_names(storage) if not e.startswith(".")]
    except OSError as exc:
        raise PrecomputedTifError(f"cannot read {what} {shown}: {exc.strerror}") from None
    if not entries or (holds(storage, UNFINISHED) and all(_OWN_ENTRY.match(e) for e in entries)):
        return
    held = " (it holds a finished point layer)" if INFO in entries else ""
    raise PrecomputedTifError(f"{what} {shown} is not empty{held}; choose a new or empty directory")


def write_points(ps: PointSet, where: StorageLike, voxel_size, sharded: bool | None = None, by_id: bool = True,
                 limit: int = DEFAULT_LIMIT, seed: int = 0) -> dict:
    """Write an annotation layer for ``ps`` into ``where`` (a :class:`~.storage.Storage`, or a
    directory's path or URL); returns ``info``.

    ``where`` must pass :func:`check_directory` (new, empty, or holding an unfinished layer,
    which is replaced). ``sharded`` defaults to True above :data:`SHARD_ABOVE` points.
    Every file is one put; ``info`` is put last, after everything else is flushed
    (:meth:`~.storage.Storage.flush`). If writing fails, what this call wrote is removed (as
    far as the storage lets it) and a :class:`PrecomputedTifError` names the file and what
    to do; a local directory this call created is removed too.
    """
    storage = open_storage(where)
    check_directory(storage)
    if sharded is None:
        sharded = len(ps.points) > SHARD_ABOVE
    levels = spatial_levels(ps, voxel_size, limit, seed)
    info = build_info(ps, voxel_size, levels, sharded, by_id)
    records = encode_records(ps)
    root = storage.local_root
    created = root is not None and not os.path.isdir(root)
    try:
        _remove_layer(storage, strict=True)  # what an unfinished earlier run left
        storage.put(UNFINISHED, b"a point annotation layer is being written here; it is complete once info exists\n",
                    durable=True)
        _write_indexes(storage, info, levels, records, sharded, by_id)
        # Up to tens of thousands of small cell files: one flush of everything is far cheaper
        # than one per file, and it puts them on disk before the info that makes them a layer.
        storage.flush()
        storage.put(INFO, json.dumps(info, indent=1).encode(), durable=True)
    except BaseException as exc:
        cleared = _remove_layer(storage, remove_directory=created)
        if isinstance(exc, OSError):
            raise _write_error(exc, storage.location(), cleared) from None
        raise
    with contextlib.suppress(OSError):  # the layer is complete (info exists) with or without the marker
        storage.delete(UNFINISHED)
    return info


def _write_indexes(storage: Storage, info: dict, levels: list[SpatialLevel], records: np.ndarray,
                   sharded: bool, by_id: bool) -> None:
    """Every object of the layer but ``info``: the spatial levels, then the index by id. Cells
    and points are put without flushing (the caller flushes them all at once), shards durably."""
    for entry, level in zip(info["spatial"], levels):
        index = entry["key"]
        cells = list(level.cells)
        values = [encode_list(records[level.cells[c]], level.cells[c]) for c in cells]
        if sharded:
            keys = compressed_morton_codes(np.array(cells, np.int64), level.grid_shape)
            write_sharded(storage, index, entry["sharding"], keys, values)
        else:
            # Cells and records are read whole: a bucket may store them gzipped.
            for cell, value in zip(cells, values):
                storage.put(f"{index}/{'_'.join(map(str, cell))}", value, compressible=True)
            if np.prod(level.grid_shape) <= MAX_EMPTY_CELL_FILES:
                # Empty cells get a file too, so a viewer's requests for them succeed
                # instead of ending in 404s (which Neuroglancer also takes as empty).
                empty = encode_list(records[:0], np.zeros(0, np.uint64))
                for cell in np.ndindex(*level.grid_shape):
                    if cell not in level.cells:
                        storage.put(f"{index}/{'_'.join(map(str, cell))}", empty)
    if by_id:
        raw = records.view(np.uint8).reshape(len(records), -1)
        if sharded:
            write_sharded(storage, "by_id", info["by_id"]["sharding"], np.arange(len(records)),
                          [r.tobytes() for r in raw])
        else:
            for i, r in enumerate(raw):
                storage.put(f"by_id/{i}", r.tobytes(), compressible=True)


def _remove_layer(storage: Storage, strict: bool = False, remove_directory: bool = False) -> bool:
    """Remove the layer's objects (index directories, and on a local disk ``info``'s and the
    marker's temporary files) and then the marker, if the marker is there or ``not strict``;
    returns whether all is gone.

    ``strict`` (clearing an unfinished earlier run) removes nothing without the marker and
    raises what fails; otherwise (undoing this run) failures are ignored, and the marker
    stays unless everything else went, so the next run still knows the leftovers are its own.
    With ``remove_directory`` an empty local directory is removed too.
    """
    if strict and not holds(storage, UNFINISHED):
        return True

    def failed(where: str, exc: OSError) -> None:
        if strict:
            raise exc

    def own(name: str) -> bool:
        return bool(_OWN_ENTRY.match(name) or _OWN_TEMPORARY.match(name))

    try:
        names = top_names(storage)
    except OSError:
        if strict:
            raise
        return False
    for name in names:
        if own(name):
            remove_tree(storage, name, failed)
    try:
        cleared = not any(own(n) for n in top_names(storage))
    except OSError:
        if strict:
            raise
        return False
    if cleared and holds(storage, UNFINISHED):  # (unlinking a missing file on a read-only disk fails)
        try:
            storage.delete(UNFINISHED)
        except OSError:
            if strict:
                raise
            cleared = False
    root = storage.local_root
    if cleared and remove_directory and root is not None:
        with contextlib.suppress(OSError):  # something else is in it now
            os.rmdir(root)
    return cleared


def _write_error(exc: OSError, directory: str, cleared: bool) -> PrecomputedTifError:
    """One line for a failed write: the file, the cause, what to do, and what is left."""
    path = exc.filename or directory
    left = ("" if cleared else f"; what was written stays in {directory} without an info file, "
            "and the next run into it replaces it")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return PrecomputedTifError(
            f"no space left on the device writing {path}{left}; free some space or choose "
            "another output directory, then run again")
    if exc.errno == errno.EROFS:
        return PrecomputedTifError(
            f"cannot write {path}: the file system is read-only{left}; choose an output directory on a "
            "writable disk")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PrecomputedTifError(
            f"cannot write {path}: permission denied{left}; choose an output directory you may write to, "
            "or change its permissions")
    return PrecomputedTifError(f"cannot write {path}: {exc.strerror or exc}{left}; fix this and run again")
