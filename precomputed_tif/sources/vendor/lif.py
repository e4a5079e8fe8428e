"""Leica LAS X ``.lif`` (and single-image ``.lof``) files, read with ``liffile`` (extra ``lif``).

Each image of a LIF file is a series (``--series``). Its axes are those of its
``DimensionDescription`` elements, and map to x, y, z by what they measure,
never by their place in the file:

* ``X``, ``Y``, ``Z`` are x, y and z; an axis the image lacks has size 1.
  An XZ scan (no ``Y``) is therefore one plane of z × x voxels with y of size 1
  -- standing upright in the volume, where it was scanned -- and an XZ scan
  stepped in Y (axes ``Y``, ``Z``, ``X``) is a real 3-D stack. Neither is ever
  laid flat as a y × x image.
* ``C`` (the file's channels) are channels; ``T`` time points (one is
  converted at a time, ``--timepoint``).
* a λ sweep (``λ``, emission; ``Λ``, excitation) is a spectrum: each
  wavelength becomes a channel, named by it (``λ 550 nm``, ``Λ 490 nm``) and
  coloured as that light looks.
  An image with a λ sweep and several channels too, or with both sweeps, is
  refused; so is any other axis (tile scans ``M``, rotation ``A``, ...):
  merge tiles in LAS X first.

Voxel size: the length of each spatial axis over its number of elements minus
one (``Length / (NumberOfElements - 1)``, converted from the axis' unit), as
LAS X and Bio-Formats compute it; an axis of one element has none. The interval
between time points is the ``T`` axis' the same way (its ``Length``, in
seconds, over its number of elements minus one). Channel
colours come from each channel's look-up table (``LUTName``: Red, Green,
...); LIF keeps no channel names.

Voxels are read through a memory map of the image in the file, so a box
touches only the pages holding its rows.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from ...errors import PrecomputedTifError
from ...geometry import Box
from .base import ArraySource, Image, SeriesInfo, dims_text, open_series, require, um

NOUN = "images"
_SPECTRAL = {"λ": "λ", "Λ": "Λ"}
_LUT = {"red": "#ff0000", "green": "#00ff00", "blue": "#0000ff", "cyan": "#00ffff", "magenta": "#ff00ff",
        "yellow": "#ffff00", "gray": "#ffffff", "grey": "#ffffff", "white": "#ffffff"}


class _Handle:
    def __init__(self, path: str):
        liffile = require("liffile", "lif", path, "LIF")
        try:
            self.file = liffile.LifFile(path)
            self.images = list(self.file.images)
        except Exception as exc:
            raise PrecomputedTifError(f"{path} is not a readable Leica LIF file ({exc})") from None
        self.arrays: dict[int, np.ndarray] = {}

    def array(self, i: int) -> np.ndarray:
        """Image ``i``'s voxels in the file's axis order, memory-mapped."""
        if i not in self.arrays:
            im = self.images[i]
            # Colour images are stored BGR; liffile reorders them in place, which needs a private copy.
            self.arrays[i] = im.asarray(out="memmap", mode="c" if "S" in im.dims else "r")
        return self.arrays[i]

    def close(self) -> None:
        self.arrays.clear()
        self.file.close()


class LifSource(ArraySource):
    label = "LIF"

    def _open(self) -> Any:
        return _Handle(self.path)

    def _read_channel(self, h: Any, c: int, box: Box) -> np.ndarray:
        index, dims, channel_axis = self.image.key
        data = h.array(index)
        pick: list[Any] = []
        kept: list[str] = []
        for a in dims:
            if a == "T":
                pick.append(self.timepoint)
            elif a == channel_axis:
                pick.append(c)
            elif a in "ZYX":
                lo, hi = {"Z": (box.z0, box.z1), "Y": (box.y0, box.y1), "X": (box.x0, box.x1)}[a]
                pick.append(slice(lo, hi))
                kept.append(a)
            else:  # an axis of length 1
                pick.append(0)
        part = np.asarray(data[tuple(pick)])
        order = [kept.index(a) for a in "ZYX" if a in kept]
        part = part.transpose(order)
        shape = tuple(n if a in kept else 1 for a, n in zip("ZYX", box.shape))
        return part.reshape(shape)


def _load(path: str) -> _Handle:
    return _Handle(path)


def open_lif(path: str, series: int | None, channel: int | None, timepoint: int | None,
             segmentation: bool) -> LifSource:
    h = _load(path)
    try:
        listing = [SeriesInfo(i, im.path if "/" in im.path else im.name, dims_text(im.sizes.items()))
                   for i, im in enumerate(h.images)]
        return open_series(LifSource, path, NOUN, listing, lambda i: _image(path, h, i), series, channel,
                           timepoint, segmentation)
    finally:
        h.close()


def list_series(path: str) -> list[SeriesInfo]:
    h = _load(path)
    try:
        return [SeriesInfo(i, im.path if "/" in im.path else im.name, dims_text(im.sizes.items()))
                for i, im in enumerate(h.images)]
    finally:
        h.close()


def _image(path: str, h: _Handle, i: int) -> Image:
    im = h.images[i]
    sizes = dict(im.sizes)
    dims = tuple(im.dims)
    where = f"{path}, image {i} {im.name!r}"
    unknown = [a for a in dims if a not in "TCZYXS" and a not in _SPECTRAL and sizes[a] > 1]
    if unknown:
        raise PrecomputedTifError(
            f"{where} has an axis {unknown[0]!r} of length {sizes[unknown[0]]} (axes {dims_text(sizes.items())}) "
            "that is neither x, y, z, channel, time nor a λ sweep; merge or split it in LAS X first")
    channel_like = [a for a in dims if (a == "C" or a in _SPECTRAL) and sizes[a] > 1]
    if len(channel_like) > 1:
        raise PrecomputedTifError(
            f"{where} has both {' and '.join(channel_like)} axes (axes {dims_text(sizes.items())}); "
            "only one of channels and a λ sweep can be channels")
    if "S" in dims and channel_like:
        raise PrecomputedTifError(f"{where} has colour (RGB) samples and {channel_like[0]} axis; not supported")
    if "X" not in dims:
        raise PrecomputedTifError(f"{where} has no X axis (axes {dims_text(sizes.items())}); not an image")
    channel_axis = channel_like[0] if channel_like else ("S" if "S" in dims else "C")
    n_c = sizes.get(channel_axis, 1)
    shape = (sizes.get("Z", 1), sizes.get("Y", 1), sizes["X"])
    described = _dimension_descriptions(im)
    voxel = tuple(_spacing(described.get(a)) for a in "XYZ")
    names: tuple = ()
    colors: tuple = ()
    if channel_axis in _SPECTRAL:
        waves = im.coords.get(channel_axis)
        if waves is not None and len(waves) == n_c:
            from ...channels import from_wavelength

            names = tuple(f"{channel_axis} {float(w) * 1e9:.4g} nm" for w in waves)
            colors = tuple(from_wavelength(float(w) * 1e9) for w in waves)
    elif channel_axis == "S":
        from ... import channels

        names, colors = channels.RGB_NAMES[:n_c], channels.RGB_COLORS[:n_c]
    else:
        luts = [str(el.get("LUTName", "")).strip().lower() for el in _channel_descriptions(im)]
        if len(luts) == n_c:
            colors = tuple(_LUT.get(lut) for lut in luts)
    interval, time_unit = _time_step(_time_description(im))
    return Image(shape, np.dtype(im.dtype).name, n_c, sizes.get("T", 1), voxel, names, colors,
                 channel_axis == "S", (i, dims, channel_axis), interval, time_unit)


def _element(im) -> ET.Element:
    return im.xml_element


def _dimension_descriptions(im) -> dict[str, ET.Element]:
    """The ``DimensionDescription`` elements of a spatial axis, by letter (X, Y, Z)."""
    out = {}
    for el in _element(im).iter("DimensionDescription"):
        letter = {"1": "X", "2": "Y", "3": "Z"}.get(el.get("DimID", ""))
        if letter:
            out[letter] = el
    return out


def _time_description(im) -> ET.Element | None:
    """The ``DimensionDescription`` of the time axis (``DimID`` 4), None when there is none."""
    return next((el for el in _element(im).iter("DimensionDescription") if el.get("DimID") == "4"), None)


def _time_step(el: ET.Element | None) -> tuple[float | None, str]:
    """The interval between time points, Length / (NumberOfElements - 1), and its NGFF unit name
    (LAS X records seconds); (None, "") without a time axis of two or more elements."""
    from ..tiff_metadata import time_unit_name

    if el is None:
        return None, ""
    try:
        n = int(el.get("NumberOfElements", "0"))
        length = float(el.get("Length", "nan"))
    except ValueError:
        return None, ""
    unit = time_unit_name(el.get("Unit") or "s")
    if n < 2 or not unit or not np.isfinite(length) or length <= 0:
        return None, ""
    return length / (n - 1), unit


def _channel_descriptions(im) -> list[ET.Element]:
    return list(_element(im).iter("ChannelDescription"))


def _spacing(el: ET.Element | None) -> float | None:
    """µm between neighbouring elements of an axis: Length / (NumberOfElements - 1)."""
    if el is None:
        return None
    try:
        n = int(el.get("NumberOfElements", "0"))
        length = float(el.get("Length", "nan"))
    except ValueError:
        return None
    if n < 2:
        return None
    return um(length / (n - 1), el.get("Unit", "m"))
