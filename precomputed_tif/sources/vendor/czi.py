"""Zeiss ZEN ``.czi`` files, read with Zeiss's own libCZI through ``pylibCZIrw`` (extra ``czi``).

Why pylibCZIrw and not czifile: it is Zeiss's reference implementation (libCZI),
it reads a region of a plane (``read(roi=...)``), composing a mosaic's tiles
and skipping the subblocks outside the region, so memory stays bounded for
slide scans of any size; it ships wheels for Python 3.10 and later, which this
project supports, while czifile's current release needs Python 3.12. Its licence
is the LGPL (a dynamically loaded library, installed only with the extra).

Axes: scenes (``S``) are the series ``--series`` picks, each read within its
own bounding rectangle at full resolution (pyramid layer 0: the coarser layers ZEN
stores, whose subblocks may reach beyond the acquired image, are neither read nor
counted in its size); ``Z`` is z, ``C`` channels, ``T`` time points; mosaic
tiles (``M``) are composed by libCZI into one plane. Any other dimension with
more than one index (phases ``H``, rotations ``R``, illuminations ``I``, views
``V``, blocks ``B``) is refused, naming it. Colour pixel types (Bgr24, Bgr48)
are three channels red, green, blue (of a file with one channel).

Voxel size: ``Metadata/Scaling/Items/Distance`` (metres per pixel) for X, Y and
Z, in µm -- what ZEN and Bio-Formats report. Channel names are
``Information/Image/Dimensions/Channels/Channel@Name``; colours the display
settings' ``Color`` (``#AARRGGBB``). The interval between time points is
``Information/Image/Dimensions/T/Positions/Interval/Increment`` in seconds (what
Bio-Formats gives as ``TimeIncrement``; libCZI reads it the same way), else the
mean step of ``Positions/List/Offsets`` (seconds from the first time point, the
other form libCZI reads). ``T/StartTime`` is the date the acquisition began, no
interval; time stamps kept only in the ``TimeStamps`` attachment are not read
(pylibCZIrw reads no attachments): such a time series has no interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import PrecomputedTifError
from ...geometry import Box
from .base import ArraySource, Image, SeriesInfo, dims_text, open_series, require, um

NOUN = "scenes"
_GREY = {"Gray8": "uint8", "Gray16": "uint16", "Gray32Float": "float32", "Gray32": "int32"}
_BGR = {"Bgr24": "uint8", "Bgr48": "uint16", "Bgr96Float": "float32"}
_KNOWN = set("XYZCTSM")


class _Handle:
    def __init__(self, path: str):
        czi = require("pylibCZIrw.czi", "czi", path, "CZI")
        try:
            self.reader = czi.CziReader(path)
            # Layer 0 only: the subblocks of a pyramid (ZEN keeps one for every large mosaic) may
            # reach beyond the acquired image, which would add a border of background to it.
            self.box = dict(self.reader.total_bounding_box_no_pyramid)
            self.scenes = dict(self.reader.scenes_bounding_rectangle_no_pyramid)
            self.metadata = self.reader.metadata
            self.pixel_types = dict(self.reader.pixel_types)
        except Exception as exc:
            raise PrecomputedTifError(f"{path} is not a readable CZI file ({exc})") from None

    def close(self) -> None:
        self.reader.close()


class CziSource(ArraySource):
    label = "CZI"

    def _open(self) -> Any:
        return _Handle(self.path)

    def _read(self, h: Any, box: Box) -> np.ndarray:
        scene, x0, y0, z_start, t_start, c_start = self.image.key
        out = np.empty((self.n_channels, *box.shape), self.image.dtype)
        roi = (x0 + box.x0, y0 + box.y0, box.x1 - box.x0, box.y1 - box.y0)
        planes = [(0, c) for c in self.channels] if not self.image.rgb else [(0, 0)]
        for z in range(box.z0, box.z1):
            for i, (_, c) in enumerate(planes):
                plane = {"Z": z_start + z, "T": t_start + self.timepoint, "C": c_start + c}
                data = h.reader.read(roi=roi, plane=plane, scene=scene)
                if self.image.rgb:  # (y, x, BGR)
                    for j, c2 in enumerate(self.channels):
                        out[j, z - box.z0] = data[..., 2 - c2]
                else:
                    out[i, z - box.z0] = data[..., 0]
        return out


def _scene_list(h: _Handle) -> list[tuple[int | None, Any]]:
    """(scene index or None, its bounding rectangle)."""
    if h.scenes:
        return sorted(h.scenes.items())
    return [(None, h.reader.total_bounding_rectangle_no_pyramid)]


def _as_list(v) -> list:
    return v if isinstance(v, list) else [] if v is None else [v]


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _listing(h: _Handle) -> list[SeriesInfo]:
    names = {}
    image = _get(h.metadata, "ImageDocument", "Metadata", "Information", "Image")
    for i, scene in enumerate(_as_list(_get(image, "Dimensions", "S", "Scenes", "Scene"))):
        if isinstance(scene, dict):
            index = scene.get("@Index", i)
            names[int(index) if str(index).isdigit() else i] = scene.get("@Name") or ""
    dims = [(a, n) for a, (_, n) in h.box.items() if a in "TZC" and n > 1]
    out = []
    for s, rect in _scene_list(h):
        out.append(SeriesInfo(s if s is not None else 0, names.get(s, "") if s is not None else "",
                              dims_text([*dims, ("Y", rect.h), ("X", rect.w)])))
    return out


def open_czi(path: str, series: int | None, channel: int | None, timepoint: int | None,
             segmentation: bool) -> CziSource:
    h = _Handle(path)
    try:
        listing = _listing(h)
        return open_series(CziSource, path, NOUN, listing, lambda i: _image(path, h, i), series, channel,
                           timepoint, segmentation)
    finally:
        h.close()


def list_series(path: str) -> list[SeriesInfo]:
    h = _Handle(path)
    try:
        return _listing(h)
    finally:
        h.close()


def _image(path: str, h: _Handle, i: int) -> Image:
    other = [(a, n) for a, (_, n) in h.box.items() if a not in _KNOWN and n > 1]
    if other:
        raise PrecomputedTifError(
            f"{path} has a dimension {other[0][0]!r} of {other[0][1]} (dimensions "
            f"{dims_text((a, n) for a, (_, n) in h.box.items())}) that is neither z, channel, time, scene nor "
            "mosaic tile; split it in ZEN first")
    scene, rect = _scene_list(h)[i]
    z_start, n_z = h.box.get("Z", (0, 1))
    t_start, n_t = h.box.get("T", (0, 1))
    c_start, n_c = h.box.get("C", (0, 1))
    types = {str(h.pixel_types.get(c, h.pixel_types.get(0))) for c in range(c_start, c_start + n_c)}
    if len(types) != 1:
        raise PrecomputedTifError(f"{path}: its channels have different pixel types ({', '.join(sorted(types))}); "
                                  "not supported")
    pixel_type = types.pop()
    rgb = pixel_type in _BGR
    dtype = _BGR.get(pixel_type) or _GREY.get(pixel_type)
    if dtype is None:
        raise PrecomputedTifError(f"{path}: pixel type {pixel_type} is not supported")
    if rgb and n_c > 1:
        raise PrecomputedTifError(f"{path} has {n_c} channels of colour ({pixel_type}) images; not supported")
    md = _get(h.metadata, "ImageDocument", "Metadata")
    scaling = {d.get("@Id"): d.get("Value") for d in _as_list(_get(md, "Scaling", "Items", "Distance"))
               if isinstance(d, dict)}
    voxel = tuple(um(scaling.get(a), "m") for a in "XYZ")
    names: tuple = ()
    colors: tuple = ()
    if rgb:
        from ... import channels

        names, colors, n_c = channels.RGB_NAMES[:3], channels.RGB_COLORS[:3], 3
    else:
        described = [c for c in _as_list(_get(md, "Information", "Image", "Dimensions", "Channels", "Channel"))
                     if isinstance(c, dict)]
        if len(described) == n_c:
            names = tuple(c.get("@Name") or None for c in described)
        shown = [c for c in _as_list(_get(md, "DisplaySetting", "Channels", "Channel")) if isinstance(c, dict)]
        if len(shown) == n_c:
            colors = tuple(_color(c.get("Color")) for c in shown)
    key = (scene, rect.x, rect.y, z_start, t_start, c_start)
    interval = _time_step(_get(md, "Information", "Image", "Dimensions", "T"), n_t) if n_t > 1 else None
    return Image((n_z, rect.h, rect.w), dtype, n_c, n_t, voxel, names, colors, rgb, key,
                 time_interval=interval, time_unit="second" if interval is not None else "")


def _text(value) -> str | None:
    """An element's text as the metadata dictionary holds it (``#text`` when it has attributes)."""
    if isinstance(value, dict):
        value = value.get("#text")
    return value if isinstance(value, str) else None


def _time_step(t, n_t: int) -> float | None:
    """Seconds between time points by ``Dimensions/T`` (see the module): its interval's
    ``Increment``, else the mean step of the first ``n_t`` of its ``Offsets``; None when it
    records neither as a positive finite number."""
    increment = _text(_get(t, "Positions", "Interval", "Increment"))
    if increment is not None:
        return _seconds(increment)
    offsets = _text(_get(t, "Positions", "List", "Offsets"))
    try:
        values = [float(v) for v in (offsets or "").split()][:n_t]
    except ValueError:
        return None
    if len(values) < 2:
        return None
    return _seconds((values[-1] - values[0]) / (len(values) - 1))


def _seconds(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def _color(value) -> str | None:
    """``#rrggbb`` of ZEN's ``#AARRGGBB``."""
    from ...channels import normalize

    if not isinstance(value, str):
        return None
    v = value.strip().lstrip("#")
    return normalize(v[-6:]) if len(v) in (6, 8) else None
