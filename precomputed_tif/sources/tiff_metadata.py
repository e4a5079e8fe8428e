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

from .. import channels
from ..geometry import as_triple

_UNIT_UM = {
    "pm": 1e-6, "Å": 1e-4, "\u212b": 1e-4, "angstrom": 1e-4, "nm": 1e-3, "nanometer": 1e-3,
    "µm": 1.0, "\u03bcm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6,
    # The rest of the metric lengths NGFF allows (its axis units are UDUNITS-2 names).
    "yoctometer": 1e-18, "zeptometer": 1e-15, "attometer": 1e-12, "femtometer": 1e-9, "picometer": 1e-6,
    "decimeter": 1e5, "dekameter": 1e7, "decameter": 1e7, "hectometer": 1e8, "kilometer": 1e9,
    "megameter": 1e12, "gigameter": 1e15, "terameter": 1e18, "petameter": 1e21, "exameter": 1e24,
    "zettameter": 1e27, "yottameter": 1e30,
}
# Lengths NGFF allows that are no microscope's: only where a file names its unit in words
# (an OME-Zarr axis), never for a TIFF's resolution unit, where "inch" is a scanner's dots per inch.
_NGFF_ONLY_UM = {"inch": 25400.0, "foot": 304800.0, "yard": 914400.0, "mile": 1.609344e9,
                 "parsec": 3.0856775814913673e22}


def unit_to_um(unit: str | None, ngff: bool = False) -> float | None:
    """Microns per ``unit``, or None for a unit that is not a length (``pixel``, ``inch`` from
    a scanner's dots-per-inch, unknown names). With ``ngff``, every length unit NGFF allows for
    an axis is one, inch, foot, yard, mile and parsec included."""
    if unit is None:
        return None
    key = str(unit).strip().replace("\\u00B5", "\u00b5").replace("\\u00b5", "\u00b5")
    found = _UNIT_UM.get(key, _UNIT_UM.get(key.lower()))
    if found is None and ngff:
        found = _NGFF_ONLY_UM.get(key.lower())
    return found


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
    return as_triple(sizes)


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


