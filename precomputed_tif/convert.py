"""``convert``: TIFF planes in, a complete precomputed pyramid out."""

from __future__ import annotations

import logging
import os
import time
from typing import Sequence

import numpy as np
from tqdm import tqdm

from . import destination, memory
from .display import add_display
from .errors import PrecomputedTifError
from .executor import default_workers, make_executor
from .geometry import DEFAULT_CHUNK_SIZE, DEFAULT_VOXEL_SIZE_UM, Geometry, check_triple
from .info import EXTRA, build_info, write_info
from .progress import DoneLog
from .pyramid import DEFAULT_BLOCK_BYTES, count_chunks, plan_passes, run_task, tasks_of
from .source import open_stack
from .stores import store_class

log = logging.getLogger(__name__)


def convert(
    source: str | Sequence[str],
    dest: str,
    levels: int | None = None,
    voxel_size: Sequence[float] | None = None,
    format: str = "tiff",
    chunk_size: Sequence[int] = DEFAULT_CHUNK_SIZE,
    segmentation: bool = False,
    n_cores: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    memory_limit: int | None = None,
    dask_scheduler: str | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    channel: int | None = None,
    timepoint: int | None = None,
) -> dict:
    """Convert a stack of TIFF planes into a precomputed pyramid at ``dest``; returns its ``info``.

    ``source`` is a glob (planes in natural order of their names: ``img_2``
    before ``img_10``), a list of files (z in the list's order), or one
    multi-page TIFF whose metadata says which pages are z planes, channels and
    time points. Several channels (or colour samples) make one dataset with
    ``num_channels`` channels unless ``channel`` picks one; a time series
    needs ``timepoint``. ``voxel_size`` is in microns (x, y, z); by default it
    is what the files' OME or ImageJ metadata records, else
    1.8, 1.8, 2.0. ``chunk_size`` is in voxels (x, y, z). ``levels`` defaults to enough levels
    that the coarsest fits in one chunk in x and y. ``n_cores`` worker
    processes (default: all cores). ``memory_limit`` (bytes, default half the
    machine's memory) bounds the peak memory of all processes together: it
    sets how large a block each worker holds (at most ``block_bytes``) and,
    if need be, lowers the number of workers. ``dask_scheduler`` runs the
    same tasks on a Dask distributed cluster instead of local processes.

    Raises :class:`~precomputed_tif.PrecomputedTifError` for anything wrong
    with the input or ``dest``, before writing anything. ``info`` is written
    last: a ``dest`` without it is unfinished, and running the same call
    again resumes it, skipping the blocks that were finished.
    """
    store_cls = store_class(format)
    if voxel_size is not None:
        check_triple(tuple(voxel_size), "voxel size", integer=False)
    check_triple(tuple(chunk_size), "chunk size", integer=True)
    if n_cores is not None and n_cores < 1:
        raise PrecomputedTifError(f"--n-cores must be at least 1, got {n_cores}")
    started = time.perf_counter()
    stack = open_stack(source, segmentation=segmentation, progress=progress, channel=channel, timepoint=timepoint)
    voxel_size, voxel_size_from = _voxel_size(voxel_size, stack)
    z, y, x = stack.shape
    geometry = Geometry((x, y, z), chunk_size, voxel_size, levels)
    info = build_info(geometry, stack.dtype, segmentation, stack.n_channels)
    info[EXTRA] = {"voxel_size_from": voxel_size_from}
    job = {
        "format": format,
        "source": {"first": os.path.abspath(stack.files[0]), "last": os.path.abspath(stack.files[-1]),
                   "planes": stack.n_planes, "channel": channel, "timepoint": timepoint},
        "info": info,
    }
    log.info("%d planes of %dx%d %s%s -> %s, %d levels, %s format", z, x, y, stack.dtype.name,
             f", {stack.n_channels} channels" if stack.n_channels > 1 else "", dest, len(geometry.levels), format)
    destination.prepare(dest, job, overwrite)
    store = store_cls(dest, info)
    n_workers, block_bytes = _fit_memory(memory_limit, n_cores, dask_scheduler, geometry, stack, block_bytes)
    passes = plan_passes(geometry, stack.dtype.itemsize * stack.n_channels, block_bytes, stack.whole_rows)
    total = sum(count_chunks(p, geometry) for p in passes)
    done_log = DoneLog(dest)
    done = done_log.load()
    executor = make_executor(n_workers, dask_scheduler)
    try:
        store.create(n_writers=executor.n)
        with tqdm(total=total, desc="writing chunks", unit="chunk", disable=not progress, smoothing=0.1) as bar:
            for p in passes:
                log.debug("levels %d-%d in blocks of %s voxels", p.first, p.last, p.block)
                tasks = _not_done(tasks_of(p, geometry, store, stack, segmentation), done, bar)
                for task_id, n in executor.imap_unordered(run_task, tasks):
                    done_log.record(task_id)
                    bar.update(n)
    except (PrecomputedTifError, OSError) as exc:
        raise PrecomputedTifError(
            f"{exc}; {dest} is unfinished (it has no info file): fix this and run the same command again"
        ) from None
    finally:
        done_log.close()
        executor.close()
    info = add_display(info, store, stack.rgb)
    store.finish()
    write_info(dest, info)
    log.info("wrote %d chunks in %.1f s", total, time.perf_counter() - started)
    return info


