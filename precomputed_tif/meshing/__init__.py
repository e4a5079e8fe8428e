"""Meshes and segment properties for a segmentation dataset: ``mesh_dataset``.

Two passes over a finished segmentation, on the same executors as a conversion:

1. block tasks (:mod:`.blocks`): every level of detail is cut into blocks of
   octree nodes; each task meshes its nodes and writes their Draco fragments
   and (at full resolution) voxel counts to a work file in ``.mesh-work``;
2. merge tasks (:mod:`.merge`): each owns a group of segments (a shard file when
   sharded) and writes their manifests and fragment data.

Then ``mesh/info``, ``segment_properties/info`` and the dataset's ``info``
(``"mesh"`` and ``"segment_properties"``) are written. Finished tasks are
recorded in ``.mesh-work``, so running the same command again after an
interruption resumes; the work directory is removed at the end. Everything,
work files included, is written through the dataset's
:class:`~precomputed_tif.storage.Storage`: nothing here needs a local path.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time

import numpy as np

from ..errors import PrecomputedTifError, param, require_extra, setting, unfinished
from ..formats.volume import open_volume
from ..info import read_info, write_info
from ..pipeline import memory
from ..pipeline.executor import make_executor
from ..pipeline.progress import DoneLog
from ..pipeline.runner import run_resumable
from ..storage import Storage, StorageLike, open_storage
from ..storage.trees import remove_tree
from .blocks import WorkFile, lod_size, plan_blocks, run_block
from .merge import MergeTask, plan_groups, run_merge
from .multires import MESH_DIR, mesh_info
from .segment_properties import PROPERTIES_DIR, build_properties, read_properties_csv, write_properties

log = logging.getLogger(__name__)

WORK_DIR = ".mesh-work"
JOB = "job.json"
DEFAULT_NODE = 64  # voxels per axis of a full-resolution octree node
MAX_BLOCK_BYTES = 64 * 2**20


def require_mesh_packages() -> None:
    """Raise a one-line error when the ``mesh`` extra (zmesh, DracoPy: imported only by the
    workers that mesh) is not installed."""
    require_extra("mesh", "meshing", "zmesh", "DracoPy")


def mesh_dataset(dataset: StorageLike, n_cores: int | None = None, memory_limit: int | None = None,
                 dask_scheduler: str | None = None, properties: str | None = None,
                 sharded: bool | None = None, node: int = DEFAULT_NODE, progress: bool = False,
                 max_block_bytes: int = MAX_BLOCK_BYTES) -> dict:
    """Write multi-resolution meshes and segment properties for the segmentation at ``dataset``.

    ``dataset`` is a path or URL, or a :class:`~precomputed_tif.storage.Storage` (a bucket's
    ``cache_control`` then goes to every object written). ``properties`` is an optional CSV
    file (header row with an ``id`` column; ``name``, ``tags`` separated by ``;``,
    ``description`` and any other columns). ``sharded``:
    True, False or None (sharded when there are more than a few hundred segments).
    ``n_cores``, ``memory_limit`` (bytes) and ``dask_scheduler`` as for
    :func:`precomputed_tif.convert`. Returns the dataset's new ``info``.
    """
    started = time.perf_counter()
    require_mesh_packages()
    if n_cores is not None and n_cores < 1:
        raise PrecomputedTifError(f"{param('n_cores')} must be at least 1, got {n_cores}")
    if node < 2 or node % 2:
        raise PrecomputedTifError(f"the octree node size must be an even number of voxels, got {node}")
    storage = open_storage(dataset, param("dataset"))
    dataset = storage.location()
    volume = open_volume(storage)
    info, volume_info = volume.info, volume.volume_info
    if not volume_info.segmentation:
        raise PrecomputedTifError(
            f"{dataset} is an image, not a segmentation: meshes are made from labels "
            f"(convert the label planes with {setting('segmentation', True)})")
    if volume_info.n_channels != 1:
        raise PrecomputedTifError(f"{dataset} has {volume_info.n_channels} channels; a segmentation has one")
    if volume_info.dtype.kind not in "ui":
        raise PrecomputedTifError(f"{dataset} holds {volume_info.dtype.name} values; segment labels are integers")
    user = read_properties_csv(properties) if properties else None
    x, y, z = volume.size(volume.keys[0])
    size = (int(x), int(y), int(z))
    num_lods = 1
    while max(lod_size(size, num_lods - 1)) >= node and num_lods < 12:
        num_lods += 1
    itemsize = volume_info.dtype.itemsize
    n_workers, nodes_per_task = _fit_memory(memory_limit, n_cores, dask_scheduler, node, itemsize, max_block_bytes)

    job = {"scales": info["scales"], "data_type": volume_info.dtype.name, "node": node, "lods": num_lods,
           "nodes_per_task": nodes_per_task, "sharded": sharded}
    # An unreachable cluster is reported before any change; leaving the block by an exception
    # (an error, Ctrl-C, SIGTERM) stops the workers at once.
    with make_executor(n_workers, dask_scheduler) as executor:
        # The dataset's path absolute: the tasks may run on a Dask cluster's nodes, in other working directories.
        tasks = plan_blocks(storage, storage, WORK_DIR, size, num_lods, node, nodes_per_task)
        try:
            _prepare(storage, info, job)
            run_resumable(executor, run_block, [tasks], DoneLog(storage, WORK_DIR), total=len(tasks),
                          desc="meshing blocks", unit="block", what="blocks", progress=progress)
            log.info("meshed %d blocks in %.1f s", len(tasks), time.perf_counter() - started)
            counts, n_segments, total_bytes = _gather(storage, [t.key for t in tasks])
            spec, groups = plan_groups(n_segments, total_bytes, sharded)
            merges = [MergeTask(storage, tuple(t.key for t in tasks), MESH_DIR, spec, groups, g, num_lods, node)
                      for g in range(groups)]
            log.info("%d segments, %.1f MiB of fragments, written in %d %s", n_segments, total_bytes / 2**20,
                     groups, "shards" if spec else "groups")
            run_resumable(executor, run_merge, [merges], DoneLog(storage, WORK_DIR), total=len(merges),
                          desc="writing meshes", unit="group", what="groups of segments", progress=progress)
            # The dataset's info names the meshes only once they and the properties are all stored.
            scale = volume_info.scales[0]
            storage.put(f"{MESH_DIR}/info", json.dumps(mesh_info(scale.resolution, scale.voxel_offset, spec),
                                                       indent=2).encode() + b"\n", durable=True)
            voxel_um3 = float(np.prod(scale.resolution)) / 1e9
            write_properties(storage, build_properties(counts, voxel_um3, user))
            info = dict(read_info(storage))
            info["mesh"] = MESH_DIR
            info["segment_properties"] = PROPERTIES_DIR
            write_info(storage, info)
        except OSError as exc:
            raise unfinished(exc, f"meshing {dataset}", "its info names no meshes yet") from None
    if user:
        unknown = len(set(user["ids"]) - set(counts))
        if unknown:
            log.warning("%d segments of %s are not in the segmentation (listed with 0 voxels)", unknown, properties)
    remove_tree(storage, WORK_DIR, _ignore)
    log.info("meshed %d segments in %d levels of detail in %.1f s", len(counts), num_lods,
             time.perf_counter() - started)
    return info


def _ignore(where: str, exc: OSError) -> None:
    """Work files that could not be removed stay: the next meshing replaces them."""


def _info_stamp(storage: Storage) -> list[int]:
    st = storage.stat("info")
    if st is None:
        raise FileNotFoundError(errno.ENOENT, "no info", storage.location("info"))
    return [st.mtime_ns, st.size]


def _prepare(storage: Storage, info: dict, job: dict) -> None:
    """Resume when the work directory holds this same job on this same dataset (its ``info``
    not rewritten since: a new conversion rewrites it), else start afresh: the old meshes and
    properties stop being announced in ``info`` first, then are removed."""
    try:
        if json.loads(storage.get(f"{WORK_DIR}/{JOB}") or b"null") == dict(job, info=_info_stamp(storage)):
            return
    except (OSError, ValueError):
        pass
    root = storage.local_root
    if root is not None and not os.access(root, os.W_OK):
        raise PrecomputedTifError(f"{storage.location()} is not writable")
    if "mesh" in info or "segment_properties" in info:
        fresh = {k: v for k, v in info.items() if k not in ("mesh", "segment_properties")}
        write_info(storage, fresh)
    for name in (MESH_DIR, PROPERTIES_DIR, WORK_DIR):
        remove_tree(storage, name, _ignore)
    storage.put(f"{WORK_DIR}/{JOB}", json.dumps(dict(job, info=_info_stamp(storage))).encode(), durable=True)


def _gather(storage: Storage, keys: list[str]) -> tuple[dict[int, int], int, int]:
    """Voxel counts per segment, number of segments with meshes, bytes of all fragments."""
    counts: dict[int, int] = {}
    meshed = set()
    total = 0
    for key in keys:
        w = WorkFile(storage, key)
        for seg, n in w.counts:
            counts[int(seg)] = counts.get(int(seg), 0) + int(n)
        if len(w.index):
            meshed.update(np.unique(w.index[:, 0]).tolist())
            total += int(w.index[:, 5].sum())
    return counts, len(meshed), total


def _fit_memory(limit, n_cores, dask_scheduler, node, itemsize, max_block_bytes) -> tuple[int | None, int]:
    """Workers and nodes per task (per axis) under the memory limit: a task holds at least one
    node, and one voxel more along each axis."""
    n, block = memory.fit(limit, n_cores, dask_scheduler, (node + 1) ** 3 * itemsize, max_block_bytes)
    k = 1
    while ((k + 1) * node + 1) ** 3 * itemsize <= block:
        k += 1
    return n, k
