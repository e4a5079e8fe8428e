"""The Neuroglancer ``info`` file: built from a geometry, written atomically, read back, and
read as a :class:`VolumeInfo` -- the one place that parses what a volume's ``info`` says.

Writers build ``info`` as a dict (:func:`build_info`; formats and meshing add their keys) and
write it with :func:`write_info`. Readers take a :class:`VolumeInfo` (:func:`read_volume_info`,
or :meth:`VolumeInfo.from_json` of a dict in hand): the data type, channels, scales, voxel size
and this project's own settings (:data:`EXTRA`), each checked once, with one line naming the
``info`` when a field is not what a volume's ``info`` holds.
"""

from __future__ import annotations

import copy
import json
import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import PrecomputedTifError
from .geometry import Geometry, Scale, as_triple
from .storage import StorageLike, open_storage

INFO = "info"
# What a conversion records beside ``info`` before writing anything (pipeline/destination.py):
# a directory holding it and no ``info`` is a dataset still being made.
JOB_RECORD = ".precomputed-tif.json"


# The key under which this project keeps what Neuroglancer's info has no place for
# (how to display the data); readers of the format ignore keys they do not know.
EXTRA = "precomputed_tif"
# The ``@type`` of a volume's info (an info without one is a volume too, as older ones were).
VOLUME_TYPE = "neuroglancer_multiscale_volume"


def build_info(geometry: Geometry, dtype: np.dtype, segmentation: bool, channels: int = 1) -> dict:
    """``info`` for a volume of ``channels`` channels with raw encoding (precomputed ``volume.md``).

    No ``mesh`` or ``segment_properties`` key: meshing adds them when it has
    written what they point at (Neuroglancer would ask for ``mesh/info`` otherwise).
    """
    return {
        "@type": VOLUME_TYPE,
        "type": "segmentation" if segmentation else "image",
        "data_type": np.dtype(dtype).name,
        "num_channels": int(channels),
        "scales": [
            {
                "key": level.key,
                "size": list(level.size),
                "resolution": list(level.resolution),
                "voxel_offset": [0, 0, 0],
                "chunk_sizes": [list(geometry.chunk_size)],
                "encoding": "raw",
            }
            for level in geometry.levels
        ],
    }


def write_info(where: StorageLike, info: dict) -> None:
    """Write ``info`` into ``where`` (a :class:`~.storage.Storage`, or a directory's path or URL)
    atomically and durably: a reader sees the old file or the whole new one, and once this
    returns it survives a crash. Indented JSON and a final newline, as every version wrote it."""
    open_storage(where).put(INFO, json.dumps(info, indent=2).encode() + b"\n", durable=True)


