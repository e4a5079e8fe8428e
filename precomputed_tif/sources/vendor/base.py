"""What every microscope-file reader shares: an image of named axes seen as a :class:`Source`.

A reader (one module each: :mod:`.nd2`, :mod:`.lif`, :mod:`.czi`, :mod:`.ims`,
:mod:`.bdv`, :mod:`.n5`) says what the file holds -- its series
(:class:`SeriesInfo`), and for the one picked an :class:`Image`: (z, y, x)
size, dtype, channels, time points, voxel size in µm, channel names and
colours -- and how to read a region of one time point (:meth:`ArraySource._read`).
:func:`open_series` does the rest the same way for every reader: which series
(one line listing them when a file holds several and none was picked), which
time point (a time series without one is refused as TIFF time series are),
which channels, the dtype check, and the words naming the metadata the voxel
size came from.

An :class:`ArraySource` is a small frozen dataclass (path, series, what the
metadata said): workers get it pickled and open the file again by path, once
per process (:func:`handle`). Reading a box reads only the planes, and within
them only the rows and columns, the box covers, as far as the file's own
layout allows (compressed blocks are read whole).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import importlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from ...errors import PrecomputedTifError, either, setting
from ...geometry import Box
from ..tiff import (
    ALL_TIMEPOINTS,
    check_channel,
    check_timepoint,
    segmentation_channels_error,
    supported_dtype,
    time_series_error,
)

_NARROWED = {"float16": "float32", "float64": "float32", "bool": "uint8"}


class MissingLibrary(PrecomputedTifError):
    """A reader's library is not installed (the message names the extra that installs it)."""


class DamagedFile(PrecomputedTifError):
    """A file, or one of the images it holds, cannot be read because its bytes are cut short,
    missing or damaged (the message says which image and what is wrong). ``--inspect`` reports
    such images and then fails, where an image it merely cannot convert is only described."""


