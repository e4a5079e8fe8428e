"""``convert``: TIFF planes in, a complete precomputed pyramid out."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from . import channels, formats
from .errors import PrecomputedTifError, describe, either, in_log, param, setting, unfinished
from .formats import ome_tiff
from .formats.store import ChunkStore
from .geometry import DEFAULT_VOXEL_SIZE_UM, Geometry, check_triple
from .info import EXTRA, INFO, build_info, read_info, write_info
from .options import ConvertOptions, Resources, Result, SeriesResult, split_keywords
from .pipeline import destination, memory
from .pipeline.executor import make_executor
from .pipeline.progress import DoneLog
from .pipeline.runner import run_resumable
from .pyramid import Task, count_chunks, run_task, tasks_of
from .sources import ALL_TIMEPOINTS, Source, open_source
from .sources.fingerprint import identify
from .storage import Storage, absolute, is_bucket_url, local_path, nested, open_storage
from .viewer.display import add_display

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """Everything a conversion will do, decided before anything is written."""

    source: Source
    dest: str
    format: str  # the format's name
    store: type  # the ChunkStore class that holds the chunks (ome-zarr 0.4's is the zarr format's)
    geometry: Geometry
    info: dict
    passes: list
    n_workers: int | None
    segmentation: bool
    dask_scheduler: str | None
    job: dict
    lossless_copies: frozenset = frozenset()
    # Where the dataset goes; ``dest`` names it in messages (its path as given, or its URL).
    storage: Storage | None = None
    # Time points, > 1 for a time series written whole (arrays with a leading t axis).
    timepoints: int = 1

    def destination(self) -> Storage:
        return self.storage if self.storage is not None else open_storage(self.dest)


@dataclass
class SeriesPlan:
    """A time series written as one dataset per time point (``DEST/t0000``, ...): their plans,
    in order of time."""

    parts: list
    dest: str
    format: str


def convert(source: str | Sequence[str], dest: str | Storage, options: ConvertOptions | None = None,
            resources: Resources | None = None, *, overwrite: bool = False, **keywords) -> Result:
    """Convert a stack of TIFF planes (or an existing dataset) into a precomputed pyramid at
    ``dest``; returns its ``info`` (a :class:`~.options.Result`).

    What to make is ``options`` (:class:`~.options.ConvertOptions`), with what
    ``resources`` (:class:`~.options.Resources`); their fields may also be given
    as keyword arguments, as in ``convert(src, dest, format="zarr", n_cores=4)``.

    ``source`` is a glob (planes in natural order of their names: ``img_2``
    before ``img_10``), a list of files (z in the list's order), one
    multi-page TIFF whose metadata says which pages are z planes, channels and
    time points, or the directory of a dataset this project (or Neuroglancer's
    tools) wrote, to store it again in another format. Several channels (or
    colour samples) make one dataset with ``num_channels`` channels unless
    ``channel`` picks one. A time series becomes one OME-Zarr with a ``t`` axis
    (``format="ome-zarr"``), one dataset per time point, ``dest/t0000``, ...
    (``timepoint="all"``), or one time point (``timepoint=N``). An OME-Zarr of
    another tool is read at full resolution (``series`` picks one image of a
    bioformats2raw group). ``voxel_size``
    is in microns (x, y, z); by default it is what the files' OME or ImageJ
    metadata records, else 1.8, 1.8, 2.0. ``chunk_size`` is in voxels (x, y,
    z). ``levels`` defaults to enough levels that the coarsest fits in one
    chunk in x and y. ``n_cores`` worker processes (default: all cores).
    ``memory_limit`` (bytes, default half the machine's memory) bounds the peak
    memory of all processes together: it sets how large a block each worker
    holds (at most ``block_bytes``) and, if need be, lowers the number of
    workers. ``dask_scheduler`` runs the same tasks on a Dask distributed
    cluster instead of local processes.

    ``format="precomputed"`` writes Neuroglancer's own format, which any static
    web server serves: ``encoding`` raw (default for images), png, jpeg
    (``jpeg_quality``) or compressed_segmentation (default for
    segmentations); ``sharded`` True shards every scale that can be, False
    none, None (default) the scales with many chunks.

    ``format="ome-zarr"`` writes an OME-Zarr image (``ngff_version`` "0.5",
    the default: Zarr v3 arrays whose chunks are grouped into shards; or "0.4":
    Zarr v2, for older readers) with levels ``0``, ``1``, ...; a segmentation
    becomes an NGFF label image. ``format="zarr"`` also carries NGFF 0.4
    metadata. Either opens as ``zarr://`` from any static web server.

    ``format="ome-tiff"`` writes one pyramidal OME-TIFF instead, and returns a
    summary of it rather than an ``info`` (see :mod:`.ome_tiff`): ``tile_size``
    (default 512) and ``compression`` (deflate, lzw or none) apply to it only.

    Raises :class:`~precomputed_tif.PrecomputedTifError` for anything wrong
    with the input or ``dest``, before writing anything. ``info`` is written
    last: a ``dest`` without it is unfinished, and running the same call
    again resumes it, skipping the blocks that were finished.
    """
    options, resources = split_keywords(options, resources, keywords)
    return run(plan_conversion(source, dest, options, resources), overwrite=overwrite, progress=resources.progress)


def plan_conversion(source, dest: str | Storage, options: ConvertOptions | None = None,
                    resources: Resources | None = None, **keywords) -> Plan | SeriesPlan | ome_tiff.OmeTiffPlan:
    """Decide a conversion (see :func:`convert`): reads the source's headers, writes nothing.
    ``dest`` is a local path or ``file://`` URL, or a :class:`~.storage.Storage`."""
    options, resources = split_keywords(options, resources, keywords)
    # Before anything else: a URL of a scheme this tool does not write is refused in one line,
    # never taken for a local path; a bucket that cannot be written is found before hours of work.
    storage = open_storage(dest, param("dest"))
    dest = storage.location()
    source = _source_location(source)
    fmt = formats.get(options.format)
    chosen = formats.check_options(fmt, options.format_options, options.chunk_size)
    if fmt.chunked:
        fmt.store_class(chosen).check_storage(storage)
    storage.check_reachable(writing=True)
    voxel_size, chunk_size, segmentation = options.voxel_size, options.chunk_size, options.segmentation
    channel, timepoint, n_cores = options.channel, options.timepoint, resources.n_cores
    if voxel_size is not None:
        check_triple(tuple(voxel_size), param("voxel_size"), integer=False)
    check_triple(tuple(chunk_size), param("chunk_size"), integer=True)
    if n_cores is not None and n_cores < 1:
        raise PrecomputedTifError(f"{param('n_cores')} must be at least 1, got {n_cores}")
    if timepoint is not None and timepoint != ALL_TIMEPOINTS and (
            isinstance(timepoint, bool) or not isinstance(timepoint, (int, np.integer))):
        raise PrecomputedTifError(f"{setting('timepoint', timepoint)}: give a time point's number (0 is the "
                                  f"first), or {ALL_TIMEPOINTS!r} for every one")
    # Every time point: asked for, or a format whose arrays have a t axis given no pick.
    every = timepoint == ALL_TIMEPOINTS or (timepoint is None and fmt.time_axis)
    stack = open_source(source, segmentation=segmentation, progress=resources.progress, channel=channel,
                        timepoint=ALL_TIMEPOINTS if every else timepoint, series=options.series)
    source_storage = getattr(stack, "storage", None)  # a dataset's (DatasetSource)
    if isinstance(source_storage, Storage) and nested(source_storage, storage):
        # --overwrite would delete the dataset being read; a resumed run would write into it.
        raise PrecomputedTifError(f"{param('dest')} {dest} and {param('source')} {source_storage.location()} "
                                  "overlap: the dataset read cannot be written to; give a destination apart from it")
    segmentation = segmentation or getattr(stack, "segmentation", False)
    voxel_size, voxel_size_from = _voxel_size(voxel_size, stack)
    if every and not fmt.time_axis:
        # One dataset per time point, DEST/t0000, DEST/t0001, ...: planned all before any is written.
        parts = []
        for t in range(stack.n_timepoints):
            name = timepoint_name(t)
            part = _child_storage(storage, name)
            parts.append(_plan_dataset(stack.at_timepoint(t), part, part.location(), fmt, chosen, options,
                                       resources, segmentation, voxel_size, voxel_size_from, t))
        return SeriesPlan(parts, dest, fmt.name)
    timepoints = stack.n_timepoints if every else 1
    return _plan_dataset(stack, storage, dest, fmt, chosen, options, resources, segmentation, voxel_size,
                         voxel_size_from, ALL_TIMEPOINTS if timepoints > 1 else timepoint, timepoints)


def _plan_dataset(stack: Source, storage: Storage, dest: str, fmt, chosen, options: ConvertOptions,
                  resources: Resources, segmentation: bool, voxel_size, voxel_size_from: str, timepoint,
                  timepoints: int = 1) -> Plan | ome_tiff.OmeTiffPlan:
    """The plan of one dataset at ``storage`` (named ``dest``) from ``stack``: of the time point
    the stack is at, or with ``timepoints`` > 1 (a format with a t axis) of every time point;
    ``timepoint`` is what the job record says was picked."""
    levels, chunk_size, channel = options.levels, options.chunk_size, options.channel
    n_cores, memory_limit, dask_scheduler = resources.n_cores, resources.memory_limit, resources.dask_scheduler
    if not fmt.chunked:
        return ome_tiff.plan(stack, storage, voxel_size=voxel_size, voxel_size_from=voxel_size_from, levels=levels,
                             tile_size=chosen.tile_size, compression=chosen.compression,
                             segmentation=segmentation, n_cores=n_cores, memory_limit=memory_limit,
                             dask_scheduler=dask_scheduler, block_bytes=resources.block_bytes, channel=channel,
                             timepoint=timepoint)
    fmt.store_class(chosen).check_storage(storage)
    z, y, x = stack.shape
    source_levels = getattr(stack, "levels", None)  # a dataset's (DatasetSource); TIFF planes have none
    if levels is None and source_levels:
        # A dataset stored again keeps its levels, as far as the new chunk size leaves them meaningful.
        levels = min(source_levels, Geometry((x, y, z), chunk_size, voxel_size).max_levels())
    geometry = Geometry((x, y, z), chunk_size, voxel_size, levels, numbered_keys=fmt.numbered_keys)
    n_workers, block_bytes = memory.fit(memory_limit, n_cores, dask_scheduler, _min_block(geometry, stack),
                                        resources.block_bytes)
    planned = fmt.plan(geometry, stack, segmentation, n_workers, block_bytes, chosen)
    info = build_info(geometry, planned.dtype, segmentation, stack.n_channels)
    info[EXTRA] = {"voxel_size_from": voxel_size_from}
    if not segmentation:
        # Names and colours as the source records them, for every writer and every link.
        names, colors = channels.of_source(stack)
        info[EXTRA].update(channel_names=names, channel_colors=colors)
    if timepoints > 1:
        info[EXTRA]["time"] = {"timepoints": timepoints, "interval": stack.time_interval, "unit": stack.time_unit}
    fmt.add_to_info(info, geometry, planned, chosen)
    source_record: dict = {"first": absolute(stack.files[0]), "last": absolute(stack.files[-1]),
                           "planes": stack.n_planes, "channel": channel, "timepoint": timepoint}
    if options.series is not None:  # recorded only when given: other job records stay byte for byte
        source_record["series"] = options.series
    job = {"format": fmt.job_name(chosen), "source": source_record, "info": info}
    log.info("%d planes of %dx%d %s%s%s -> %s, %d levels, %s format", z, x, y, stack.dtype.name,
             f", {stack.n_channels} channels" if stack.n_channels > 1 else "",
             f", {timepoints} time points" if timepoints > 1 else "", dest, len(geometry.levels), fmt.name)
    return Plan(stack, dest, fmt.name, fmt.store_class(chosen), geometry, info, planned.passes, n_workers,
                segmentation, dask_scheduler, job, planned.lossless_copies, storage, timepoints)


def timepoint_name(t: int) -> str:
    """The name of time point ``t``'s dataset when each is written on its own: ``t0000``, ``t0001``..."""
    return f"t{t:04d}"


def _child_storage(storage: Storage, name: str) -> Storage:
    """The storage of ``name`` inside ``storage`` (a directory, or a bucket's prefix), with the
    same settings (a bucket's Cache-Control)."""
    if storage.local_root is not None:
        return open_storage(os.path.join(storage.local_root, name), param("dest"))
    return open_storage(storage.location().rstrip("/") + "/" + name, param("dest"),
                        cache_control=getattr(storage, "cache_control", None))


def _source_location(source):
    """``source`` with ``file://`` URLs made paths; a bucket's URL stays a URL (a dataset there
    is opened through its storage); any other scheme is a one-line user error."""
    if isinstance(source, Storage):
        return source
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source) if is_bucket_url(source) else local_path(source, param("source"))
    return [_source_location(s) for s in source]


def run(plan: Plan | SeriesPlan | ome_tiff.OmeTiffPlan, overwrite: bool = False, progress: bool = False) -> Result:
    """Carry out a plan: write every chunk (skipping what an earlier run finished), then ``info``;
    of a :class:`SeriesPlan`, each time point's dataset after the other."""
    if isinstance(plan, SeriesPlan):
        done = []
        for part in plan.parts:
            done.append(run(part, overwrite=overwrite, progress=progress))
            log.info("time point %d of %d written: %s", len(done), len(plan.parts), part.dest)
        return SeriesResult(done, plan.dest, plan.format)
    if isinstance(plan, ome_tiff.OmeTiffPlan):
        return Result(ome_tiff.run(plan, overwrite=overwrite, progress=progress), plan.dest, ome_tiff.FORMAT)
    started = time.perf_counter()
    dest, info, geometry, stack = plan.dest, plan.info, plan.geometry, plan.source
    storage = plan.destination()
    destination.prepare(storage, plan.job, overwrite, identify(plan.source))
    finished = storage.exists(INFO)
    store = plan.store(storage, info)
    if plan.lossless_copies:
        store.lossless_copies = plan.lossless_copies
    total = sum(count_chunks(p, geometry) for p in plan.passes) * plan.timepoints
    try:
        # Leaving this block by an exception (an error, Ctrl-C, SIGTERM) stops the workers at once.
        with make_executor(plan.n_workers, plan.dask_scheduler) as executor:
            store.create(n_writers=executor.n)
            run_resumable(executor, run_task, _passes(plan, store), DoneLog(storage), total=total,
                          desc="writing chunks", unit="chunk", what="blocks", size=Task.n_chunks,
                          progress=progress)
        # Everything up to info is part of the conversion: a full disk here is reported like
        # one during the chunks, and the dataset stays unfinished.
        info = add_display(info, store, stack.rgb)
        store.finish()
        store.write_metadata(info, _dataset_name(storage))
        store.drop_lossless_copies()
        info = _keep_meshes(storage, info, plan.segmentation)
        write_info(storage, info)
    except (PrecomputedTifError, OSError) as exc:
        if finished:  # the rerun of a finished conversion: the dataset stays as it was, info and all
            raise PrecomputedTifError(describe(exc)) from None
        raise unfinished(exc, dest, "it has no info file") from None
    log.info("wrote %d chunks in %.1f s", total, time.perf_counter() - started)
    return Result(info, dest, plan.format)


def _dataset_name(storage: Storage) -> str:
    """The dataset's name, for metadata that names it: the last part of its path or URL."""
    if storage.local_root is not None:
        return os.path.basename(storage.local_root)
    return storage.location().rstrip("/").rsplit("/", 1)[-1]


def _keep_meshes(storage: Storage, info: dict, segmentation: bool) -> dict:
    """``info`` (of a ``segmentation`` or not) with the mesh and segment-properties keys that a
    finished run of the same conversion had gained from meshing, so rerunning the command does
    not hide them."""
    try:
        old = read_info(storage)
    except PrecomputedTifError:
        return info
    kept = {k: old[k] for k in ("mesh", "segment_properties")
            if isinstance(old.get(k), str) and _named_object_exists(storage, old[k])}
    return {**info, **kept} if segmentation else info


def _named_object_exists(storage: Storage, name: str) -> bool:
    """Whether ``name`` (a key ``info`` holds) names meshing's output there: its ``info``."""
    try:
        return storage.exists(f"{name}/info")
    except PrecomputedTifError:  # not a plain name: nothing of ours
        return False


def _voxel_size(given, stack) -> tuple[tuple[float, float, float], str]:
    """The voxel size to use -- the one given, else the files' metadata, else the default --
    and where it came from."""
    recorded = stack.voxel_size
    if given is not None:
        if stack.voxel_size_origin and tuple(v for v in recorded) != tuple(given):
            log.info("using the given voxel size %s µm; the %s records %s", _fmt(given),
                     stack.voxel_size_origin, _fmt(recorded))
        gx, gy, gz = (float(v) for v in given)
        return (gx, gy, gz), "given"
    if not stack.voxel_size_origin:
        log.info("no voxel size in the files' metadata: using %s µm (give %s)",
                 _fmt(DEFAULT_VOXEL_SIZE_UM), _give_voxel_size())
        return DEFAULT_VOXEL_SIZE_UM, "default"
    x, y, z = (r if r is not None else d for r, d in zip(recorded, DEFAULT_VOXEL_SIZE_UM))
    size = (x, y, z)
    missing = [a for a, r in zip("xyz", recorded) if r is None]
    if missing:
        log.warning("the %s gives no %s voxel size; using %s µm for it (give %s)",
                    stack.voxel_size_origin, " or ".join(missing), _fmt(size), _give_voxel_size())
    _warn_anisotropy(recorded, stack)
    log.info("voxel size %s µm, from the %s", _fmt(size), stack.voxel_size_origin)
    return size, stack.voxel_size_origin


# Beyond this z/xy ratio (either way) a recorded voxel size is more likely a unit mistake (z
# in µm, x and y in nm: 1000) than a real acquisition.
_ANISOTROPY_LIMIT = 100.0


def _warn_anisotropy(recorded, stack) -> None:
    """A warning, quoting the metadata, when the recorded z size is over 100 times the x or y
    size, or under 1/100 of it; the conversion goes on with it."""
    x, y, z = recorded
    ratios = [(z / v, axis) for v, axis in ((x, "x"), (y, "y")) if v is not None and z is not None]
    if not ratios:
        return
    ratio, axis = max(ratios, key=lambda r: max(r[0], 1 / r[0]))
    if 1 / _ANISOTROPY_LIMIT <= ratio <= _ANISOTROPY_LIMIT:
        return
    words = getattr(stack, "voxel_size_metadata", "")
    relation = f"{ratio:.0f} times" if ratio > 1 else f"1/{1 / ratio:.0f} of"
    log.warning("the %s records a voxel size of %s µm (x,y,z), z %s %s; check its units%s, "
                "or give %s", stack.voxel_size_origin, _fmt(recorded), relation, axis,
                f" ({words})" if words else "", _give_voxel_size())


def _give_voxel_size() -> str:
    return in_log(either("voxel_size=(x, y, z)", "--voxel-size X,Y,Z"))


def _fmt(size) -> str:
    return ",".join("?" if v is None else f"{v:g}" for v in size)


def _passes(plan: Plan, store: ChunkStore) -> Iterator[Iterator[Task]]:
    """The tasks of each pass, a pass after the one whose levels it reads."""
    for p in plan.passes:
        log.debug("levels %d-%d in blocks of %s voxels, tasks of %s", p.first, p.last, p.block, p.task_size)
        if plan.timepoints == 1:
            yield tasks_of(p, plan.geometry, store, plan.source, plan.segmentation)
        else:
            yield _series_tasks(plan, store, p)


def _series_tasks(plan: Plan, store: ChunkStore, p) -> Iterator[Task]:
    """A pass's tasks for every time point of a time series, one time point after the other
    (the source is opened at a time point only when its tasks are drawn)."""
    for t in range(plan.timepoints):
        source = plan.source.at_timepoint(t) if p.from_source else plan.source
        yield from tasks_of(p, plan.geometry, store.at_timepoint(t), source, plan.segmentation, timepoint=t)


def _min_block(geometry: Geometry, stack: Source) -> int:
    """Bytes of one chunk: the least block a task can work on."""
    return int(np.prod(geometry.chunk_size)) * stack.dtype.itemsize * stack.n_channels