def read_info(where: StorageLike) -> dict:
    """Parse the ``info`` in ``where`` (a :class:`~.storage.Storage`, or a directory's path or
    URL); a user error when it is missing or not a volume ``info``."""
    storage = open_storage(where)
    path = storage.location(INFO)
    try:
        data = storage.get(INFO)
        if data is None:
            raise PrecomputedTifError(f"{storage.location()} holds no precomputed dataset (no info file)")
        info = json.loads(data)
    except (OSError, ValueError) as exc:
        raise PrecomputedTifError(f"{path} is not a readable info file ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("scales"), list) or not info["scales"]:
        raise PrecomputedTifError(f"{path} is not the info file of a precomputed volume")
    return info


def read_volume_info(where: StorageLike) -> VolumeInfo:
    """The ``info`` in ``where`` (as :func:`read_info` finds it) as a :class:`VolumeInfo`; a user
    error naming the file when it is not a volume's ``info`` or a field has the wrong type."""
    storage = open_storage(where)
    return VolumeInfo.from_json(read_info(storage), storage.location(INFO))


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class VolumeInfo:
    """A volume's ``info`` (Neuroglancer's precomputed ``volume.md``, plus this project's
    :data:`EXTRA` settings), parsed once and immutable.

    Make one with :meth:`from_json` (or :func:`read_volume_info`); :meth:`to_json` gives the
    dict back as it was. Triples are (x, y, z), as in ``info``; scales are finest first.
    What :meth:`from_json` checks: ``@type`` (a volume's, or none), ``data_type``,
    ``num_channels``, ``type``, the scales and that :data:`EXTRA` is an object; the settings
    under :data:`EXTRA` are checked when they are read (a server, which never reads them, serves
    a dataset whatever they hold).
    """

    where: str  # how messages name the info: its path or URL
    dtype: np.dtype  # the voxels' type (``data_type``)
    n_channels: int  # channels per voxel (``num_channels``; 1 when info has none)
    volume_type: str | None  # ``type``: "image", "segmentation", ... (None when info has none)
    scales: tuple[Scale, ...]  # every scale, finest first (see geometry.Scale: x, y, z voxels, nm)
    _extra: dict = field(repr=False, compare=False)
    _json: dict = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, info: dict, where: str = INFO) -> VolumeInfo:
        """Parse ``info`` (a dict as ``json.load`` gives it). ``where`` names it in messages (the
        file's path or URL). A :class:`~.errors.PrecomputedTifError` of one line names ``where``
        and the field when ``info`` is not a volume's or a field it exposes has the wrong type.
        ``info`` is copied: changing it later changes nothing here."""
        if not isinstance(info, dict) or not isinstance(info.get("scales"), list) or not info["scales"]:
            raise PrecomputedTifError(f"{where} is not the info file of a precomputed volume")
        kind = info.get("@type", VOLUME_TYPE)
        if kind != VOLUME_TYPE:
            raise PrecomputedTifError(f"{where} holds a {_short.repr(kind)}, not a volume ({VOLUME_TYPE})")
        info = copy.deepcopy(dict(info))

        def wrong(what: str, value, expected: str) -> PrecomputedTifError:
            return PrecomputedTifError(f"{where}: {what} must be {expected}, got {_short.repr(value)}")

        data_type = info.get("data_type")
        try:
            if not isinstance(data_type, str):
                raise TypeError
            dtype = np.dtype(data_type)
        except TypeError:
            raise wrong("data_type", data_type, "the name of a numeric type (uint8, uint16, float32, ...)") from None
        if dtype.kind not in "uifb":
            raise wrong("data_type", data_type, "the name of a numeric type (uint8, uint16, float32, ...)")
        n_channels = info.get("num_channels", 1)
        if not _is_int(n_channels) or n_channels < 1:
            raise wrong("num_channels", n_channels, "a positive whole number")
        volume_type = info.get("type")
        if volume_type is not None and not isinstance(volume_type, str):
            raise wrong("type", volume_type, '"image" or "segmentation"')
        extra = info.get(EXTRA)
        if extra is not None and not isinstance(extra, dict):
            raise wrong(EXTRA, extra, "an object")
        scales = tuple(_scale(s, i, wrong) for i, s in enumerate(info["scales"]))
        keys = [s.key for s in scales]
        if len(set(keys)) != len(keys):
            raise wrong("the scales' keys", keys, "different from each other")
        return cls(where, dtype, int(n_channels), volume_type, scales, extra or {}, info)

    @classmethod
    def of(cls, info: dict | VolumeInfo, where: str = INFO) -> VolumeInfo:
        """``info`` itself when it is a :class:`VolumeInfo`, else :meth:`from_json` of the dict:
        for functions that take either."""
        return info if isinstance(info, VolumeInfo) else cls.from_json(info, where)

    def to_json(self) -> dict:
        """The dict this was made from, unchanged (a copy: change it freely): written with
        :func:`write_info`, it is byte for byte the file it was read from."""
        return copy.deepcopy(self._json)

    # -- what Neuroglancer's info says ----------------------------------------------------------

    @property
    def segmentation(self) -> bool:
        """Whether the volume holds labels (``type`` is ``"segmentation"``), not intensities."""
        return self.volume_type == "segmentation"

    @property
    def keys(self) -> tuple[str, ...]:
        """The scales' keys, finest first."""
        return tuple(s.key for s in self.scales)

    def scale(self, key: str) -> Scale:
        """The scale whose key is ``key``; ``KeyError`` when there is none (callers say where)."""
        for s in self.scales:
            if s.key == key:
                return s
        raise KeyError(key)

    @property
    def voxel_size_um(self) -> tuple[float, float, float]:
        """Micrometres per voxel of the finest scale, (x, y, z): its resolution (nm) / 1000."""
        x, y, z = (r / 1000.0 for r in self.scales[0].resolution)
        return (x, y, z)

    # -- this project's settings (EXTRA) ------------------------------------------------------

    @property
    def extra(self) -> Mapping[str, Any]:
        """What ``info`` keeps under :data:`EXTRA` (read-only; empty when it has none). Prefer
        the typed accessors below."""
        return MappingProxyType(self._extra)

    def _wrong(self, key: str, value, expected: str) -> PrecomputedTifError:
        return PrecomputedTifError(f"{self.where}: {EXTRA}.{key} must be {expected}, got {_short.repr(value)}")

    @property
    def rgb(self) -> bool:
        """Whether the channels are the colours of a colour image (red, green, blue, [alpha])."""
        value = self._extra.get("rgb", False)
        if not isinstance(value, bool):
            raise self._wrong("rgb", value, "true or false")
        return value

    def _strings(self, key: str) -> tuple[str, ...]:
        value = self._extra.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, value, "a list of strings")
        return tuple(value)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The channels' names as ``info`` records them; empty for datasets written before names
        were kept (and for segmentations). :func:`.channels.of_info` fills in the defaults."""
        return self._strings("channel_names")

    @property
    def channel_colors(self) -> tuple[str, ...]:
        """The channels' colours as ``info`` records them (``#rrggbb``); empty when it records
        none. :func:`.channels.of_info` fills in the defaults."""
        return self._strings("channel_colors")

    @property
    def display_range(self) -> tuple[tuple[float, float], ...] | None:
        """(low, high) voxel values per channel that the contrast maps to black and full colour,
        measured at conversion; None when ``info`` has none (a segmentation, an older dataset).
        The numbers are as ``info`` writes them (integers for integer data)."""
        value = self._extra.get("display_range")
        if not value:
            return None
        ok = (isinstance(value, list) and len(value) == self.n_channels
              and all(isinstance(r, list) and len(r) == 2 and all(_is_number(v) for v in r) for r in value))
        if not ok:
            raise self._wrong("display_range", value, f"{self.n_channels} pairs of numbers [low, high]")
        return tuple((r[0], r[1]) for r in value)

    @property
    def voxel_size_from(self) -> str:
        """Which metadata gave the voxel size (``"given"``, ``"default"``, or the source's, e.g.
        ``"OME-XML"``); empty when ``info`` does not say."""
        value = self._extra.get("voxel_size_from", "")
        if not isinstance(value, str):
            raise self._wrong("voxel_size_from", value, "a string")
        return value

    @property
    def n_timepoints(self) -> int:
        """How many time points the dataset holds (an OME-Zarr time series: its arrays have a
        leading ``t`` axis); 1 when ``info`` records no time series."""
        return self._time()[0]

    @property
    def time_interval(self) -> tuple[float | None, str]:
        """The interval between time points and its NGFF unit name (``"second"``, ...), as the
        source recorded them; (None, "") when unknown."""
        _, interval, unit = self._time()
        return interval, unit

    def _time(self) -> tuple[int, float | None, str]:
        value = self._extra.get("time")
        if value is None:
            return 1, None, ""
        if isinstance(value, dict):
            n, interval, unit = value.get("timepoints"), value.get("interval"), value.get("unit", "")
            if (isinstance(n, int) and _is_int(n) and n >= 1 and isinstance(unit, str)
                    and (interval is None or (_is_number(interval) and interval > 0))):
                return n, None if interval is None else float(interval), unit
        raise self._wrong("time", value, 'an object {"timepoints": N, "interval": number or null, "unit": name}')

    @property
    def zarr_shards(self) -> dict[str, tuple[int, int, int]]:
        """(x, y, z) voxels of each scale's Zarr v3 shards, by scale key, as the conversion planned
        them (OME-Zarr 0.5); empty when ``info`` has none."""
        value = self._extra.get("zarr_shards") or {}
        out = {}
        if isinstance(value, dict):
            for key, size in value.items():
                if not (isinstance(size, list) and len(size) == 3 and all(_is_int(v) and v > 0 for v in size)):
                    break
                out[key] = (int(size[0]), int(size[1]), int(size[2]))
            else:
                return out
        raise self._wrong("zarr_shards", value, "an object of three positive whole numbers per scale key")


def _scale(scale, index: int, wrong) -> Scale:
    """A scale of ``info`` (its ``index``-th entry) as a :class:`~.geometry.Scale`, checked."""
    if not isinstance(scale, dict):
        raise wrong(f"scales[{index}]", scale, "an object")
    key = scale.get("key")
    if not isinstance(key, str) or not key:
        raise wrong(f"scales[{index}].key", key, "a string")

    def triple(name: str, value, integer: bool, positive: bool) -> tuple:
        ok = isinstance(value, list) and len(value) == 3 and all(
            (_is_int(v) if integer else _is_number(v)) and (v > 0 or not positive) for v in value)
        if not ok:
            kind = ("positive " if positive else "") + ("whole numbers" if integer else "numbers")
            raise wrong(f"scale {key}'s {name}", value, f"three {kind} x,y,z")
        return (value[0], value[1], value[2])

    size = triple("size", scale.get("size"), True, True)
    chunks = scale.get("chunk_sizes")
    if not isinstance(chunks, list) or not chunks:
        raise wrong(f"scale {key}'s chunk_sizes", chunks, "a list of chunk sizes x,y,z")
    chunk_size = triple("chunk size", chunks[0], True, True)
    resolution = triple("resolution", scale.get("resolution"), False, True)
    offset = triple("voxel_offset", scale.get("voxel_offset", [0, 0, 0]), True, False)
    encoding = scale.get("encoding", "raw")
    if not isinstance(encoding, str):
        raise wrong(f"scale {key}'s encoding", encoding, "a string")
    sharding = scale.get("sharding")
    if sharding is not None and not isinstance(sharding, dict):
        raise wrong(f"scale {key}'s sharding", sharding, "an object")
    return Scale(key, as_triple(int(v) for v in size), as_triple(int(v) for v in chunk_size),
                 as_triple(int(v) for v in offset), as_triple(resolution), encoding, sharding)
