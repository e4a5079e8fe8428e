"""What a conversion reads: TIFF planes (:mod:`.tiff`), microscope files (:mod:`.vendor`) or an
existing dataset, each a :class:`Source`.

An existing dataset -- any format this project reads: tiff, zarr, blockfs,
native precomputed -- is read at its full-resolution scale, so it can be
stored again in another format (for instance a blockfs dataset as sharded
precomputed for publishing) without its TIFF planes. Both kinds of source
offer the same small interface the pyramid needs (:class:`Source`): ``shape``,
``dtype``, ``n_channels``, ``axes``, ``read(box)``, ``subset(z0, z1)``, the
channels' names and colours (``channel_names``, ``channel_colors``; see
:mod:`.channels`), the voxel size and where it came from, and which of the
source's time points is read (``timepoint``, ``n_timepoints``, ``at_timepoint``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import PrecomputedTifError, param, setting
from ..geometry import Box
from ..info import INFO, JOB_RECORD, VolumeInfo, read_volume_info
from ..storage import LocalStorage, Storage, is_bucket_url, open_storage
from . import vendor
from .ome_zarr import OmeZarrSource, is_ome_zarr, open_ome_zarr, root_kind
from .tiff import ALL_TIMEPOINTS, PlaneStack, open_stack, series_choices

__all__ = ["ALL_TIMEPOINTS", "DatasetSource", "OmeZarrSource", "PlaneStack", "Source", "open_source", "open_stack"]


def _named(source) -> str:
    """How a message names a source: its path or URL, or the first of its files."""
    if isinstance(source, Storage):
        return source.location()
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"{os.fspath(next(iter(source), ''))} ..."


@runtime_checkable
class Source(Protocol):
    """What every source offers the pyramid and the formats (the Source seam).

    Arrays are in :attr:`axes` order: (z, y, x), or (c, z, y, x) with several
    channels; boxes and sizes in the files' names and ``info`` are x, y, z. One
    source is one time point (:attr:`timepoint`) of the :attr:`n_timepoints` its
    files hold; :meth:`at_timepoint` gives the same source at another. The voxel
    size is in micrometres, (x, y, z), as the source's metadata records it, and
    :attr:`voxel_size_origin` says which metadata that was. A source is small to
    pickle: workers get it as an argument and reopen its files by path.
    """

    @property
    def files(self) -> tuple[str, ...]:
        """The paths read, in order (what :mod:`.fingerprint` identifies)."""
        ...

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) voxels."""
        ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def n_channels(self) -> int: ...

    @property
    def axes(self) -> str:
        """The axes of the arrays :meth:`read` returns, one letter each as OME-NGFF names them:
        "zyx" with one channel, "czyx" with ``n_channels`` > 1."""
        ...

    @property
    def n_timepoints(self) -> int:
        """How many time points the source's files hold (1 when they are no time series)."""
        ...

    @property
    def timepoint(self) -> int:
        """Which time point (0 <= timepoint < n_timepoints) :meth:`read` reads."""
        ...

    @property
    def time_interval(self) -> float | None:
        """The interval between time points, in :attr:`time_unit`; None when unknown."""
        ...

    @property
    def time_unit(self) -> str:
        """NGFF's name of the unit of :attr:`time_interval` (``"second"``, ``"millisecond"``...);
        "" when unknown."""
        ...

    @property
    def n_planes(self) -> int: ...

    @property
    def rgb(self) -> bool:
        """Channels that are a colour image's red, green, blue (and alpha)."""
        ...

    @property
    def voxel_size(self) -> tuple:
        """(x, y, z) in micrometres (µm) as the source records it, None for an axis it does not give."""
        ...

    @property
    def voxel_size_origin(self) -> str:
        """Which metadata gave :attr:`voxel_size`, in words for messages ("ImageJ metadata of
        stack.tif", "info of /data/ds"); "" when none did."""
        ...

    @property
    def channel_names(self) -> tuple: ...

    @property
    def channel_colors(self) -> tuple: ...

    @property
    def whole_rows(self) -> bool:
        """Reading any columns costs whole rows (compressed strips as wide as a plane)."""
        ...

    def read(self, box: Box) -> np.ndarray:
        """The voxels of ``box`` (absolute coordinates)."""
        ...

    def subset(self, z0: int, z1: int) -> Source:
        """The same source for planes z0 <= z < z1 only (what one task needs), z staying absolute."""
        ...

    def at_timepoint(self, t: int) -> Source:
        """The same source (shape, dtype, channels, metadata; a subset stays one) at time point
        ``t``; a ``t`` outside 0 <= t < n_timepoints is a
        :class:`~precomputed_tif.errors.PrecomputedTifError` naming ``timepoint``."""
        ...


