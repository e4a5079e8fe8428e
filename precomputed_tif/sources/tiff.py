"""A stack of TIFF planes seen as one lazy (c, z, y, x) volume.

Planes come either from many files, one z plane each (in the order
:mod:`.plane_files` gives), or from one multi-page file, or from the files of
one multi-file OME-TIFF (whose OME-XML says which file holds which plane; any
one of its files, or all of them, name the whole series). What a page is -- a z
plane, a channel, a time point -- is read from the file's own metadata
(OME-XML, ImageJ, tifffile's shape record) through tifffile's series, so
channels and time points are never folded into z. Colour (RGB, RGBA) pages
become channels. Reduced-resolution pages (thumbnails, overviews) are not
planes and are skipped.

Opening a stack reads every page header once, checks that the planes agree and
that the file holds every plane its metadata promises, and records where each
plane's header (and, when uncompressed, its pixels) start. Pixel data is read
only by :meth:`PlaneStack.read`, and only the strips or tiles the requested
region needs; a page is found again by its recorded offset, never by walking
the file's page chain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import operator
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tifffile

from ..errors import PrecomputedTifError, either, param, setting
from ..geometry import Box, ceil_div
from ..storage import is_bucket_url, object_at, open_file
from ..storage.regular_files import open_regular
from . import plane_files, tiff_metadata

log = logging.getLogger(__name__)

IMAGE_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32")
SEGMENTATION_DTYPES = ("uint8", "uint16", "uint32", "uint64")
# A bucket's object is read through a buffer of this many bytes: a TIFF's header and small
# strips or tiles in one request each, larger reads exactly as asked.
OBJECT_BUFFER_BYTES = 64 << 10
# Image dtypes Neuroglancer has no type for, read as the nearest one it has.
_NARROWED = {"float16": "float32", "float64": "float32"}


def supported_dtype(stored: np.dtype | str, segmentation: bool) -> np.dtype:
    """The dtype a plane of ``stored`` dtype becomes in the pyramid, or a user error."""
    stored = np.dtype(stored)
    if stored == np.bool_:
        return np.dtype(np.uint8)
    allowed = SEGMENTATION_DTYPES if segmentation else IMAGE_DTYPES
    if stored.name in allowed:
        return stored
    if not segmentation and stored.name in _NARROWED:
        return np.dtype(_NARROWED[stored.name])
    kind = "segmentation" if segmentation else "image"
    if segmentation:
        hint = {
            "int8": "uint8", "int16": "uint16", "int32": "uint32", "int64": "uint64",
        }.get(stored.name)
        hint = (f"labels must be unsigned integers: convert them to {hint}, or drop "
                f"{setting('segmentation', True)} to show the planes as an image") if hint else \
            "convert them to uint32 labels first"
    else:
        hint = {
            "uint64": f"if they are labels add {setting('segmentation', True)}; otherwise convert them to uint32 "
                      "first",
            "int64": f"convert them to int32 (or to uint64 labels with {setting('segmentation', True)}) first",
        }.get(stored.name, "convert them to one of these first")
    raise PrecomputedTifError(
        f"planes are {stored.name}, which a precomputed {kind} cannot hold "
        f"(supported: {', '.join(allowed)}); {hint}"
    )


class PlaneRef(NamedTuple):
    """Where one (z, channel) plane lives.

    ``file`` indexes :attr:`PlaneStack.files`; ``ifd`` is the byte offset of
    its page's header (-1 for a plane with no header of its own, as in ImageJ
    files over 4 GB); ``data`` is where its pixels start when they are stored
    uncompressed in one piece (-1 otherwise); ``sample`` is which of the
    ``stride`` interleaved samples of each pixel it is (colour pages).
    """

    file: int
    ifd: int
    data: int
    sample: int
    stride: int
    byteorder: str


@dataclass(frozen=True)
class PlaneStack:
    """``n_planes`` z planes of ``n_channels`` channels, each (y, x) ``plane_shape`` of ``stored_dtype``.

    Picklable and small: a worker gets the stack cut to the planes it needs
    with :meth:`subset`. ``voxel_size`` is what the files' metadata records, in
    microns (x, y, z), None for an axis it does not give. ``files`` are every
    file a plane is read from: for a multi-file OME-TIFF, all its files.

    The planes are those of time point ``timepoint`` of the ``n_timepoints`` the
    files hold (:meth:`at_timepoint` gives another), and of channel ``channel``
    alone when one was picked (None: all channels).
    """

    files: tuple[str, ...]
    plane_shape: tuple[int, int]
    stored_dtype: str
    n_planes: int
    n_channels: int
    planes: tuple[PlaneRef, ...]  # n_planes * n_channels, z-major
    first_plane: int = 0
    bool_value: int = 255
    rgb: bool = False
    voxel_size: tuple = (None, None, None)
    voxel_size_origin: str = ""
    # Pixels are in compressed strips as wide as the plane: any columns cost whole rows.
    whole_rows: bool = False
    voxel_size_metadata: str = ""  # the metadata's own words for it, quoted in warnings
    # Per channel, as the files' metadata records them: a name (defaults filled in) and a
    # colour "#rrggbb" or None; empty when unknown. See :mod:`.channels`.
    channel_names: tuple = ()
    channel_colors: tuple = ()
    n_timepoints: int = 1
    timepoint: int = 0
    # The interval between time points and its NGFF unit name ("second", ...), as the
    # metadata records them; None and "" when it does not.
    time_interval: float | None = None
    time_unit: str = ""
    channel: int | None = None
    # One file per z plane (else one multi-page file, or the files of one multi-file OME-TIFF):
    # how :meth:`at_timepoint` opens the files again.
    plane_per_file: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) size of the whole stack."""
        return (self.n_planes, *self.plane_shape)

    @property
    def axes(self) -> str:
        """The axes of the arrays :meth:`read` returns: "zyx", or "czyx" with several channels."""
        return "czyx" if self.n_channels > 1 else "zyx"

    @property
    def dtype(self) -> np.dtype:
        """dtype of arrays returned by :meth:`read` (bool planes become uint8, float64 float32)."""
        d = np.dtype(self.stored_dtype)
        if d == np.bool_:
            return np.dtype(np.uint8)
        return np.dtype(_NARROWED.get(d.name, d.name))

    def subset(self, z0: int, z1: int) -> PlaneStack:
        """The same stack holding only planes z0 <= z < z1 (z stays absolute)."""
        c = self.n_channels
        refs = self.planes[(z0 - self.first_plane) * c:(z1 - self.first_plane) * c]
        used = sorted({r.file for r in refs})
        renumber = {old: new for new, old in enumerate(used)}
        return dataclasses.replace(
            self, files=tuple(self.files[i] for i in used), first_plane=z0,
            planes=tuple(r._replace(file=renumber[r.file]) for r in refs),
        )

    def at_timepoint(self, t: int) -> PlaneStack:
        """The same stack -- same files, channels, planes z (a :meth:`subset` stays one), dtype
        and metadata -- at time point ``t`` (0 <= t < ``n_timepoints``).

        The files' page headers are read again to find where that time point's planes are;
        what opening them warned about is not repeated. A ``t`` out of range is a
        :class:`PrecomputedTifError` naming ``timepoint``."""
        _check_timepoint(t, self.n_timepoints, self.files[0])
        if t == self.timepoint:
            return self
        with _warnings_given():
            if self.plane_per_file:
                # Every file is one plane: reopening this stack's files gives its planes in order.
                other = _open_planes(list(self.files), False, self.channel, t)
            else:
                # Any file of a multi-file OME-TIFF names the whole series.
                other = _open_multipage(self.files[0], self.channel, t)
                if len(self.planes) != len(other.planes):
                    # A subset: planes first_plane <= z < first_plane + (planes held).
                    other = other.subset(self.first_plane, self.first_plane + len(self.planes) // self.n_channels)
        if (len(other.planes), other.n_channels, other.plane_shape, other.stored_dtype) != (
                len(self.planes), self.n_channels, self.plane_shape, self.stored_dtype):
            raise PrecomputedTifError(f"{self.files[0]} changed while it was being read; start again")
        return dataclasses.replace(self, files=other.files, planes=other.planes, timepoint=t)

    def read(self, box: Box) -> np.ndarray:
        """Voxels of ``box`` (absolute coordinates), in :attr:`axes` order: (z, y, x), or
        (c, z, y, x) with channels."""
        nc = self.n_channels
        out = np.empty((nc, *box.shape), self.dtype)
        with contextlib.ExitStack() as files:
            raw, tiffs = {}, {}
            for z in range(box.z0, box.z1):
                i = (z - self.first_plane) * nc
                groups: dict[tuple, list] = {}
                for c, ref in enumerate(self.planes[i:i + nc]):
                    groups.setdefault((ref.file, ref.ifd, ref.data, ref.stride, ref.byteorder), []).append(
                        (out[c, z - box.z0], ref.sample))
                for (fi, ifd, data, stride, byteorder), targets in groups.items():
                    path = self.files[fi]
                    if data >= 0:
                        if fi not in raw:
                            raw[fi] = files.enter_context(_open_raw(path))
                        dtype = np.dtype(self.stored_dtype).newbyteorder(byteorder)
                        _read_rows(raw[fi], data, dtype, stride, self.plane_shape[1], box, targets, path)
                    else:
                        if fi not in tiffs:
                            tiffs[fi] = files.enter_context(_open(path))
                        _read_page(tiffs[fi], ifd, z, path, box, targets)
        if np.dtype(self.stored_dtype) == np.bool_:
            out *= self.bool_value
        return out if nc > 1 else out[0]


def series_choices() -> str:
    """What a time series can become, in a user error's words."""
    whole = either("format='ome-zarr'", "--format ome-zarr")
    each = either(f"timepoint={ALL_TIMEPOINTS!r}", f"--timepoint {ALL_TIMEPOINTS}")
    return f"write every time point into one OME-Zarr with {whole}, or one dataset per time point with {each}"


def _index(timepoint) -> int:
    """The time point a stack is opened at: the one given, else 0."""
    return int(timepoint or 0)


def _check_timepoint(t, n_t: int, path: str) -> int:
    """``t`` as an int, when it is one of the ``n_t`` time points of ``path`` (0 to n_t - 1);
    otherwise a :class:`PrecomputedTifError` naming ``timepoint``."""
    try:
        index = operator.index(t) if not isinstance(t, bool) else None
    except TypeError:
        index = None
    if index is None:
        raise PrecomputedTifError(f"{setting('timepoint', t)}: a time point is a whole number")
    if not 0 <= index < n_t:
        raise PrecomputedTifError(
            f"{setting('timepoint', t)} is out of range: {path} has {n_t} time points (0 to {n_t - 1})"
            if n_t > 1 else f"{setting('timepoint', t)} given, but {path} is not a time series")
    return index


def time_series_error(path: str, n_t: int) -> PrecomputedTifError:
    """The refusal of a source of ``n_t`` > 1 time points opened without ``timepoint``."""
    return PrecomputedTifError(
        f"{path} is a time series of {n_t} time points; {series_choices()}, or pick one with "
        f"{either('timepoint=N', '--timepoint N')} (0 to {n_t - 1})"
    )


def check_channel(channel: int | None, n_channels: int, path: str) -> None:
    """A :class:`PrecomputedTifError` naming ``channel`` when it is not one of the ``n_channels``
    channels of ``path`` (None, all channels, is always fine)."""
    if channel is not None and not 0 <= channel < n_channels:
        raise PrecomputedTifError(
            f"{setting('channel', channel)} is out of range: {path} has {n_channels} "
            f"channel{'s' if n_channels > 1 else ''} (0 to {n_channels - 1})"
        )


def segmentation_channels_error(path: str, n_channels: int) -> PrecomputedTifError:
    """The refusal of a segmentation read from ``n_channels`` > 1 channels."""
    return PrecomputedTifError(
        f"{path} has {n_channels} channels, but a segmentation has one; "
        f"pick the label channel with {either('channel=N', '--channel N')}"
    )


def check_timepoint(t, n_t: int, path: str) -> int:
    """``t`` as an int when it is one of the ``n_t`` time points of ``path``; else a
    :class:`PrecomputedTifError` naming ``timepoint`` (what every source's ``at_timepoint`` says)."""
    return _check_timepoint(t, n_t, path)


@contextlib.contextmanager
def _warnings_given():
    """Drop this module's log records while a stack is opened again: opening it the first time
    said the same, and a series of time points would otherwise say it once per time point."""
    def drop(record: logging.LogRecord) -> bool:
        return False

    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


def _open_raw(path: str):
    """``path`` opened for reading, through :func:`open_regular`: a FIFO, device or socket put
    in the place of a plane is a user error, never a read that waits forever. A bucket's object
    (``s3://BUCKET/KEY``) is read by byte ranges of the version there now (a plane replaced
    while it is read is a user error, never a mix of two)."""
    if is_bucket_url(path):
        storage, key = object_at(path, param("source"))
        reader = storage.open_reader(key)
        if reader is None:
            raise PrecomputedTifError(f"{path} disappeared while it was being read")
        return open_file(reader, path, OBJECT_BUFFER_BYTES)
    f = open_regular(path)
    if f is None:
        if not os.path.lexists(path):
            raise PrecomputedTifError(f"{path} disappeared while it was being read")
        raise PrecomputedTifError(f"{path} is {plane_files.file_kind(path)}, not a regular file; "
                                  "only TIFF files can be read")
    return f


def _real(path: str) -> str:
    """What tells two names of one file apart from two files: the real path; a URL as it is."""
    return path if is_bucket_url(path) else os.path.realpath(path)


def _file_size(path: str) -> int:
    """Bytes in the file or object ``path`` (0 when there is none: opening it will say so)."""
    if is_bucket_url(path):
        storage, key = object_at(path, param("source"))
        return storage.size(key) or 0
    return os.path.getsize(path) if os.path.exists(path) else 0


@contextlib.contextmanager
def _open(path: str):
    """A :class:`tifffile.TiffFile` reading ``path``, opened as :func:`_open_raw` opens it."""
    with _open_raw(path) as f:
        # tifffile finds an OME-TIFF's other files next to the name of the file it reads.
        f.raw.name = path
        try:
            tif = tifffile.TiffFile(f)
        except PrecomputedTifError:  # the bucket failed to answer, or the object changed
            raise
        except Exception as exc:
            raise PrecomputedTifError(f"{path} is not a readable TIFF file ({exc})") from None
        with tif:
            yield tif


@contextlib.contextmanager
def _tifffile_quiet():
    """tifffile logs what it finds wrong with a file as errors; this module turns the same
    findings into one user error of its own, so keep tifffile's lines for --log DEBUG."""
    logger = logging.getLogger("tifffile")
    saved = logger.level, logger.propagate
    handler = _Collector()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        for m in handler.messages:
            log.debug("tifffile: %s", m)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _read_page(tif: tifffile.TiffFile, ifd: int, z: int, path: str, box: Box, targets) -> None:
    """Fill each ``(out, sample)`` of ``targets`` with rows y0:y1, columns x0:x1 of one sample of
    the page whose header is at ``ifd``, decoding only the strips or tiles that overlap."""
    try:
        tif.filehandle.seek(ifd)
        with _tifffile_quiet():
            page = tifffile.TiffPage(tif, index=z)
        _read_segments(tif.filehandle, page, box, targets)
    except PrecomputedTifError:
        raise
    except Exception as exc:
        raise PrecomputedTifError(f"{path}: cannot decode plane data ({exc}); the file may be corrupt") from None


def _read_rows(f, offset: int, dtype: np.dtype, stride: int, width: int, box: Box, targets, path: str) -> None:
    """Fill ``targets`` from rows y0:y1 of an uncompressed plane stored at ``offset``."""
    row_bytes = width * stride * dtype.itemsize
    f.seek(offset + box.y0 * row_bytes)
    nbytes = (box.y1 - box.y0) * row_bytes
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise PrecomputedTifError(f"{path} is shorter than its header says; the file may be truncated")
    rows = np.frombuffer(data, dtype).reshape(box.y1 - box.y0, width, stride)
    for out, sample in targets:
        out[...] = rows[:, box.x0:box.x1, sample]


def _read_segments(fh, page, box: Box, targets) -> None:
    height, width = page.imagelength, page.imagewidth
    if page.is_tiled:
        seg_h, seg_w = page.tilelength, page.tilewidth
    else:
        seg_h, seg_w = min(page.rowsperstrip or height, height), width
    n_rows, n_cols = ceil_div(height, seg_h), ceil_div(width, seg_w)
    separate = page.planarconfig == 2 and page.samplesperpixel > 1
    sample_planes = sorted({s for _, s in targets}) if separate else [0]
    for plane in sample_planes:
        wanted = [(o, s) for o, s in targets if not separate or s == plane]
        for r in range(box.y0 // seg_h, min(n_rows, ceil_div(box.y1, seg_h))):
            for c in range(box.x0 // seg_w, min(n_cols, ceil_div(box.x1, seg_w))):
                index = plane * n_rows * n_cols + r * n_cols + c
                seg_y0, seg_x0 = r * seg_h, c * seg_w
                part = Box(seg_x0, seg_x0 + seg_w, seg_y0, seg_y0 + seg_h, box.z0, box.z0 + 1).intersect(box)
                # Only segments that overlap the (non-empty) box in y and x are visited.
                assert part is not None
                dst = (slice(part.y0 - box.y0, part.y1 - box.y0), slice(part.x0 - box.x0, part.x1 - box.x0))
                src = (slice(part.y0 - seg_y0, part.y1 - seg_y0), slice(part.x0 - seg_x0, part.x1 - seg_x0))
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                if not count:
                    for out, _ in wanted:
                        out[dst] = 0
                    continue
                fh.seek(offset)
                data = fh.read(count)
                if len(data) != count:
                    raise ValueError("file is shorter than its header says")
                segment, _, shape = page.decode(data, index, jpegtables=page.jpegtables,
                                                jpegheader=page.jpegheader)
                segment = segment.reshape(shape[-3], shape[-2], shape[-1])
                for out, sample in wanted:
                    out[dst] = segment[src + (0 if separate else sample,)]


# --- opening ----------------------------------------------------------------------------


@dataclass
class _FileLayout:
    """What one file holds, as planes of this stack."""

    n_z: int
    n_channels: int
    shape: tuple[int, int]
    dtype: np.dtype
    refs: list[PlaneRef]  # n_z * n_channels, z-major, file index 0
    rgb: bool
    voxel_size: tuple
    voxel_size_origin: str
    whole_rows: bool
    files: tuple = ()  # what PlaneRef.file indexes: the file itself, or all files of a multi-file OME-TIFF
    voxel_size_metadata: str = ""
    channel_names: tuple = ()
    channel_colors: tuple = ()
    n_timepoints: int = 1
    time_step: tuple = (None, "")


# ``timepoint`` of :func:`open_stack` that opens a time series at its first time point, for a
# caller that goes through every time point itself (see :meth:`PlaneStack.at_timepoint`).
ALL_TIMEPOINTS = "all"


def open_stack(source: str | Sequence[str], segmentation: bool = False, progress: bool = False,
               channel: int | None = None, timepoint: int | str | None = None) -> PlaneStack:
    """Open the planes named by a glob (or a list of files) and check that they agree.

    ``channel`` picks one channel of a multi-channel input (default: all), ``timepoint`` one time
    point of a time series (required when there are several, unless it is :data:`ALL_TIMEPOINTS`:
    the stack of time point 0, whose :meth:`~PlaneStack.at_timepoint` gives the others). Raises
    :class:`PrecomputedTifError` naming the first offending file when nothing matches, a file is not
    a readable TIFF or holds fewer planes than it says, planes differ in shape, type or channels, or
    the type is not supported for the kind of volume.
    """
    files = plane_files.resolve(source)
    if timepoint == ALL_TIMEPOINTS:
        timepoint = 0
    if len(files) == 1:
        stack = _open_multipage(files[0], channel, timepoint)
    else:
        stack = _open_planes(files, progress, channel, timepoint)
    supported_dtype(stack.stored_dtype, segmentation)
    if np.dtype(stack.stored_dtype).name == "float64" and not segmentation:
        log.warning("planes are float64, which Neuroglancer cannot show: stored as float32 "
                    "(about 7 significant digits; magnitudes over 3.4e38 become infinite)")
    if segmentation and stack.n_channels > 1:
        raise segmentation_channels_error(stack.files[0], stack.n_channels)
    return dataclasses.replace(stack, bool_value=1 if segmentation else 255)


def _open_multipage(path: str, channel, timepoint) -> PlaneStack:
    layout = _file_layout(path, channel, timepoint, trust_plane_count=True)
    return PlaneStack(layout.files, layout.shape, layout.dtype.name, layout.n_z, layout.n_channels,
                      tuple(layout.refs), rgb=layout.rgb, voxel_size=layout.voxel_size,
                      voxel_size_origin=layout.voxel_size_origin and f"{layout.voxel_size_origin} of {path}",
                      whole_rows=layout.whole_rows, voxel_size_metadata=layout.voxel_size_metadata,
                      channel_names=layout.channel_names, channel_colors=layout.channel_colors,
                      n_timepoints=layout.n_timepoints, timepoint=_index(timepoint), channel=channel,
                      time_interval=layout.time_step[0], time_unit=layout.time_step[1])


def _open_planes(files: list[str], progress: bool, channel, timepoint) -> PlaneStack:
    from tqdm import tqdm

    first = None
    refs: list[PlaneRef] = []
    disagreeing = None
    for i, path in enumerate(tqdm(files, desc="checking planes", unit="plane", disable=not progress, leave=False)):
        layout = _file_layout(path, channel, timepoint)
        if len(layout.files) > 1:
            return _one_multifile_series(path, layout, files, channel, timepoint)
        if layout.n_z != 1:
            raise PrecomputedTifError(
                f"{path} holds {layout.n_z} planes; give either one file per plane or a single multi-page file"
            )
        if first is None:
            first, first_path = layout, path
        elif (layout.shape, layout.dtype, layout.n_channels) != (first.shape, first.dtype, first.n_channels):
            raise PrecomputedTifError(
                f"{path} is {_describe(layout)}, but {first_path} is {_describe(first)}; "
                "all planes must have the same size, type and channels"
            )
        elif disagreeing is None and layout.voxel_size_origin and layout.voxel_size != first.voxel_size:
            disagreeing = path
        refs.extend(r._replace(file=i) for r in layout.refs)  # one file: every ref's file is 0
    # resolve() gave at least one file (it refuses to match none), so the loop saw a first plane.
    assert first is not None
    if disagreeing:
        log.warning("%s records a voxel size of %s µm, but %s records %s µm; using the first", disagreeing,
                    _fmt_size(_file_layout(disagreeing, channel, timepoint).voxel_size), files[0],
                    _fmt_size(first.voxel_size))
    origin = first.voxel_size_origin and f"{first.voxel_size_origin} of {files[0]}"
    return PlaneStack(tuple(files), first.shape, first.dtype.name, len(files), first.n_channels, tuple(refs),
                      rgb=first.rgb, voxel_size=first.voxel_size, voxel_size_origin=origin,
                      whole_rows=first.whole_rows, voxel_size_metadata=first.voxel_size_metadata,
                      channel_names=first.channel_names, channel_colors=first.channel_colors,
                      n_timepoints=first.n_timepoints, timepoint=_index(timepoint), channel=channel,
                      time_interval=first.time_step[0], time_unit=first.time_step[1],
                      plane_per_file=True)


def _one_multifile_series(path: str, layout: _FileLayout, given: list[str], channel, timepoint) -> PlaneStack:
    """The stack of a multi-file OME-TIFF that ``path``, one of the ``given`` files, belongs to --
    when the given files are all files of that one series (a glob of its files names it once)."""
    series = {_real(f) for f in layout.files}
    others = [f for f in given if _real(f) not in series]
    if others:
        raise PrecomputedTifError(
            f"{path} is one of the {len(layout.files)} files of a multi-file OME-TIFF, which holds the whole "
            f"series, but {others[0]} is not one of them; give one file of the series as {param('source')}"
        )
    if len(given) < len(layout.files):
        log.warning("the source names %d of the %d files of the multi-file OME-TIFF %s belongs to; "
                    "converting the whole series", len(given), len(layout.files), path)
    return _open_multipage(path, channel, timepoint)


def _describe(layout: _FileLayout) -> str:
    channels = f", {layout.n_channels} channels" if layout.n_channels > 1 else ""
    return f"{layout.shape[1]}x{layout.shape[0]} {layout.dtype.name}{channels}"


def _fmt_size(size) -> str:
    return ",".join("?" if v is None else f"{v:g}" for v in size)


def _check_chain(tif, path: str, size: int, trust_plane_count: bool) -> int | None:
    """Check that every page header of the file can be read (a truncated copy cannot); the
    number of planes the metadata declares, when it is to be trusted (else None)."""
    n_headers, chain_ok = _walk_chain(tif, size)
    declared = _declared_planes(tif) if trust_plane_count else None
    if not chain_ok:
        expected = f"{declared}" if declared is not None else f"more than {n_headers}"
        raise PrecomputedTifError(
            f"{path} is truncated or damaged: it should hold {expected} planes, but only {n_headers} "
            f"can be read; copy the file again from its original"
        )
    return declared


def _first_series(tif, path: str):
    """(number of pages, the first image series) of an open file; a user error when tifffile
    cannot make sense of it."""
    try:
        return len(tif.pages), tif.series[0]
    except PrecomputedTifError:
        raise
    except Exception as exc:
        raise PrecomputedTifError(f"{path} is not a readable TIFF file ({exc})") from None


def _file_layout(path: str, channel: int | None, timepoint: int | None,
                 trust_plane_count: bool = False) -> _FileLayout:
    """Read one file's page headers and metadata; which page (and sample) holds each (z, c).

    With ``trust_plane_count`` the number of planes the metadata declares must
    be there. Files of one plane each are not held to it: tools that split a
    stack (tiffsplit) copy the whole stack's description into every file.
    """
    size = _file_size(path)
    with _tifffile_quiet(), _open(path) as tif:
        declared = _check_chain(tif, path, size, trust_plane_count)
        _check_companions(tif, path)
        n_pages, series = _first_series(tif, path)
        axes, shape = series.axes, tuple(series.shape)
        page0 = series.keyframe
        height, width = page0.imagelength, page0.imagewidth
        samples = shape[axes.index("S")] if "S" in axes else 1
        dims = [(a, n) for a, n in zip(axes, shape) if a not in "YXS"]
        n_planes = math.prod(n for _, n in dims)
        if declared is not None and declared != n_planes:
            raise PrecomputedTifError(
                f"{path} is truncated or damaged: its metadata says it holds {declared} planes, but "
                f"{n_planes} can be read ({n_pages} page headers); copy the file again from its original"
            )
        if page0.imagedepth != 1:
            raise PrecomputedTifError(f"{path}: pages that are volumes themselves (ImageDepth) are not supported")
        pages = list(series.pages)
        if any(p is None for p in pages):
            missing = sum(p is None for p in pages)
            raise PrecomputedTifError(
                f"{path} is truncated or damaged: {missing} of its {len(pages)} planes are missing"
            )
        dtype = np.dtype(page0.dtype)
        rgb = samples in (3, 4) and page0.photometric in (2, 6)  # RGB, or YCbCr (JPEG) decoded to RGB
        _warn_other_series(tif, path, series)
        locate, files = _page_locator(tif, path, series, pages, n_planes, height, width, samples, dtype, size)
        voxel_size, origin = tiff_metadata.voxel_size_of(tif)
        voxel_words = tiff_metadata.voxel_size_words(tif, origin)
        whole_rows = not page0.is_tiled and page0.compression != 1
        recorded_channels = tiff_metadata.channel_metadata(tif)
        time_step = tiff_metadata.time_step_of(tif)

    kinds = _axis_kinds(dims, path)
    n_t, n_z, n_c = (math.prod(n for (_, n), k in zip(dims, kinds) if k == want) for want in "TZC")
    if n_c > 1 and samples > 1:
        raise PrecomputedTifError(f"{path} has both {n_c} channels and {samples} colour samples; not supported")
    if n_t > 1 and timepoint is None:
        raise time_series_error(path, n_t)
    t = _check_timepoint(_index(timepoint), n_t, path)
    channels = max(n_c, samples)
    check_channel(channel, channels, path)
    wanted = [channel] if channel is not None else list(range(channels))
    refs = []
    for z in range(n_z):
        for c in wanted:
            index = np.ravel_multi_index(
                [{"T": t, "Z": z, "C": c if samples == 1 else 0}.get(k, 0) for k in kinds],
                [n for _, n in dims]) if dims else 0
            refs.append(locate(int(index), c if samples > 1 else 0))
    names, colors = tiff_metadata.pick_channels(recorded_channels, channels, rgb, wanted)
    return _FileLayout(n_z, len(wanted), (height, width), dtype, refs, rgb and channel is None,
                       voxel_size, origin, whole_rows, files, voxel_words, names, colors, n_t, time_step)


def _check_companions(tif, path: str) -> None:
    """Every other file a multi-file OME-TIFF's metadata names is there and a regular file,
    before tifffile opens them (it would read a missing one's planes as zeros, and wait
    forever on a FIFO)."""
    if not tif.is_ome:
        return
    names = tiff_metadata.ome_other_files(tif.ome_metadata or "", os.path.basename(path))
    if names and is_bucket_url(path):
        raise PrecomputedTifError(
            f"{path} is one of the {len(names) + 1} files of a multi-file OME-TIFF, which is read from a local "
            "folder only; copy its files into one")
    for name in names:
        other = os.path.join(os.path.dirname(path), name)
        if not os.path.lexists(other):
            raise PrecomputedTifError(
                f"{other} is missing: {path} is one of the {len(names) + 1} files of a multi-file OME-TIFF, "
                "which holds planes in each of them; copy all its files into one folder"
            )
        if not os.path.isfile(other):
            raise PrecomputedTifError(
                f"{other}, a file of the multi-file OME-TIFF {path} belongs to, is "
                f"{plane_files.file_kind(other)}, not a regular file"
            )


def _axis_kinds(dims, path) -> list[str]:
    """'T', 'Z' or 'C' for each non-YXS axis of a series: tifffile's generic image index
    (I, Q) is z when there is no other z axis; axes of length 1 do not matter."""
    letters = [a for a, n in dims if n > 1]
    kinds = []
    for a, n in dims:
        if a in "TZC":
            kinds.append(a)
        elif n == 1:
            kinds.append("-")
        elif a in "IQ" and "Z" not in letters and sum(1 for b in letters if b in "IQ") == 1:
            kinds.append("Z")
        else:
            raise PrecomputedTifError(
                f"{path} has an axis {a!r} of length {n} (axes {''.join(x for x, _ in dims)}) that is neither "
                "z, channel nor time; save it as a z-stack, with channels or time points if any"
            )
    return kinds


def _page_locator(tif, path, series, pages, n_planes, height, width, samples, dtype, size):
    """(A function of (plane index in the series, sample) -> PlaneRef, the files its
    PlaneRefs index), after checking that every plane's data lies inside its file.

    The files are ``path`` alone, or for a multi-file OME-TIFF every file holding a
    plane of the series, in the order of their first planes."""
    page0 = series.keyframe
    contiguous_samples = page0.planarconfig != 2
    stride = samples if contiguous_samples else 1
    plane_bytes = height * width * samples * dtype.itemsize
    raw = (page0.compression == 1 and dtype != np.bool_ and page0.bitspersample == dtype.itemsize * 8
           and page0.fillorder == 1)
    if len(pages) == n_planes:
        data, in_file = [], []
        files: list[str] = []
        sizes: list[int] = []
        index_of: dict[str, int] = {}
        parents: dict[int, int] = {}
        real_path = _real(path)
        for p in pages:
            fi = parents.get(id(p.parent))
            if fi is None:
                where = _real(p.parent.filehandle.path)
                if where not in index_of:
                    index_of[where] = len(files)
                    files.append(path if where == real_path else where)
                    sizes.append(size if where == real_path else os.path.getsize(where))
                fi = parents[id(p.parent)] = index_of[where]
            in_file.append(fi)
            ends = [o + c for o, c in zip(p.dataoffsets, p.databytecounts) if c]
            if ends and max(ends) > sizes[fi]:
                raise PrecomputedTifError(
                    f"{files[fi]} is truncated: its planes need {max(ends)} bytes, the file has {sizes[fi]}")
            data.append(_contiguous(p) if raw else -1)

        def locate(index, sample):
            p, start, fi = pages[index], data[index], in_file[index]
            byteorder = p.parent.byteorder
            if start >= 0 and not contiguous_samples:
                start += sample * height * width * dtype.itemsize
                return PlaneRef(fi, p.offset, start, 0, 1, byteorder)
            return PlaneRef(fi, p.offset, start, sample, stride, byteorder)
        return locate, tuple(files)
    # Fewer page headers than planes: ImageJ (and tifffile) store stacks over 4 GB with one
    # header and every plane's pixels after the first, uncompressed.
    if series.dataoffset is None or not raw or not contiguous_samples:
        raise PrecomputedTifError(
            f"{path} is truncated or damaged: it should hold {n_planes} planes, but only {len(pages)} "
            "can be read")
    end = series.dataoffset + n_planes * plane_bytes
    if end > size:
        readable = max(0, (size - series.dataoffset) // plane_bytes)
        raise PrecomputedTifError(
            f"{path} is truncated: it should hold {n_planes} planes, but only {readable} can be read "
            f"(the file has {size} of {end} bytes)")

    def locate_contiguous(index, sample):
        return PlaneRef(0, -1, series.dataoffset + index * plane_bytes, sample, stride, tif.byteorder)
    return locate_contiguous, (path,)


def _contiguous(page) -> int:
    """Byte offset of a page's pixels when its segments follow each other without gaps; else -1."""
    offsets, counts = page.dataoffsets, page.databytecounts
    for i in range(1, len(offsets)):
        if offsets[i] != offsets[i - 1] + counts[i - 1]:
            return -1
    return int(offsets[0]) if offsets else -1


def _walk_chain(tif, size: int) -> tuple[int, bool]:
    """(number of page headers, whether the chain of them ends properly): follow the 'next
    page' pointers from the file header until one is 0, or points outside the file, back
    to a page already seen, or to a header that does not fit in the file."""
    t = tif.tiff
    fh = tif.filehandle
    fh.seek(8 if t.is_bigtiff else 4)
    (ifd,) = struct.unpack(t.offsetformat, fh.read(t.offsetsize))
    seen: set[int] = set()
    while ifd:
        if ifd in seen or ifd < 8 or ifd + t.tagnosize > size:
            return len(seen), False
        seen.add(ifd)
        fh.seek(ifd)
        (n,) = struct.unpack(t.tagnoformat, fh.read(t.tagnosize))
        end = ifd + t.tagnosize + n * t.tagsize
        if n == 0 or end + t.offsetsize > size:
            return len(seen) - 1, False
        fh.seek(end)
        (ifd,) = struct.unpack(t.offsetformat, fh.read(t.offsetsize))
    return len(seen), True


def _declared_planes(tif) -> int | None:
    """How many planes the file's metadata says it holds, if it says."""
    if tif.imagej_metadata is not None:
        n = tif.imagej_metadata.get("images")
        if isinstance(n, int) and n > 0:
            return n
    if tif.ome_metadata and tif.is_ome:
        return tiff_metadata.ome_plane_count(tif.ome_metadata)
    if tif.is_shaped:
        meta = tif.shaped_metadata
        if meta and isinstance(meta[0].get("shape"), (list, tuple)):
            shape = list(meta[0]["shape"])
            page = tif.pages.first
            per_page = page.imagelength * page.imagewidth * page.samplesperpixel
            total = math.prod(shape)
            return total // per_page if per_page and total % per_page == 0 else None
    return None


def _warn_other_series(tif, path: str, main) -> None:
    others = [s for s in tif.series[1:] if s is not main]
    full = [s for s in others if s.keyframe.imagelength == main.keyframe.imagelength
            and s.keyframe.imagewidth == main.keyframe.imagewidth and not s.keyframe.is_reduced]
    if full:
        log.warning("%s holds %d image series; converting only the first (axes %s, shape %s)",
                    path, len(full) + 1, main.axes, tuple(main.shape))
    elif others:
        log.info("%s: skipping %d series of reduced-resolution pages (thumbnails or overviews)", path, len(others))