def require(module: str, extra: str, path: str, what: str) -> Any:
    """``module`` imported, or one line saying which extra of this package installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingLibrary(
            f"{path}: reading {what} files needs the {module.split('.')[0]} package, which is not installed: "
            f'pip install "precomputed-tif[{extra}]"') from None


@dataclass(frozen=True)
class SeriesInfo:
    """One image of a file that holds several: its index (what ``series`` picks), name and
    size in the file's own axis letters (``"T 20, C 2, Z 128, X 128"``)."""

    index: int
    name: str
    dims: str

    def describe(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"{self.index}{name} ({self.dims})"


@dataclass(frozen=True)
class Image:
    """What one series is, as this project reads it.

    ``shape`` (z, y, x) voxels; ``dtype`` as stored; ``n_channels`` and
    ``n_timepoints`` (1 when none); ``voxel_size`` (x, y, z) in µm, None for an
    axis the metadata does not give; ``channel_names`` and ``channel_colors``
    (``#rrggbb``) per channel, None where the metadata gives none; ``time_interval`` and
    ``time_unit`` between time points where known; ``rgb`` when
    the channels are a colour image's samples; ``key``: whatever the reader needs
    to find the series' voxels again (hashable, pickled with the source).
    """

    shape: tuple[int, int, int]
    dtype: str
    n_channels: int = 1
    n_timepoints: int = 1
    voxel_size: tuple = (None, None, None)
    channel_names: tuple = ()
    channel_colors: tuple = ()
    rgb: bool = False
    key: tuple = ()
    # Between time points, in ``time_unit`` (NGFF's unit names, "second"...); None when unknown.
    time_interval: float | None = None
    time_unit: str = ""


@dataclass(frozen=True)
class ArraySource:
    """One time point of one series of a microscope file, a :class:`~precomputed_tif.sources.Source`.

    Subclasses say how to open the file (:meth:`_open`) and read a region
    (:meth:`_read` or :meth:`_read_channel`); everything else is here.
    """

    path: str
    image: Image
    series: int | None = None  # None: the file holds one image
    series_name: str = ""
    n_series: int = 1
    channels: tuple[int, ...] = (0,)  # the file's channels read, in order
    timepoint: int = 0
    voxel_size_origin: str = ""
    other_files: tuple[str, ...] = ()  # read besides ``path`` (BigDataViewer's HDF5 beside its XML)

    label: ClassVar[str] = ""  # "ND2": what messages call the file's kind

    # --- the Source seam -------------------------------------------------------------------

    @property
    def files(self) -> tuple[str, ...]:
        return (self.path, *self.other_files)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.image.shape

    @property
    def n_planes(self) -> int:
        return self.image.shape[0]

    @property
    def time_interval(self) -> float | None:
        return self.image.time_interval

    @property
    def time_unit(self) -> str:
        return self.image.time_unit

    @property
    def stored_dtype(self) -> str:
        return self.image.dtype

    @property
    def dtype(self) -> np.dtype:
        name = np.dtype(self.image.dtype).name
        return np.dtype(_NARROWED.get(name, name))

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def axes(self) -> str:
        return "czyx" if self.n_channels > 1 else "zyx"

    @property
    def n_timepoints(self) -> int:
        return self.image.n_timepoints

    @property
    def rgb(self) -> bool:
        return self.image.rgb and len(self.channels) == self.image.n_channels

    @property
    def voxel_size(self) -> tuple:
        return self.image.voxel_size

    @property
    def channel_names(self) -> tuple:
        names = self.image.channel_names
        return tuple(names[c] for c in self.channels) if len(names) == self.image.n_channels else ()

    @property
    def channel_colors(self) -> tuple:
        colors = self.image.channel_colors
        return tuple(colors[c] for c in self.channels) if len(colors) == self.image.n_channels else ()

    whole_rows = False

    def subset(self, z0: int, z1: int) -> ArraySource:
        """This source: it is already small to pickle, and reads only the planes a box asks for."""
        return self

    def at_timepoint(self, t: int) -> ArraySource:
        index = check_timepoint(t, self.n_timepoints, self.path)
        return self if index == self.timepoint else dataclasses.replace(self, timepoint=index)

    def read(self, box: Box) -> np.ndarray:
        """Voxels of ``box`` (absolute coordinates), in :attr:`axes` order: (z, y, x), or
        (c, z, y, x) with several channels."""
        z, y, x = self.shape
        if not (0 <= box.x0 <= box.x1 <= x and 0 <= box.y0 <= box.y1 <= y and 0 <= box.z0 <= box.z1 <= z):
            raise ValueError(f"{box} is outside the source's (z, y, x) {self.shape}")
        try:
            data = self._read(handle(self), box)
        except PrecomputedTifError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise PrecomputedTifError(f"{self.path}: cannot read its voxels ({exc}); the file may be "
                                      "damaged or truncated") from None
        data = np.asarray(data)
        if data.shape != (self.n_channels, *box.shape):
            raise PrecomputedTifError(f"{self.path}: a region read back as {data.shape}, not "
                                      f"{(self.n_channels, *box.shape)}; the file may be damaged")
        data = data.astype(self.dtype, copy=False)
        return data if self.n_channels > 1 else data[0]

    # --- what a reader implements ----------------------------------------------------------

    def _open(self) -> Any:
        """An open handle on :attr:`path` (kept per process by :func:`handle`)."""
        raise NotImplementedError

    def _read(self, h: Any, box: Box) -> np.ndarray:
        """(channels, z, y, x) of ``box`` at :attr:`timepoint`, stored dtype; by default one
        :meth:`_read_channel` per channel."""
        out = np.empty((self.n_channels, *box.shape), self.image.dtype)
        for i, c in enumerate(self.channels):
            out[i] = self._read_channel(h, c, box)
        return out

    def _read_channel(self, h: Any, c: int, box: Box) -> np.ndarray:
        """(z, y, x) of ``box``, channel ``c`` of the file, at :attr:`timepoint`."""
        raise NotImplementedError


# Files a process has open, by (reader, paths, sizes and mtimes): a worker opens each once, and a
# file replaced since is opened again. A forked worker starts afresh: handles (HDF5's above all)
# are not to be shared across a fork.
_handles: dict[tuple, Any] = {}
_owner = os.getpid()


def handle(source: ArraySource) -> Any:
    """The open handle of ``source``'s file in this process."""
    stats = []
    for path in source.files:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise PrecomputedTifError(f"{path} cannot be read ({exc.strerror or exc})") from None
        stats.append((st.st_size, st.st_mtime_ns))
    global _owner
    if _owner != os.getpid():
        _handles.clear()  # the parent's: left to it
        _owner = os.getpid()
    key = (type(source).__name__, source.files, tuple(stats))
    h = _handles.get(key)
    if h is None:
        for old in [k for k in _handles if k[:2] == key[:2]]:
            _close(_handles.pop(old))
        h = _handles[key] = source._open()
    return h


@atexit.register
def close_all() -> None:
    """Close every file this process opened (readers whose objects complain when collected open)."""
    while _handles:
        _close(_handles.popitem()[1])


def _close(h: Any) -> None:
    close = getattr(h, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):  # a file replaced underneath: nothing more to say
            close()


def series_error(path: str, noun: str, listing: Sequence[SeriesInfo]) -> PrecomputedTifError:
    """The one line refusing a file of several ``listing`` without ``series``."""
    return PrecomputedTifError(
        f"{path} holds {len(listing)} {noun}; pick one with {either('series=N', '--series N')}: "
        + "; ".join(s.describe() for s in listing))


def pick_series(path: str, noun: str, listing: Sequence[SeriesInfo], series: int | None) -> int:
    """The index into ``listing`` of the series to read: ``series``, or the only one; a user
    error when several are there and none was picked, or ``series`` is none of them."""
    if not listing:
        raise PrecomputedTifError(f"{path} holds no image")
    if isinstance(series, bool) or (series is not None and not isinstance(series, (int, np.integer))):
        raise PrecomputedTifError(f"{setting('series', series)}: a series is a whole number")
    if series is None:
        if len(listing) > 1:
            raise series_error(path, noun, listing)
        return 0
    for i, s in enumerate(listing):
        if s.index == series:
            return i
    raise PrecomputedTifError(
        f"{setting('series', series)} is out of range: {path} holds "
        + ("one image" if len(listing) == 1 else f"{len(listing)} {noun}") + ": "
        + "; ".join(s.describe() for s in listing))


S = TypeVar("S", bound=ArraySource)


def open_series(cls: type[S], path: str, noun: str, listing: Sequence[SeriesInfo],
                image_of: Callable[[int], Image], series: int | None, channel: int | None,
                timepoint: int | None, segmentation: bool, other_files: tuple[str, ...] = ()) -> S:
    """The source of one series of ``path`` (``listing`` are its series, ``image_of(i)`` describes
    the ``i``-th), checked as :func:`~precomputed_tif.sources.tiff.open_stack` checks TIFF:
    a time series needs ``timepoint``, ``channel`` must be one of its channels, the dtype one
    the kind of volume can hold, a segmentation one channel."""
    i = pick_series(path, noun, listing, series)
    info = listing[i]
    image = image_of(i)
    if image.n_timepoints > 1 and timepoint is None:
        raise time_series_error(path, image.n_timepoints)
    # ALL_TIMEPOINTS: every one is converted, starting with the first (at_timepoint for the others).
    t = check_timepoint(0 if timepoint in (None, ALL_TIMEPOINTS) else timepoint, image.n_timepoints, path)
    check_channel(channel, image.n_channels, path)
    supported_dtype(image.dtype, segmentation)
    channels = (channel,) if channel is not None else tuple(range(image.n_channels))
    if segmentation and len(channels) > 1:
        raise segmentation_channels_error(path, len(channels))
    several = len(listing) > 1
    origin = ""
    if any(v is not None for v in image.voxel_size):
        origin = f"{cls.label} metadata of {path}"
        if several:
            origin += f" ({noun.rstrip('s')} {info.index}{f' {info.name!r}' if info.name else ''})"
    return cls(path, image, info.index if several or series is not None else None, info.name, len(listing),
               channels, t, origin, other_files)


def um(value, unit) -> float | None:
    """``value`` in ``unit`` as micrometres; None when it is no positive finite length."""
    from ..tiff_metadata import unit_to_um

    try:
        v = abs(float(value))
    except (TypeError, ValueError):
        return None
    scale = unit_to_um(unit)
    if scale is None or not np.isfinite(v) or v <= 0:
        return None
    return v * scale


def dims_text(pairs: Iterable[tuple[str, int]]) -> str:
    """``"T 20, C 2, Z 128, X 128"``: a series' axes and sizes as its file names them."""
    return ", ".join(f"{a} {n}" for a, n in pairs)
