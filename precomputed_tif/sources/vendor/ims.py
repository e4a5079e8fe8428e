"""Bitplane Imaris ``.ims`` files (HDF5), read with ``h5py`` (extra ``hdf5``).

Bitplane's published layout: the voxels of time point t, channel c at full
resolution are ``/DataSet/ResolutionLevel 0/TimePoint t/Channel c/Data``, a
(z, y, x) array that may be padded up to its chunk size; the image's true size
is ``/DataSetInfo/Image`` attributes ``X``, ``Y``, ``Z`` (Imaris writes
attributes as arrays of single characters). The coarser resolution levels are
Imaris's own pyramid, ignored: the conversion makes its own.

Voxel size: the image's extent over its size per axis,
``(ExtMax0 - ExtMin0) / X`` (and 1, 2 for y, z), in the attribute ``Unit``
(µm when absent) -- what Imaris and Bio-Formats report. Channels are the
``Channel c`` groups, named by ``/DataSetInfo/Channel c`` ``Name`` and
coloured by its ``Color`` (``"r g b"``, each 0 to 1). Time points are the
``TimePoint t`` groups; the interval between them is the mean step of the time stamps
Imaris records, ``/DataSetInfo/TimeInfo`` ``TimePoint1`` ... ``TimePointN``
(``YYYY-MM-DD HH:MM:SS.SSS``, numbered from 1), when every one is there, readable and later
than the one before. An Imaris file holds one image.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import numpy as np

from ...errors import PrecomputedTifError
from ...geometry import Box
from .base import ArraySource, Image, SeriesInfo, dims_text, open_series, require, um

NOUN = "images"
_LEVEL = "DataSet/ResolutionLevel 0"


def _open_h5(path: str):
    h5py = require("h5py", "hdf5", path, "Imaris")
    try:
        return h5py.File(path, "r")
    except Exception as exc:
        raise PrecomputedTifError(f"{path} is not a readable Imaris (HDF5) file ({exc})") from None


class ImsSource(ArraySource):
    label = "Imaris"

    def _open(self) -> Any:
        return _open_h5(self.path)

    def _read_channel(self, h: Any, c: int, box: Box) -> np.ndarray:
        data = h[f"{_LEVEL}/TimePoint {self.timepoint}/Channel {c}/Data"]
        return data[box.z0:box.z1, box.y0:box.y1, box.x0:box.x1]


def attribute(group, name: str) -> str | None:
    """An Imaris attribute as text (stored as an array of one-character byte strings)."""
    if name not in group.attrs:
        return None
    value = group.attrs[name]
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind == "S":
        return b"".join(arr.ravel().tolist()).decode("latin-1")
    if arr.dtype.kind in "iuf" and arr.size == 1:
        return str(arr.ravel()[0])
    return None


def _numbered(group, prefix: str) -> list[int]:
    found = sorted(int(m.group(1)) for k in group if (m := re.fullmatch(rf"{prefix} (\d+)", k)))
    return found


def _describe(path: str, f) -> tuple[list[SeriesInfo], Image]:
    if _LEVEL not in f or "DataSetInfo/Image" not in f:
        raise PrecomputedTifError(f"{path} is not an Imaris file: it has no /DataSet/ResolutionLevel 0 "
                                  "or /DataSetInfo/Image")
    level, info = f[_LEVEL], f["DataSetInfo/Image"]
    times = _numbered(level, "TimePoint")
    if not times or times != list(range(len(times))):
        raise PrecomputedTifError(f"{path}: its time points are not numbered 0, 1, ... ({times[:5]})")
    channels = _numbered(level[f"TimePoint {times[0]}"], "Channel")
    if not channels or channels != list(range(len(channels))):
        raise PrecomputedTifError(f"{path}: its channels are not numbered 0, 1, ... ({channels[:5]})")
    try:
        x, y, z = (int(float(attribute(info, a) or "nan")) for a in "XYZ")
    except ValueError:
        raise PrecomputedTifError(f"{path}: /DataSetInfo/Image gives no size X, Y, Z") from None
    first = level["TimePoint 0/Channel 0/Data"]
    if any(n > m for n, m in zip((z, y, x), first.shape)):
        raise PrecomputedTifError(f"{path}: its data {first.shape} is smaller than the image (z, y, x) {(z, y, x)}")
    unit = attribute(info, "Unit") or "um"
    voxel = []
    for axis, n in enumerate((x, y, z)):
        try:
            extent = float(attribute(info, f"ExtMax{axis}") or "nan") - float(attribute(info, f"ExtMin{axis}") or "nan")
        except ValueError:
            extent = float("nan")
        voxel.append(um(extent / n, unit) if n else None)
    names: list[str | None] = []
    colors: list[str | None] = []
    from ...channels import from_rgb

    for c in channels:
        group = f.get(f"DataSetInfo/Channel {c}")
        names.append(attribute(group, "Name") if group is not None else None)
        color = attribute(group, "Color") if group is not None else None
        try:
            r, g, b = (float(v) for v in (color or "").split())
            colors.append(from_rgb(round(r * 255), round(g * 255), round(b * 255)))
        except ValueError:
            colors.append(None)
    dims = [("T", len(times)), ("C", len(channels)), ("Z", z), ("Y", y), ("X", x)]
    listing = [SeriesInfo(0, attribute(info, "Name") or "", dims_text((a, n) for a, n in dims if n > 1 or a in "YX"))]
    interval = _time_interval(f.get("DataSetInfo/TimeInfo"), len(times))
    image = Image((z, y, x), first.dtype.name, len(channels), len(times), tuple(voxel), tuple(names),
                  tuple(colors), time_interval=interval, time_unit="second" if interval else "")
    return listing, image


def _time_interval(info, n_t: int) -> float | None:
    """Seconds between time points: the mean step of ``TimePoint1`` ... ``TimePoint{n_t}``;
    None with one time point, or when a stamp is missing, unreadable or not later than the last."""
    if info is None or n_t < 2:
        return None
    stamps = []
    for i in range(1, n_t + 1):
        text = (attribute(info, f"TimePoint{i}") or "").strip()
        for form in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
            try:
                stamps.append(datetime.strptime(text, form))
                break
            except ValueError:
                continue
        else:
            return None
    steps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    if min(steps) <= 0:
        return None
    return (stamps[-1] - stamps[0]).total_seconds() / (n_t - 1)


def open_ims(path: str, series: int | None, channel: int | None, timepoint: int | None,
             segmentation: bool) -> ImsSource:
    with _open_h5(path) as f:
        listing, image = _describe(path, f)
    return open_series(ImsSource, path, NOUN, listing, lambda i: image, series, channel, timepoint, segmentation)


def list_series(path: str) -> list[SeriesInfo]:
    with _open_h5(path) as f:
        return _describe(path, f)[0]
