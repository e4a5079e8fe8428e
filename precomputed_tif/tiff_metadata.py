"""What microscope software records in a TIFF about the image: physical voxel size and
how many planes the file should hold.

Two conventions cover nearly every file a microscope or Fiji writes:

* OME-TIFF: ``Pixels`` attributes ``PhysicalSizeX/Y/Z`` with ``PhysicalSize?Unit``
  (micrometre when absent) and ``SizeZ/SizeC/SizeT``;
* ImageJ: the X/YResolution tags (pixels per ``unit``), ``spacing`` (z step, in
  ``unit``) and ``images=`` in the ImageDescription.

Everything here is in microns and x, y, z order.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

from . import channels

_UNIT_UM = {
    "pm": 1e-6, "Å": 1e-4, "\u212b": 1e-4, "angstrom": 1e-4, "nm": 1e-3, "nanometer": 1e-3,
    "µm": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6,
}


def unit_to_um(unit: str | None) -> float | None:
    """Microns per ``unit``, or None for a unit that is not a length (``pixel``, ``inch`` from
    a scanner's dots-per-inch, unknown names)."""
    if unit is None:
        return None
    key = str(unit).strip().replace("\\u00B5", "\u00b5").replace("\\u00b5", "\u00b5")
    return _UNIT_UM.get(key, _UNIT_UM.get(key.lower()))


def _positive(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _ome_pixels(xml: str):
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Pixels":
            return el
    return None


def ome_voxel_size(xml: str) -> tuple[float | None, float | None, float | None]:
    """(x, y, z) voxel size in microns from OME-XML; None for an axis it does not give."""
    pixels = _ome_pixels(xml)
    if pixels is None:
        return (None, None, None)
    sizes = []
    for axis in "XYZ":
        value = _positive(pixels.get(f"PhysicalSize{axis}"))
        scale = unit_to_um(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        sizes.append(value * scale if value is not None and scale is not None else None)
    return tuple(sizes)


def ome_plane_count(xml: str) -> int | None:
    """SizeZ * SizeC * SizeT of the first image (planes of SamplesPerPixel > 1 channels count once)."""
    pixels = _ome_pixels(xml)
    if pixels is None:
        return None
    try:
        n = int(pixels.get("SizeZ", 1)) * int(pixels.get("SizeT", 1)) * int(pixels.get("SizeC", 1))
    except ValueError:
        return None
    samples = [c.get("SamplesPerPixel") for c in pixels if c.tag.rsplit("}", 1)[-1] == "Channel"]
    if samples and all(s is not None and s.isdigit() and int(s) > 1 for s in samples):
        n //= int(samples[0])
    return n


def imagej_voxel_size(page, imagej: dict) -> tuple[float | None, float | None, float | None]:
    """(x, y, z) voxel size in microns from an ImageJ file's first page and its metadata."""
    scale = unit_to_um(imagej.get("unit"))
    if scale is None:
        return (None, None, None)
    sizes = []
    for tag in ("XResolution", "YResolution"):
        t = page.tags.get(tag)
        value = None
        if t is not None:
            try:
                num, den = t.value
                value = _positive(den / num) if num else None
            except (TypeError, ValueError):
                value = None
        sizes.append(value * scale if value is not None else None)
    spacing = _positive(imagej.get("spacing"))
    sizes.append(spacing * scale if spacing is not None else None)
    return tuple(sizes)


def voxel_size_of(tif) -> tuple[tuple[float | None, float | None, float | None], str]:
    """The voxel size a TIFF file records, and which metadata said so ('' when none)."""
    if tif.ome_metadata:
        size = ome_voxel_size(tif.ome_metadata)
        if any(v is not None for v in size):
            return size, "OME-XML"
    if tif.imagej_metadata is not None:
        size = imagej_voxel_size(tif.pages.first, tif.imagej_metadata)
        if any(v is not None for v in size):
            return size, "ImageJ metadata"
    return (None, None, None), ""


# --- channel names and colours ------------------------------------------------------------
# OME-XML ``Channel@Name`` and ``Channel@Color``; ImageJ's slice labels and LUTs.


def ome_channels(xml: str) -> tuple[list[str | None], list[str | None]]:
    """(names, ``#rrggbb`` colours) of the first image's ``Channel`` elements, in order, None where
    one has no ``Name`` or ``Color``; empty lists when the XML has none (or its channels hold
    several samples each, as an RGB image's one channel does: those are named by sample)."""
    pixels = _ome_pixels(xml)
    if pixels is None:
        return [], []
    elements = [c for c in pixels if c.tag.rsplit("}", 1)[-1] == "Channel"]
    if any((c.get("SamplesPerPixel") or "1").strip() not in ("", "1") for c in elements):
        return [], []
    return ([(c.get("Name") or "").strip() or None for c in elements],
            [channels.from_ome(c.get("Color")) if c.get("Color") is not None else None for c in elements])


def imagej_channels(imagej: dict) -> tuple[list[str | None], list[str | None]]:
    """(names, ``#rrggbb`` colours) per channel of an ImageJ hyperstack, from its metadata as
    tifffile reads it.

    Names come from the slice ``Labels`` (one per image, channels varying fastest): a channel
    is named when all its images (two or more) carry the same label -- labels that change along
    z are slice labels (often file names), not a channel's name, and so is the one label of a
    one-image file -- or when several channels have exactly one label each. A colour is the
    brightest entry of each component of the channel's ``LUTs`` (3 x 256 arrays), which is the
    LUT's end for ImageJ's colour LUTs.
    """
    try:
        n = int(imagej.get("channels", 1) or 1)
    except (TypeError, ValueError):
        return [], []
    names: list[str | None] = []
    labels = imagej.get("Labels")
    if isinstance(labels, (list, tuple)) and labels and n >= 1:
        labels = [s.strip() if isinstance(s, str) else "" for s in labels]
        if len(labels) == n > 1:
            names = [s or None for s in labels]
        elif len(labels) % n == 0 and len(labels) > n:
            for c in range(n):
                own = set(labels[c::n])
                names.append((own.pop() or None) if len(own) == 1 else None)
    colors: list[str | None] = []
    luts = imagej.get("LUTs")
    if isinstance(luts, (list, tuple)) and len(luts) == n:
        for lut in luts:
            try:
                top = np.asarray(lut).reshape(3, -1).max(axis=1)
                colors.append(channels.from_rgb(*(int(v) for v in top)) if top.max() <= 255 else None)
            except (TypeError, ValueError):
                colors.append(None)
    return names, colors


def channel_metadata(tif) -> tuple[list[str | None], list[str | None]]:
    """(names, ``#rrggbb`` colours) per channel that a TIFF file records, OME-XML first, then
    ImageJ's; None for a channel (and empty lists for a file) it says nothing about. Colours
    that are all white on several channels are dropped: that is what writers put when they
    have none (OME's default ``Color`` is -1), and they would show as one grey."""
    names: list[str | None] = []
    colors: list[str | None] = []
    if tif.ome_metadata and tif.is_ome:
        names, colors = ome_channels(tif.ome_metadata)
    if not any(names) and not any(colors) and tif.imagej_metadata is not None:
        names, colors = imagej_channels(tif.imagej_metadata)
    if len(colors) > 1 and all(c == channels.GREY for c in colors):
        colors = [None] * len(colors)
    return names, colors


def pick_channels(recorded, n: int, rgb: bool, wanted: list[int]) -> tuple[tuple[str, ...], tuple]:
    """The names (defaults filled in, by index in the file) and colours (None where not recorded)
    of the ``wanted`` channels of a file of ``n`` channels, from :func:`channel_metadata`'s
    ``recorded``; metadata that lists another number of channels is ignored. Colour pages
    (``rgb``) are red, green, blue (and alpha)."""
    names, colors = recorded
    names = channels.names(n, rgb, [] if rgb else names)
    colors = list(colors) if len(colors) == n and not rgb else [None] * n
    return tuple(names[c] for c in wanted), tuple(colors[c] for c in wanted)