@dataclass(frozen=True)
class DatasetSource:
    """The full-resolution scale of a dataset, read through its store from its storage
    (``volume_info`` is the dataset's ``info``)."""

    storage: Storage
    volume_info: VolumeInfo
    format: str
    # Which time point is read, of a dataset that is a time series (an OME-Zarr with a t axis).
    timepoint: int = 0

    @property
    def path(self) -> str:
        """Where the dataset is, as messages name it (a path, or a URL)."""
        return self.storage.location()

    @property
    def files(self) -> tuple[str, ...]:
        return (self.path,)

    @property
    def shape(self) -> tuple[int, int, int]:
        x, y, z = self.volume_info.scales[0].size
        return (z, y, x)

    @property
    def n_planes(self) -> int:
        return self.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.volume_info.dtype

    @property
    def n_channels(self) -> int:
        return self.volume_info.n_channels

    @property
    def axes(self) -> str:
        return "czyx" if self.n_channels > 1 else "zyx"

    @property
    def n_timepoints(self) -> int:
        return self.volume_info.n_timepoints

    @property
    def time_interval(self) -> float | None:
        return self.volume_info.time_interval[0]

    @property
    def time_unit(self) -> str:
        return self.volume_info.time_interval[1]

    def at_timepoint(self, t: int) -> DatasetSource:
        """This source at time point ``t`` of the dataset's (0 for a dataset that is no time series)."""
        n = self.n_timepoints
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < n:
            held = f"has {n} time points (0 to {n - 1})" if n > 1 else "is a dataset, which holds one time point (0)"
            raise PrecomputedTifError(f"{setting('timepoint', t)} is out of range: {self.path} {held}")
        return self if t == self.timepoint else dataclasses.replace(self, timepoint=int(t))

    @property
    def segmentation(self) -> bool:
        return self.volume_info.segmentation

    @property
    def levels(self) -> int:
        return len(self.volume_info.scales)

    @property
    def rgb(self) -> bool:
        return self.volume_info.rgb

    @property
    def channel_names(self) -> tuple:
        """The names ``info`` records (empty for datasets written before names were kept)."""
        return self.volume_info.channel_names

    @property
    def channel_colors(self) -> tuple:
        return self.volume_info.channel_colors

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return self.volume_info.voxel_size_um

    @property
    def voxel_size_origin(self) -> str:
        return f"info of {self.path}"

    whole_rows = False

    def subset(self, z0: int, z1: int) -> DatasetSource:
        return self

    def read(self, box: Box) -> np.ndarray:
        """Voxels of ``box``: (z, y, x), or (c, z, y, x) with channels."""
        store = _stores.get(self.path)
        if store is None:
            from ..formats.stores import open_store

            store = _stores[self.path] = open_store(self.storage, self.volume_info, self.format)
        if self.n_timepoints > 1:
            store = store.at_timepoint(self.timepoint)
        return store.read_region(self.volume_info.keys[0], box)


# A worker opens a source dataset's store once and keeps it (stores cache what they read
# of their metadata); the source itself stays small to pickle.
_stores: dict = {}


def _dataset_storage(source) -> Storage | None:
    """The storage of ``source`` when it names a dataset (a Storage, or a directory or bucket
    prefix holding ``info``), else None (TIFF planes)."""
    if isinstance(source, Storage):
        return source
    if isinstance(source, (str, os.PathLike)) and is_bucket_url(source) and not any(c in str(source) for c in "*?["):
        storage = open_storage(source, param("source"))
        storage.check_reachable(writing=False)
        if storage.exists(INFO):
            return storage
        if storage.exists(JOB_RECORD):
            raise PrecomputedTifError(
                f"{param('source')} {storage.location()} is a dataset whose conversion did not finish (it has no info "
                "object); finish it by running its conversion again, then convert from it")
        return None  # an OME-Zarr of another tool, one TIFF object, or the TIFF objects below the URL
    if isinstance(source, (str, os.PathLike)):
        path = os.path.expanduser(str(source))
        if os.path.isfile(os.path.join(path, INFO)):
            # The user's own dataset: its levels may be symlinks to other disks.
            return LocalStorage(os.path.abspath(path), confined=False)
    return None


