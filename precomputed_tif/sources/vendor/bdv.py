"""BigDataViewer / BigStitcher datasets: the ``.xml`` and its HDF5 (``.h5``, extra ``hdf5``) or
N5 (extra ``n5``) data.

The XML (``SpimData``) says what there is: view setups (``ViewSetup``: id,
name, size, voxel size, attributes channel, tile, angle, illumination), time
points, and where the voxels are (``ImageLoader`` ``bdv.hdf5``: ``/tNNNNN/sSS/0/cells``
of the HDF5 file, z, y, x; ``bdv.n5``: ``setupN/timepointM/s0`` of the N5
container). Either the ``.xml`` or its ``.h5`` may be given as the source (the
XML is then found beside the ``.h5``: the one of the same name, else one that
names it).

Series: the setups, grouped so that setups differing only in their channel
are one series with those channels (a tile seen in two colours is one image of
two channels, named as the XML names the channels); setups differing in tile,
angle or illumination, size or voxel size are separate series (``--series``).
The time points are the XML's, one converted at a time. The XML's
registrations (affine transforms placing tiles and angles) are not applied:
each series is read as acquired. The coarser resolution levels are
BigDataViewer's own pyramid, ignored.

Voxel size: the setup's ``voxelSize`` in its ``unit``. BigDataViewer's HDF5
stores unsigned 16-bit voxels as signed 16-bit; they are read back as
``uint16``, as BigDataViewer reads them.
"""

from __future__ import annotations

import glob
import os
import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from ...errors import PrecomputedTifError
from ...geometry import Box
from .base import ArraySource, Image, SeriesInfo, dims_text, open_series, require, um

NOUN = "setups"


def _text(el: ET.Element | None, path: str, default: str = "") -> str:
    found = el.find(path) if el is not None else None
    return (found.text or "").strip() if found is not None and found.text is not None else default


def find_xml(path: str) -> str:
    """The BigDataViewer XML of ``path`` (an ``.xml`` itself, or the ``.h5`` one names)."""
    if path.lower().endswith(".xml"):
        return path
    same = os.path.splitext(path)[0] + ".xml"
    if os.path.isfile(same) and _data_file(same) == os.path.realpath(path):
        return same
    for candidate in sorted(glob.glob(os.path.join(glob.escape(os.path.dirname(path) or "."), "*.xml"))):
        try:
            if _data_file(candidate) == os.path.realpath(path):
                return candidate
        except PrecomputedTifError:
            continue
    raise PrecomputedTifError(
        f"{path}: no BigDataViewer XML beside it names it; an HDF5 file is read as a BigDataViewer dataset, with "
        "its XML (setups, voxel size, time points): give the .xml, or keep it beside the .h5")


def _parse(xml: str) -> ET.Element:
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError) as exc:
        raise PrecomputedTifError(f"{xml} is not a readable XML file ({exc})") from None
    if root.tag != "SpimData":
        raise PrecomputedTifError(f"{xml} is not a BigDataViewer dataset (its root is <{root.tag}>, not <SpimData>)")
    return root


def _loader(xml: str, root: ET.Element) -> tuple[str, str]:
    """(format, absolute path of the data) the XML's ``ImageLoader`` names."""
    loader = root.find("SequenceDescription/ImageLoader")
    if loader is None:
        raise PrecomputedTifError(f"{xml} has no ImageLoader: it does not say where its voxels are")
    fmt = loader.get("format", "")
    tag = {"bdv.hdf5": "hdf5", "bdv.n5": "n5"}.get(fmt)
    element = loader.find(tag) if tag else None
    if element is None or not (element.text or "").strip():
        raise PrecomputedTifError(f"{xml}: its voxels are in a {fmt!r} image loader; only BigDataViewer HDF5 "
                                  "(bdv.hdf5) and N5 (bdv.n5) are read -- resave the dataset as HDF5 in BigStitcher")
    name = (element.text or "").strip()
    if element.get("type", "relative") == "relative":
        base = os.path.dirname(xml)
        base_path = root.find("BasePath")
        relative_to = (base_path.text or "").strip() if base_path is not None else ""
        if relative_to and base_path is not None and base_path.get("type", "relative") == "relative":
            base = os.path.join(base, relative_to)
        name = os.path.join(base, name)
    return fmt, os.path.normpath(name)


def _data_file(xml: str) -> str:
    return os.path.realpath(_loader(xml, _parse(xml))[1])


def _timepoints(xml: str, root: ET.Element) -> list[int]:
    el = root.find("SequenceDescription/Timepoints")
    if el is None:
        return [0]
    kind = el.get("type", "range")
    if kind == "range":
        return list(range(int(_text(el, "first", "0")), int(_text(el, "last", "0")) + 1))
    pattern = _text(el, "integerpattern")
    out: list[int] = []
    for part in filter(None, (p.strip() for p in pattern.split(","))):
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)(?::(\d+))?", part)
        if m:
            out.extend(range(int(m.group(1)), int(m.group(2)) + 1, int(m.group(3) or 1)))
        elif part.isdigit():
            out.append(int(part))
        else:
            raise PrecomputedTifError(f"{xml}: time points {pattern!r} are not understood")
    return out or [0]


