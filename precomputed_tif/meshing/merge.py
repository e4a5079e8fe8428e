"""The per-segment step: gather each segment's fragments from all blocks, write manifests.

Segments are split into groups; one :class:`MergeTask` owns one group and
puts every object of it into the dataset's storage -- one shard in the sharded
layout, or the ``<id>`` and ``<id>.index`` objects of its segments -- so no two
tasks touch an object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..formats.precomputed.sharding import sharding_spec, write_sharded
from ..geometry import ceil_div
from ..storage import Storage
from .blocks import WorkFile
from .multires import complete_octree, manifest

# A merge task holds one group's meshes in memory; groups are made this small.
GROUP_BYTES = 64 * 2**20
SHARD_ABOVE = 256  # segments: more than this and meshes are sharded (a few files instead of 2 per segment)


def plan_groups(n_segments: int, total_bytes: int, sharded: bool | None, group_bytes: int = GROUP_BYTES):
    """(sharding spec or None, number of groups). Sharded, a group is one shard file; either way
    a group holds about ``group_bytes`` of fragments or less, which one merge task holds in memory."""
    if sharded is None:
        sharded = n_segments > SHARD_ABOVE
    if not sharded:
        groups = max(1, ceil_div(total_bytes, group_bytes))
        return None, groups
    spec = sharding_spec(n_segments)
    while total_bytes / 2 ** spec["shard_bits"] > group_bytes and spec["shard_bits"] < 16:
        spec["shard_bits"] += 1
    return spec, 2 ** spec["shard_bits"]


def group_of(ids: np.ndarray, spec: dict | None, groups: int) -> np.ndarray:
    """Group of each segment id: its shard (identity hash), or the id modulo the number of groups."""
    ids = np.asarray(ids, np.uint64)
    if spec is None:
        return (ids % np.uint64(groups)).astype(np.int64)
    hashed = ids >> np.uint64(spec["preshift_bits"])
    return ((hashed >> np.uint64(spec["minishard_bits"])) & np.uint64(2 ** spec["shard_bits"] - 1)).astype(np.int64)


@dataclass(frozen=True)
class MergeTask:
    """Write the meshes of group ``group`` of ``groups`` under the key prefix ``out`` of
    ``storage``, from the block work files ``work_files`` (keys in the same storage)."""

    storage: Storage
    work_files: tuple[str, ...]
    out: str
    spec: dict | None
    groups: int
    group: int
    num_lods: int
    node: int

    @property
    def id(self) -> str:
        return f"merge/{self.group}"


def run_merge(task: MergeTask) -> str:
    """Write the task's group (each object durably, before the task is recorded as done);
    returns the task's id."""
    fragments: dict[int, dict] = {}
    for key in task.work_files:
        w = WorkFile(task.storage, key)
        if not len(w.index):
            continue
        rows = np.nonzero(group_of(w.index[:, 0], task.spec, task.groups) == task.group)[0]
        for seg, lod, x, y, z, data in w.fragments(rows):
            fragments.setdefault(seg, {})[(lod, x, y, z)] = data
    segments = sorted(fragments)
    datas, manifests = [], []
    for seg in segments:
        data, man = manifest(complete_octree(fragments.pop(seg), task.num_lods), task.node)
        datas.append(data)
        manifests.append(man)
    if task.spec is not None:
        if segments:
            write_sharded(task.storage, task.out, task.spec, segments, manifests, prefixes=datas)
    else:
        for seg, data, man in zip(segments, datas, manifests):
            # Fragments are read by range (never encoded); the manifest is read whole.
            task.storage.put(f"{task.out}/{seg}", data, durable=True)
            task.storage.put(f"{task.out}/{seg}.index", man, durable=True, compressible=True)
    return task.id
