"""N5 containers (a ``*.n5`` directory), read with ``tensorstore`` (extra ``n5``).

A dataset is a directory whose ``attributes.json`` has ``dimensions``; N5 lists
dimensions fastest first, so a 3-D dataset is x, y, z, and a 2-D one x, y. A
dataset (or the group holding it) may name its axes (``"axes": ["x", "y",
"z", "c", "t"]``, any order; ``c`` channels, ``t`` time points); a dataset of
more than three dimensions that does not is refused, as is an axis that is
none of these.

The series (``--series``) are the container's datasets, found at any depth:
the container itself when it is one; BigDataViewer's and BigStitcher's layout
``setupN/timepointM/s0`` gives one series per setup with its timepoints as
time points; a multiscale group (``s0``, ``s1``, ...) counts once, by its
full-resolution ``s0`` (coarser levels are ignored: the conversion makes its
own).

Voxel size: ``pixelResolution`` (``{"dimensions": [...], "unit": "um"}``, as
n5-viewer writes it) or ``resolution`` (with ``units`` or ``unit``; µm when
neither is given) of the dataset or the group holding it. BigStitcher keeps a
dataset's voxel size in its XML, not in the N5: give the ``.xml``
(:mod:`.bdv`) to have it.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from ...errors import PrecomputedTifError
from ...geometry import Box
from .base import ArraySource, Image, SeriesInfo, dims_text, open_series, require, um

NOUN = "datasets"


def open_array(path: str, where: str) -> Any:
    """The tensorstore of the N5 dataset at directory ``path`` (``where`` names the file for messages)."""
    ts = require("tensorstore", "n5", where, "N5")
    try:
        return ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": path}, "open": True}).result()
    except Exception as exc:
        raise PrecomputedTifError(f"{path} is not a readable N5 dataset ({exc})") from None


class _Arrays:
    """Open N5 datasets of one container, by path relative to it."""

    def __init__(self, root: str):
        self.root = root
        self.arrays: dict[str, Any] = {}

    def get(self, relative: str) -> Any:
        if relative not in self.arrays:
            self.arrays[relative] = open_array(os.path.join(self.root, relative), self.root)
        return self.arrays[relative]


def read_box(array: Any, axes: str, box: Box, channel: int, t: int) -> np.ndarray:
    """(z, y, x) of ``box``, ``channel`` and time point ``t``, of an N5 array of ``axes`` (N5
    order: letters x, y, z, c, t)."""
    index: list[Any] = []
    for a in axes:
        if a in "xyz":
            lo, hi = {"x": (box.x0, box.x1), "y": (box.y0, box.y1), "z": (box.z0, box.z1)}[a]
            index.append(slice(lo, hi))
        else:
            index.append(channel if a == "c" else t)
    data = np.asarray(array[tuple(index)].read().result())
    kept = [a for a in axes if a in "xyz"]
    data = data.transpose([kept.index(a) for a in "zyx" if a in kept])
    return data.reshape(box.shape)


class N5Source(ArraySource):
    label = "N5"

    def _open(self) -> Any:
        return _Arrays(self.path)

    def _read_channel(self, h: Any, c: int, box: Box) -> np.ndarray:
        datasets, axes = self.image.key
        if len(datasets) > 1:  # one dataset per time point (BigDataViewer's layout)
            return read_box(h.get(datasets[self.timepoint]), axes, box, c, 0)
        return read_box(h.get(datasets[0]), axes, box, c, self.timepoint)


def _attributes(directory: str) -> dict:
    try:
        with open(os.path.join(directory, "attributes.json"), encoding="utf-8") as f:
            attrs = json.load(f)
    except (OSError, ValueError):
        return {}
    return attrs if isinstance(attrs, dict) else {}


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def find_datasets(root: str) -> list[str]:
    """Every dataset in the container at ``root``, as paths relative to it ("" for the root itself)."""
    found = []
    for directory, subdirs, _ in os.walk(root):
        if isinstance(_attributes(directory).get("dimensions"), list):
            found.append(os.path.relpath(directory, root).replace(os.sep, "/") if directory != root else "")
            subdirs[:] = []
        else:
            subdirs.sort(key=_natural)
    return sorted(found, key=_natural)


def _series(root: str) -> list[tuple[str, list[str]]]:
    """(name, datasets: one, or one per time point) of each series of the container."""
    datasets = find_datasets(root)
    out: list[tuple[str, list[str]]] = []
    bdv: dict[str, dict[int, str]] = {}
    for d in datasets:
        m = re.fullmatch(r"(setup\d+)/timepoint(\d+)/s(\d+)", d)
        if m:
            if m.group(3) == "0":
                bdv.setdefault(m.group(1), {})[int(m.group(2))] = d
            continue
        m = re.fullmatch(r"(?:(.*)/)?s(\d+)", d)
        if m and m.group(2) != "0" and f"{(m.group(1) + '/') if m.group(1) else ''}s0" in datasets:
            continue  # a coarser level of a multiscale group
        name = m.group(1) if m and m.group(2) == "0" and m.group(1) else d
        out.append((name, [d]))
    for setup in sorted(bdv, key=_natural):
        times = bdv[setup]
        out.append((setup, [times[t] for t in sorted(times)]))
    return out


def _axes(root: str, dataset: str, ndim: int) -> str:
    where = os.path.join(root, dataset)
    for directory in (where, os.path.dirname(where.rstrip("/"))):
        named = _attributes(directory).get("axes")
        if isinstance(named, list) and len(named) == ndim:
            letters = "".join(str(a).strip().lower()[:1] for a in named)
            if set(letters) <= set("xyzct") and len(set(letters)) == ndim and {"x", "y"} <= set(letters):
                return letters
            raise PrecomputedTifError(f"{where}: axes {named} are not x, y, z, c (channels) and t (time)")
    if ndim in (2, 3):
        return "xyz"[:ndim]
    raise PrecomputedTifError(f"{where} has {ndim} dimensions and no \"axes\" attribute saying which is which; "
                              "only 2-D (x, y) and 3-D (x, y, z) datasets are read without one")


def _voxel_size(root: str, dataset: str, axes: str) -> tuple:
    where = os.path.join(root, dataset)
    for directory in (where, os.path.dirname(where.rstrip("/"))):
        attrs = _attributes(directory)
        sizes, units = None, None
        res = attrs.get("pixelResolution")
        if isinstance(res, dict) and isinstance(res.get("dimensions"), list):
            sizes, units = res["dimensions"], res.get("unit", "um")
        elif isinstance(attrs.get("resolution"), list):
            sizes, units = attrs["resolution"], attrs.get("units", attrs.get("unit", "um"))
        if sizes is None:
            continue
        spatial = [a for a in axes if a in "xyz"]
        if len(sizes) not in (len(axes), len(spatial)):
            continue
        named = dict(zip(axes if len(sizes) == len(axes) else spatial, sizes))
        unit_of = (dict(zip(axes if len(sizes) == len(axes) else spatial, units)) if isinstance(units, list)
                   else {a: units for a in named})
        return tuple(um(named.get(a), unit_of.get(a)) if a in named else None for a in "xyz")
    return (None, None, None)


def describe(root: str) -> tuple[list[SeriesInfo], list[tuple[str, list[str]]]]:
    series = _series(root)
    listing = []
    for i, (name, datasets) in enumerate(series):
        dims = _attributes(os.path.join(root, datasets[0])).get("dimensions", [])
        text = dims_text((f"d{k}", int(n)) for k, n in enumerate(dims))
        if len(datasets) > 1:
            text = f"T {len(datasets)}, {text}"
        listing.append(SeriesInfo(i, name, text))
    return listing, series


def image_of(root: str, datasets: list[str]) -> Image:
    array = open_array(os.path.join(root, datasets[0]), root)
    shape = tuple(int(n) for n in array.shape)
    axes = _axes(root, datasets[0], len(shape))
    size = dict(zip(axes, shape))
    n_t = len(datasets) if len(datasets) > 1 else size.get("t", 1)
    if len(datasets) > 1 and "t" in axes:
        raise PrecomputedTifError(f"{os.path.join(root, datasets[0])} has a time axis, and a dataset per time point")
    return Image((size.get("z", 1), size["y"], size["x"]), np.dtype(array.dtype.numpy_dtype).name, size.get("c", 1),
                 n_t, _voxel_size(root, datasets[0], axes), key=(tuple(datasets), axes))


def open_n5(path: str, series: int | None, channel: int | None, timepoint: int | None,
            segmentation: bool) -> N5Source:
    root = path.rstrip("/") or path
    listing, found = describe(root)
    return open_series(N5Source, root, NOUN, listing, lambda i: image_of(root, found[i][1]), series, channel,
                       timepoint, segmentation)


def list_series(path: str) -> list[SeriesInfo]:
    return describe(path.rstrip("/") or path)[0]
