"""Carrying out an OME-TIFF plan: parallel, resumable tiling (stage 1), then one assembly (stage 2).

Stage 1 records each finished task in the destination's done log, so a rerun
of the same command after a kill skips them; a kill during stage 2 leaves only
a hidden temporary file, which the rerun removes before assembling again (on
other storage than a local directory: an anonymous file, gone with the process,
and an unfinished upload, which never appears as an object). The
final ``X.ome.tif`` is the mark of a finished conversion: a rerun then does
nothing but tidy work files a kill may have left.
"""

from __future__ import annotations

import logging
import os
import time

from ...errors import PrecomputedTifError, unfinished
from ...pipeline import destination
from ...pipeline.executor import make_executor
from ...pipeline.progress import DoneLog
from ...pipeline.runner import run_resumable
from ...sources.fingerprint import identify
from ...storage import Storage
from ...storage.trees import remove_tree
from .assemble import assemble
from .plan import FORMAT, OmeTiffPlan
from .tiles import SlabTask, run_slab, slab_tasks

log = logging.getLogger(__name__)


def run(plan: OmeTiffPlan, overwrite: bool = False, progress: bool = False) -> dict:
    """Write the plan's OME-TIFF and its offsets (resuming an unfinished run); returns :func:`result`."""
    started = time.perf_counter()
    dest, storage = plan.dest, plan.storage
    destination.prepare(storage, plan.job, overwrite, identify(plan.source))
    final = storage.location(plan.names.image)
    if storage.exists(plan.names.image):
        log.info("%s is already finished", final)
    else:
        try:
            _tile(plan, storage, progress)
            tiled = time.perf_counter()
            assemble(plan, progress)
        except (PrecomputedTifError, OSError) as exc:
            raise unfinished(exc, dest, f"it has no {plan.names.image} yet") from None
        log.info("wrote %s in %.1f s (tiling %.1f s, assembly %.1f s)", final, time.perf_counter() - started,
                 tiled - started, time.perf_counter() - tiled)
    _remove_work(plan, storage)
    return result(plan)


def _tile(plan: OmeTiffPlan, storage: Storage, progress: bool) -> None:
    """Stage 1: every slab's work files, skipping the slabs an earlier run finished. (A local
    storage's root is absolute: the tasks may run on a Dask cluster's nodes, in other
    working directories.)"""
    with make_executor(plan.n_workers, plan.dask_scheduler) as executor:
        tasks = slab_tasks(plan.source, plan.layout, plan.slab_planes, storage, plan.compression, plan.segmentation)
        run_resumable(executor, run_slab, [tasks], DoneLog(storage), total=plan.layout.size[2],
                      desc="tiling planes", unit="plane", what="slabs of planes", size=_planes, progress=progress)


def _planes(task: SlabTask) -> int:
    return task.z1 - task.z0


def _remove_work(plan: OmeTiffPlan, storage: Storage) -> None:
    """The work files and done log of a finished conversion (kept until the image is in place);
    work files that cannot be removed stay (the next conversion into the destination removes them)."""
    remove_tree(storage, plan.names.work, lambda where, exc: None)
    DoneLog(storage).remove()


def result(plan: OmeTiffPlan) -> dict:
    """What was written, for :func:`summary` and for callers of :func:`~precomputed_tif.convert`."""
    layout = plan.layout
    return {
        "format": FORMAT,
        "image": plan.storage.location(plan.names.image),
        "offsets": plan.storage.location(plan.names.offsets),
        "size": list(layout.size),
        "channels": layout.channels,
        "data_type": layout.dtype,
        "levels": [list(s) for s in layout.levels],
        "tile_size": layout.tile,
        "compression": plan.compression,
        "voxel_size_um": list(plan.voxel_size),
        "voxel_size_from": plan.voxel_size_from,
    }


def summary(result: dict) -> str:
    """One line saying what was written, for the user to check at a glance."""
    x, y, z = result["size"]
    n = result["channels"]
    origin = {"given": "as given", "default": "the default"}.get(result["voxel_size_from"],
                                                                 "from the " + result["voxel_size_from"])
    voxel = ",".join(f"{v:g}" for v in result["voxel_size_um"])
    channels = f", {n} channels" if n > 1 else ""
    levels = len(result["levels"])
    return (f"wrote {result['image']}: {x}x{y}x{z} {result['data_type']}{channels}, {levels} "
            f"level{'s' if levels > 1 else ''} "
            f"in tiles of {result['tile_size']}, {result['compression']}, voxel size {voxel} µm ({origin}); "
            f"Viv's index beside it: {os.path.basename(result['offsets'])}")
