"""OME-NGFF metadata (0.4 and 0.5): what makes a pyramid of Zarr arrays an OME-Zarr image.

Built from the dataset's ``info`` -- the same levels, voxel sizes, channel
colours and display range every other writer gets -- and made by zarr-python
as the attributes of the dataset's root group: ``.zgroup`` and ``.zattrs``
(NGFF 0.4, Zarr v2) or ``zarr.json`` (NGFF 0.5, Zarr v3, under the ``ome``
key). zarr-python makes them in memory (:func:`zarr_objects`) and they are
stored through the dataset's :class:`~precomputed_tif.storage.Storage`, so
the bytes are zarr-python's on any storage.

Physical coordinates: axes ``t`` (a time series: type time, in the unit the source recorded, one per
time point when it recorded none), ``c`` (when there are channels), ``z``, ``y``, ``x`` in
micrometres. Time is never downsampled. NGFF puts the *centre* of voxel ``i`` at ``i * scale +
translation``; each level's translation is half its voxel size, so voxel ``i`` of any level covers
``[i, i + 1) * scale`` -- exactly the box the precomputed ``info`` gives it (``voxel_offset`` 0, the
corner of the first voxel at the origin). A level-``n`` voxel is the mean of the level-1 voxels it
covers, so a feature lands at the same physical point at every level, and an OME-Zarr and a
precomputed layer of the same conversion overlay exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import channels
from ...errors import PrecomputedTifError, setting
from ...geometry import Scale
from ...info import INFO, VolumeInfo
from ...storage import StorageLike, open_storage
from ...storage.regular_files import open_regular

VERSIONS = ("0.4", "0.5")
UNIT = "micrometer"


def axes(channels: int, timepoints: int = 1, time_unit: str = "") -> list[dict]:
    """NGFF axes, slowest first: ``t`` (only with several time points; ``time_unit`` its NGFF
    unit, none when ""), ``c`` (only with several channels), ``z``, ``y``, ``x``."""
    spatial = [{"name": a, "type": "space", "unit": UNIT} for a in "zyx"]
    time: list[dict] = []
    if timepoints > 1:
        time = [{"name": "t", "type": "time", **({"unit": time_unit} if time_unit else {})}]
    return time + ([{"name": "c", "type": "channel"}] if channels > 1 else []) + spatial


def level_transforms(scale: Scale, channels: int, timepoints: int = 1,
                     time_interval: float | None = None) -> list[dict]:
    """A level's ``scale`` and ``translation`` (axis order of :func:`axes`; µm for z, y, x)
    from its ``info`` scale (resolution in nm, x, y, z); a time series' t scale is
    ``time_interval`` (1 when unknown), at every level, translated by 0 (time point 0 at 0)."""
    um = [r / 1000.0 for r in reversed(scale.resolution)]  # z, y, x
    lead = [1.0] if channels > 1 else []
    if timepoints > 1:
        t = [float(time_interval) if time_interval is not None else 1.0]
        return [
            {"type": "scale", "scale": t + lead + um},
            {"type": "translation", "translation": [0.0] * (1 + len(lead)) + [v / 2 for v in um]},
        ]
    return [
        {"type": "scale", "scale": lead + um},
        {"type": "translation", "translation": [0.0] * len(lead) + [v / 2 for v in um]},
    ]


def multiscale(info: dict | VolumeInfo, name: str, version: str) -> dict:
    """One entry of ``multiscales``: every scale of ``info``, finest first."""
    volume = VolumeInfo.of(info)
    channels, timepoints = volume.n_channels, volume.n_timepoints
    interval, unit = volume.time_interval
    entry = {
        "name": name,
        "axes": axes(channels, timepoints, unit),
        "datasets": [{"path": s.key,
                      "coordinateTransformations": level_transforms(s, channels, timepoints, interval)}
                     for s in volume.scales],
        # How each level was made from the one before: the mean of 2x2x2 (or 2x2x1) voxels,
        # or the most frequent label of a segmentation.
        "type": "mode" if volume.segmentation else "mean",
    }
    if version == "0.4":
        entry = {"version": "0.4", **entry}
    return entry


def omero(info: dict | VolumeInfo, version: str) -> dict:
    """``omero`` rendering settings: per channel a label and a colour (``RRGGBB``, NGFF's spelling)
    as :func:`.channels.of_info` reads them, and the display window measured at conversion
    (``info["precomputed_tif"]``)."""
    volume = VolumeInfo.of(info)
    n, dtype = volume.n_channels, volume.dtype
    limits = np.iinfo(dtype) if dtype.kind in "ui" else None
    ranges = volume.display_range or [[float(limits.min), float(limits.max)] if limits else [0.0, 1.0]] * n
    names, colors = channels.of_info(volume)
    shown = 3 if volume.rgb else n
    entries = []
    for i in range(n):
        lo, hi = ranges[i]
        entries.append({
            "label": names[i],
            "color": colors[i].lstrip("#").upper(),
            # min and max bound a viewer's contrast slider: the type's range, or for floats
            # (whose range is useless there) a wide margin around the measured window.
            "window": {"min": _number(limits.min) if limits else lo - 2 * (hi - lo),
                       "max": _number(limits.max) if limits else hi + 2 * (hi - lo), "start": lo, "end": hi},
            "active": i < shown,
            "coefficient": 1.0,
            "family": "linear",
            "inverted": False,
        })
    settings = {"channels": entries, "rdefs": {"model": "greyscale" if colors == [channels.GREY] else "color"}}
    if version == "0.4":
        settings = {"version": "0.4", **settings}
    return settings


def _number(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def attributes(info: dict | VolumeInfo, name: str, version: str) -> dict:
    """The root group's attributes: multiscales, plus ``omero`` for an image or ``image-label``
    for a segmentation (a label image: integers, one per object)."""
    if version not in VERSIONS:
        raise ValueError(f"NGFF version {version!r}")
    volume = VolumeInfo.of(info)
    ome: dict[str, Any] = {"multiscales": [multiscale(volume, name, version)]}
    if volume.segmentation:
        ome["image-label"] = {"version": "0.4"} if version == "0.4" else {}
    else:
        ome["omero"] = omero(volume, version)
    if version == "0.4":
        return ome
    attrs: dict[str, Any] = {"ome": {"version": "0.5", **ome}}
    if "omero" in ome:
        # Neuroglancer reads rendering settings only from the top level, where 0.4 keeps them;
        # the copy there lets it show 0.5 data with its colours and contrast too.
        attrs["omero"] = ome["omero"]
    return attrs


def write_root(root: StorageLike, info: dict | VolumeInfo, name: str, version: str) -> None:
    """Make ``root`` (a :class:`~precomputed_tif.storage.Storage`, or a local path) an OME-Zarr
    image group: its group metadata and NGFF attributes, replacing any there were, durable when
    this returns; the arrays (one per scale, at their keys) are left as they are. A rerun of a
    finished conversion changes no object."""
    import zarr

    zarr_format: dict[str, Any]  # keywords for zarr.open_group
    if zarr_major() >= 3:
        zarr_format = {"zarr_format": 2 if version == "0.4" else 3}
    elif version == "0.4":
        zarr_format = {}  # zarr-python 2 writes Zarr v2 only
    else:
        raise PrecomputedTifError(ZARR3_NEEDED)
    storage = open_storage(root)
    attrs = attributes(VolumeInfo.of(info, storage.location(INFO)), name, version)
    objects = zarr_objects(lambda store: zarr.open_group(store=store, mode="w", **zarr_format).attrs.put(attrs))
    changed = False
    for key, data in objects.items():
        if storage.get(key) != data:
            storage.put(key, data)
            changed = True
    if changed:
        # Stored before the info file that says the dataset is complete.
        storage.flush()


# The files of a root group's metadata, in either Zarr version.
ROOT_FILES = ("zarr.json", ".zgroup", ".zattrs")
ZARR3_NEEDED = ("OME-Zarr 0.5 (Zarr v3) needs zarr-python 3, which needs Python 3.11 or newer: "
                f"pip install 'zarr>=3', or give {setting('ngff_version', '0.4')}")


def zarr_major() -> int:
    """The installed zarr-python's major version."""
    import zarr

    return int(zarr.__version__.split(".")[0])


def zarr_objects(make: Callable[[Any], object]) -> dict[str, bytes]:
    """What zarr-python writes, key by key (``/``-separated, relative to the store's root), when
    ``make(store)`` creates arrays or groups in an empty in-memory store: a zarr-python 3
    ``MemoryStore``, or for zarr-python 2 a dict. The caller stores the bytes where the dataset
    lives, so they are exactly zarr-python's on any storage."""
    if zarr_major() >= 3:
        from zarr.storage import MemoryStore

        held: dict[str, Any] = {}
        make(MemoryStore(held))
        return {key: buffer.to_bytes() for key, buffer in held.items()}
    plain: dict[str, Any] = {}
    make(plain)
    return {key: bytes(value) for key, value in plain.items()}


def root_version(directory: str) -> str | None:
    """The NGFF version of the multiscale image at ``directory``'s root, or None if it is none.
    A local directory's only: the servers that ask serve local directories."""
    import json

    for name in ("zarr.json", ".zattrs"):
        f = open_regular(os.path.join(directory, name))
        if f is None:
            continue
        try:
            with f:
                meta = json.loads(f.read())
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(meta, dict):
            continue
        attrs = meta.get("attributes", {}) if name == "zarr.json" else meta
        ome = attrs.get("ome") if isinstance(attrs, dict) else None
        if isinstance(ome, dict) and isinstance(ome.get("multiscales"), list):
            return str(ome.get("version"))
        multiscales = attrs.get("multiscales") if isinstance(attrs, dict) else None
        if isinstance(multiscales, list) and multiscales and isinstance(multiscales[0], dict):
            return str(multiscales[0].get("version", "0.4"))
    return None