def _voxel_size(given, stack) -> tuple[tuple[float, float, float], str]:
    """The voxel size to use -- the one given, else the files' metadata, else the default --
    and where it came from."""
    recorded = stack.voxel_size
    if given is not None:
        if stack.voxel_size_origin and tuple(v for v in recorded) != tuple(given):
            log.info("using the given voxel size %s µm; the %s records %s", _fmt(given),
                     stack.voxel_size_origin, _fmt(recorded))
        return tuple(float(v) for v in given), "given"
    if not stack.voxel_size_origin:
        log.info("no voxel size in the files' metadata: using %s µm (give --voxel-size X,Y,Z)",
                 _fmt(DEFAULT_VOXEL_SIZE_UM))
        return DEFAULT_VOXEL_SIZE_UM, "default"
    size = tuple(r if r is not None else d for r, d in zip(recorded, DEFAULT_VOXEL_SIZE_UM))
    missing = [a for a, r in zip("xyz", recorded) if r is None]
    if missing:
        log.warning("the %s gives no %s voxel size; using %s µm for it (give --voxel-size X,Y,Z)",
                    stack.voxel_size_origin, " or ".join(missing), _fmt(size))
    log.info("voxel size %s µm, from the %s", _fmt(size), stack.voxel_size_origin)
    return size, stack.voxel_size_origin


def _fmt(size) -> str:
    return ",".join("?" if v is None else f"{v:g}" for v in size)


def _not_done(tasks, done: set[str], bar):
    """The tasks an earlier run did not finish; the finished ones only move the progress bar."""
    skipped = 0
    for task in tasks:
        if task.id in done:
            skipped += 1
            bar.update(task.n_chunks())
        else:
            yield task
    if skipped:
        log.info("skipped %d blocks finished by an earlier run", skipped)


def _fit_memory(limit, n_cores, dask_scheduler, geometry, stack, block_bytes) -> tuple[int | None, int]:
    """Workers and block size under the memory limit (for local processes; a Dask cluster's
    workers have their own limits, and get the default block size)."""
    if dask_scheduler:
        return None, block_bytes
    limit = memory.default_limit() if limit is None else int(limit)
    wanted = n_cores or default_workers()
    min_block = int(np.prod(geometry.chunk_size)) * stack.dtype.itemsize * stack.n_channels
    n, block = memory.plan(limit, wanted, block_bytes, min_block)
    if n < wanted:
        log.warning("using %d worker processes instead of %d to stay under the memory limit of %.0f MiB",
                    n, wanted, limit / 2**20)
    log.debug("memory limit %.0f MiB: %d workers, blocks of up to %.0f MiB", limit / 2**20, n, block / 2**20)
    return n, block