def ome_other_files(xml: str, own_name: str) -> list[str]:
    """The file names (relative to this file's folder) of the other files of a multi-file
    OME-TIFF, in the order its ``TiffData`` elements name them; [] for a file that holds
    its whole image.

    A ``UUID`` element names this file when its text is the root ``UUID`` attribute, or --
    without a root UUID -- when its ``FileName`` is this file's name (as tifffile decides).
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    own_uuid = root.get("UUID")
    names: list[str] = []
    for el in root.iter():
        name = el.get("FileName")
        if el.tag.rsplit("}", 1)[-1] != "UUID" or not name:
            continue
        text = (el.text or "").strip()
        if text == own_uuid or (own_uuid is None and name.lower() == own_name.lower()):
            continue
        if name not in names and name.lower() != own_name.lower():
            names.append(name)
    return names


def _reciprocal(num: int, den: int) -> float | None:
    """``den / num`` -- a pixel size from a resolution of num/den pixels per unit -- as the
    shortest decimal the rational stands for.

    Writers do not store the pixel size exactly. ImageJ writes 1/size times a denominator of
    1000000 with the numerator truncated (1/0.26 µm as 3846153/1000000, which gives back
    0.26000005720...); libtiff turns a float32 into a fraction (about 7 significant digits).
    So the size meant is the shortest decimal that such a writer would have stored as this
    rational: one whose num/den it truncates or rounds to, or one within float32 precision of
    it. It is never taken further than 1e-5 (relative) from den/num, which keeps an exact
    fraction such as 3/1 from becoming 0.3; a value with more genuine digits keeps them.
    """
    exact = _positive(den / num) if num else None
    if exact is None:
        return None

    def written_as_this(value: float) -> bool:
        if abs(value - exact) > 1e-5 * exact:
            return False
        per_unit = den / value
        return (math.floor(per_unit) == num or round(per_unit) == num
                or abs(value - exact) <= exact * 2.0 ** -23)

    for digits in range(1, 18):
        nearest = float(f"{exact:.{digits}g}")
        step = 10.0 ** (math.floor(math.log10(abs(nearest))) - digits + 1)
        candidates = sorted({nearest, nearest - step, nearest + step}, key=lambda v: abs(v - exact))
        for value in candidates:
            value = float(f"{value:.{digits}g}")
            if value > 0 and written_as_this(value):
                return value
    return exact


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
                value = _reciprocal(num, den)
            except (TypeError, ValueError, ZeroDivisionError):
                value = None
        sizes.append(value * scale if value is not None else None)
    spacing = _positive(imagej.get("spacing"))
    sizes.append(spacing * scale if spacing is not None else None)
    return as_triple(sizes)


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


# Time units as OME-XML, ImageJ and NGFF spell them -> NGFF's name (UDUNITS-2).
_TIME_UNITS = {
    "ns": "nanosecond", "nanosecond": "nanosecond", "µs": "microsecond", "\u03bcs": "microsecond",
    "us": "microsecond", "microsecond": "microsecond", "ms": "millisecond", "msec": "millisecond",
    "millisecond": "millisecond", "s": "second", "sec": "second", "second": "second", "seconds": "second",
    "min": "minute", "minute": "minute", "minutes": "minute", "h": "hour", "hr": "hour", "hour": "hour",
    "hours": "hour", "d": "day", "day": "day", "days": "day",
}


def time_unit_name(unit) -> str:
    """NGFF's name of a time unit (``"second"``, ``"millisecond"``, ...), "" when ``unit`` is none
    it knows."""
    return _TIME_UNITS.get(str(unit).strip().lower(), "") if unit is not None else ""


# NGFF's time units -> the symbols printed for them.
_TIME_SYMBOLS = {"nanosecond": "ns", "microsecond": "µs", "millisecond": "ms", "second": "s", "minute": "min",
                 "hour": "h", "day": "d"}


def time_step_words(interval: float | None, unit: str) -> str:
    """The interval between time points in words, ``"2.5 s apart"`` (``unit`` an NGFF name);
    "" when the interval is unknown."""
    if interval is None:
        return ""
    return f"{interval:g} {_TIME_SYMBOLS.get(unit, unit)} apart"


def time_step_of(tif) -> tuple[float | None, str]:
    """The interval between time points a TIFF records, and its NGFF unit name: OME-XML
    ``TimeIncrement`` (``TimeIncrementUnit``, seconds when absent), else ImageJ's ``finterval``
    (in ``tunit``, seconds when absent); (None, "") when it records none."""
    if tif.ome_metadata:
        pixels = _ome_pixels(tif.ome_metadata)
        step = _positive(pixels.get("TimeIncrement")) if pixels is not None else None
        if pixels is not None and step is not None:
            unit = time_unit_name(pixels.get("TimeIncrementUnit", "s"))
            return (step, unit) if unit else (None, "")
    imagej = tif.imagej_metadata
    if imagej is not None:
        step = _positive(imagej.get("finterval"))
        if step is not None:
            unit = time_unit_name(imagej.get("tunit", "sec"))
            return (step, unit) if unit else (None, "")
    return None, ""


def voxel_size_words(tif, origin: str) -> str:
    """The metadata a voxel size was read from (``origin`` as :func:`voxel_size_of` names it),
    in the file's own words, to quote when the size looks wrong: the OME-XML PhysicalSize
    attributes, or ImageJ's X/YResolution tags with its ``unit`` and ``spacing``."""
    if origin == "OME-XML":
        pixels = _ome_pixels(tif.ome_metadata)
        if pixels is None:
            return ""
        return " ".join(f'{name}="{pixels.get(name)}"' for axis in "XYZ"
                        for name in (f"PhysicalSize{axis}", f"PhysicalSize{axis}Unit")
                        if pixels.get(name) is not None)
    if origin == "ImageJ metadata":
        words = []
        for tag in ("XResolution", "YResolution"):
            t = tif.pages.first.tags.get(tag)
            if t is not None and isinstance(t.value, tuple) and len(t.value) == 2:
                words.append(f"{tag}={t.value[0]}/{t.value[1]}")
        words += [f"{key}={tif.imagej_metadata[key]}" for key in ("unit", "spacing")
                  if key in tif.imagej_metadata]
        return " ".join(words)
    return ""


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