def ome_zarr_location(source) -> str | None:
    """The local directory or bucket URL ``source`` names when it is an OME-Zarr image (or group
    of images) of another tool (:func:`.ome_zarr.is_ome_zarr`), else None. A bucket's prefix
    that is a Zarr group or array but no OME-Zarr is a user error (it holds no TIFF planes either)."""
    if isinstance(source, (str, os.PathLike)) and is_bucket_url(source):
        url = os.fspath(source)
        if any(c in url for c in "*?["):
            return None  # a glob of TIFF objects
        storage = open_storage(url, param("source"))
        kind = root_kind(storage)  # (reachable: checked by _dataset_storage)
        if kind == "ome-zarr":
            return url.rstrip("/")
        if kind == "zarr":
            raise PrecomputedTifError(
                f"{param('source')} {storage.location()} is a Zarr group or array but not an OME-Zarr image (its "
                "attributes have no multiscales or bioformats2raw.layout); give the URL of the OME-Zarr image, "
                "or of a dataset")
        return None
    if isinstance(source, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(source))
        if is_ome_zarr(path):
            return path
    return None


def open_source(source: str | Sequence[str] | Storage, segmentation: bool = False, progress: bool = False,
                channel: int | None = None, timepoint: int | str | None = None,
                series: int | None = None) -> Source:
    """A microscope file (by its name: ``.nd2``, ``.czi``, ``.lif``, ``.ims``, BigDataViewer
    ``.xml``/``.h5``, an ``.n5`` directory; see :mod:`.vendor`), a dataset (a
    :class:`~precomputed_tif.storage.Storage`, or a directory or bucket prefix holding an ``info``
    file), an OME-Zarr image of another tool (a directory or a bucket prefix), or TIFF planes.
    ``series`` picks one image of a file or group holding several; ``timepoint``
    :data:`ALL_TIMEPOINTS` opens a time series at its first time point, for a conversion of
    every one."""
    if vendor.kind_of(source) is not None and _dataset_storage(source) is None:
        return vendor.open_vendor(source, series=series, channel=channel, timepoint=timepoint,
                                  segmentation=segmentation)
    storage = _dataset_storage(source)
    if storage is None:
        ome_zarr = ome_zarr_location(source)
        if ome_zarr is not None:
            every = timepoint == ALL_TIMEPOINTS
            return open_ome_zarr(ome_zarr, series=series, channel=channel,
                                 timepoint=None if every else timepoint,  # type: ignore[arg-type]
                                 every_timepoint=every, segmentation=segmentation)
    if series is not None:
        raise PrecomputedTifError(f"{param('series')} picks one image of a file or group holding several (ND2, "
                                  f"CZI, LIF, BigDataViewer, N5, bioformats2raw's OME-Zarr); {_named(source)} is none")
    if storage is not None:
        path = storage.location()
        if channel is not None or timepoint not in (None, ALL_TIMEPOINTS):
            raise PrecomputedTifError(f"{param('channel')} and {param('timepoint')} are for TIFF input, not for a "
                                      "dataset directory")
        info = read_volume_info(storage)  # a user error for anything but a volume's info
        from ..formats.stores import detect_format

        src = DatasetSource(storage, info, detect_format(storage, info))
        if src.n_timepoints > 1 and timepoint is None:
            raise PrecomputedTifError(f"{path} is a time series of {src.n_timepoints} time points; "
                                      f"{series_choices()}")
        if segmentation and not src.segmentation:
            raise PrecomputedTifError(f"{path} is an image dataset; leave out {setting('segmentation', True)} "
                                      "to store it again")
        return src
    assert not isinstance(source, Storage)  # a Storage is a dataset (above)
    return open_stack(source, segmentation=segmentation, progress=progress, channel=channel, timepoint=timepoint)