def _setups(xml: str, root: ET.Element) -> list[dict]:
    out = []
    for el in root.iterfind("SequenceDescription/ViewSetups/ViewSetup"):
        try:
            size = [int(v) for v in _text(el, "size").split()]
        except ValueError:
            size = []
        if len(size) != 3:
            raise PrecomputedTifError(f"{xml}: ViewSetup {_text(el, 'id')} has no size x y z")
        found = el.find("attributes")
        attrs = {a.tag: (a.text or "").strip() for a in (list(found) if found is not None else [])}
        unit = _text(el, "voxelSize/unit", "um")
        try:
            voxel = tuple(um(v, unit) for v in _text(el, "voxelSize/size").split()) or (None, None, None)
        except ValueError:
            voxel = (None, None, None)
        out.append({"id": int(_text(el, "id", "0")), "name": _text(el, "name"), "size": tuple(size),
                    "voxel": voxel if len(voxel) == 3 else (None, None, None), "attributes": attrs})
    if not out:
        raise PrecomputedTifError(f"{xml} has no ViewSetup")
    return out


def _attribute_names(root: ET.Element, kind: str) -> dict[str, str]:
    """{id: name} of the XML's attribute values of ``kind`` ("channel", "tile", ...)."""
    names = {}
    for group in root.iterfind("SequenceDescription/ViewSetups/Attributes"):
        if group.get("name") == kind:
            for el in group:
                names[_text(el, "id")] = _text(el, "name")
    return names


def _groups(root: ET.Element, setups: list[dict]) -> list[list[dict]]:
    """Setups grouped into series: the same but for their channel, in the XML's order."""
    groups: dict[tuple, list[dict]] = {}
    for s in setups:
        others = tuple(sorted((k, v) for k, v in s["attributes"].items() if k != "channel"))
        groups.setdefault((others, s["size"], s["voxel"]), []).append(s)
    return list(groups.values())


def _describe(path: str):
    xml = find_xml(path)
    root = _parse(xml)
    fmt, data = _loader(xml, root)
    times = _timepoints(xml, root)
    groups = _groups(root, _setups(xml, root))
    channel_names = _attribute_names(root, "channel")
    listing = []
    for i, group in enumerate(groups):
        x, y, z = group[0]["size"]
        others = [(k, v) for k, v in sorted(group[0]["attributes"].items()) if k != "channel"]
        name = ", ".join(f"{k} {v}" for k, v in others) or group[0]["name"]
        dims = [("T", len(times)), ("C", len(group)), ("Z", z), ("Y", y), ("X", x)]
        listing.append(SeriesInfo(i, name, dims_text((a, n) for a, n in dims if n > 1 or a in "YX")))
    return xml, fmt, data, times, groups, channel_names, listing


class BdvSource(ArraySource):
    label = "BigDataViewer"

    def _open(self) -> Any:
        fmt, data = self.image.key[0], self.other_files[0]
        if fmt == "bdv.n5":
            from .n5 import _Arrays

            return _Arrays(data)
        h5py = require("h5py", "hdf5", self.path, "BigDataViewer HDF5")
        try:
            return h5py.File(data, "r")
        except Exception as exc:
            raise PrecomputedTifError(f"{data} is not a readable HDF5 file ({exc})") from None

    def _read_channel(self, h: Any, c: int, box: Box) -> np.ndarray:
        fmt, setups, times = self.image.key
        setup, t = setups[c], times[self.timepoint]
        if fmt == "bdv.n5":
            from .n5 import read_box

            return read_box(h.get(f"setup{setup}/timepoint{t}/s0"), "xyz", box, 0, 0)
        cells = h[f"t{t:05d}/s{setup:02d}/0/cells"]
        data = cells[box.z0:box.z1, box.y0:box.y1, box.x0:box.x1]
        return data.view(np.uint16) if data.dtype == np.int16 else data


def open_bdv(path: str, series: int | None, channel: int | None, timepoint: int | None,
             segmentation: bool) -> BdvSource:
    xml, fmt, data, times, groups, channel_names, listing = _describe(path)
    if not os.path.exists(data):
        raise PrecomputedTifError(f"{data}, where {xml} keeps its voxels, is missing")

    def image_of(i: int) -> Image:
        group = groups[i]
        x, y, z = group[0]["size"]
        dtype = _dtype(fmt, data, group[0]["id"], times[0], xml)
        names = tuple(channel_names.get(s["attributes"].get("channel", ""), None) or None for s in group)
        return Image((z, y, x), dtype, len(group), len(times), group[0]["voxel"], names if len(group) > 1 or
                     any(names) else (), (), False, (fmt, tuple(s["id"] for s in group), tuple(times)))
    return open_series(BdvSource, xml, NOUN, listing, image_of, series, channel, timepoint, segmentation,
                       other_files=(data,))


def _dtype(fmt: str, data: str, setup: int, t: int, xml: str) -> str:
    if fmt == "bdv.n5":
        from .n5 import open_array

        return np.dtype(open_array(os.path.join(data, f"setup{setup}/timepoint{t}/s0"), xml).dtype.numpy_dtype).name
    h5py = require("h5py", "hdf5", xml, "BigDataViewer HDF5")
    try:
        with h5py.File(data, "r") as f:
            stored = f[f"t{t:05d}/s{setup:02d}/0/cells"].dtype
    except KeyError:
        raise PrecomputedTifError(f"{data} has no t{t:05d}/s{setup:02d}/0/cells, which {xml} promises") from None
    except OSError as exc:
        raise PrecomputedTifError(f"{data} is not a readable HDF5 file ({exc})") from None
    return "uint16" if stored == np.int16 else np.dtype(stored).name


def list_series(path: str) -> list[SeriesInfo]:
    return _describe(path)[-1]
