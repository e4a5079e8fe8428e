"""OME-Zarr written by other tools (ome-zarr-py, ngff-zarr, bioformats2raw, ...) as a source.

An OME-NGFF 0.4 (Zarr v2) or 0.5 (Zarr v3, sharded or not) multiscale image is read at its
full-resolution level (``datasets[0]``) only, region by region through zarr-python, so memory
holds what a task asks for, never the image. What the metadata says is carried over: the voxel
size from the level's ``scale`` (and the multiscale's own, when it has one) with the axes' units
converted to micrometres (a space axis without a unit is taken in micrometres, and where the
voxel size came from says so), the channels' names and colours from ``omero``, and a ``t`` axis's
time points and interval.

A directory -- or a prefix in a bucket, ``s3://BUCKET/PREFIX`` or ``gs://BUCKET/PREFIX`` -- is
taken for one when it has no ``info`` (this project's own datasets are read as datasets) and its
root group's attributes hold ``multiscales`` or ``bioformats2raw.layout``. Metadata and chunks
are read through this project's storage (for a bucket, the same client, environment and
one-line errors as its other bucket reads; :mod:`~precomputed_tif.storage.zarr_store`), a
worker opening the image again by its path or URL.
bioformats2raw's layout (https://ngff.openmicroscopy.org/0.4/#bf2raw) holds one image per
series: at the paths the ``OME`` group's ``series`` attribute lists, else at ``0``, ``1``, ...;
``series`` picks one when there are several.

The metadata is parsed here from the JSON itself (cheap, and nothing of zarr-python runs in the
process that plans); zarr-python opens the array only where voxels are read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DamagedData, PrecomputedTifError, either, param, setting
from ..geometry import Box
from ..storage import LocalStorage, Storage, StorageError, is_bucket_url, open_storage
from . import tiff_metadata
from .tiff import supported_dtype

log = logging.getLogger(__name__)

LAYOUT = "bioformats2raw.layout"
AXES = "tczyx"  # the order NGFF keeps axes in: time, channel, then space


def _storage(path: str) -> Storage:
    """What the image at ``path`` (a local directory, or an ``s3://``/``gs://`` URL) is read
    through: one storage per location and process, so a bucket's client is made once."""
    storage = _storages.get(path)
    if storage is None:
        storage = _storages[path] = open_storage(path, param("source")) if is_bucket_url(path) \
            else LocalStorage(path, confined=False)  # the user's own files: symlinks followed
    return storage


_storages: dict[str, Storage] = {}


def _key(*parts: str) -> str:
    """The storage key of ``parts`` (each ``/``-separated, empty ones left out)."""
    return "/".join(p for p in parts if p)


def _read_json(storage: Storage, key: str) -> dict | None:
    """The JSON object stored as ``key``, None when there is no such object; a user error naming
    it when it is no JSON object."""
    try:
        data = storage.get(key)
    except OSError as exc:  # a local file that cannot be read (a bucket's failures are StorageErrors)
        raise PrecomputedTifError(f"{storage.location(key)} is not readable ({exc.strerror or exc})") from None
    if data is None:
        return None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise PrecomputedTifError(f"{storage.location(key)} is not readable Zarr metadata ({exc})") from None
    if not isinstance(value, dict):
        raise PrecomputedTifError(f"{storage.location(key)} is not readable Zarr metadata (not a JSON object)")
    return value


def _group(storage: Storage, group: str) -> tuple[dict | None, str]:
    """(the attributes of the Zarr group at key ``group`` -- ``zarr.json``'s ``attributes``, or
    ``.zattrs`` --, the key of the metadata that said so); None when it is no Zarr group."""
    name = _key(group, "zarr.json")
    meta = _read_json(storage, name)
    if meta is not None:
        attrs = meta.get("attributes") if meta.get("node_type") == "group" else None
        return (attrs if isinstance(attrs, dict) else ({} if meta.get("node_type") == "group" else None)), name
    name = _key(group, ".zattrs")
    attrs = _read_json(storage, name)
    if attrs is None and storage.exists(_key(group, ".zgroup")):
        return {}, name
    return attrs, name


def group_attributes(storage: Storage, group: str = "") -> dict | None:
    """The attributes of the Zarr group at key ``group`` of ``storage`` (``""``: its root),
    None when it is no Zarr group."""
    return _group(storage, group)[0]


def _ngff(attrs: dict) -> dict:
    """The NGFF part of a group's attributes: under ``ome`` (0.5), else the attributes (0.4)."""
    ome = attrs.get("ome")
    return ome if isinstance(ome, dict) else attrs


def is_ome_zarr(directory: str) -> bool:
    """Whether ``directory`` (a local path) is an OME-Zarr image, or bioformats2raw's group of
    images, of another tool: NGFF metadata at its root and no ``info`` of ours."""
    if not os.path.isdir(directory) or os.path.exists(os.path.join(directory, "info")):
        return False
    return root_kind(LocalStorage(directory, confined=False)) == "ome-zarr"


def root_kind(storage: Storage) -> str | None:
    """What the root of ``storage`` (which holds no ``info``) is: ``"ome-zarr"``, an OME-Zarr
    image or bioformats2raw's group of images (NGFF metadata in its root group's attributes,
    or metadata there that cannot be read, which opening it then says); ``"zarr"``, a Zarr
    group or array of either version that is none; None, no Zarr at all."""

    def kind(attrs) -> str:
        ome = _ngff(attrs) if isinstance(attrs, dict) else {}
        return "ome-zarr" if "multiscales" in ome or LAYOUT in ome else "zarr"

    try:
        meta = _read_json(storage, "zarr.json")
        if meta is not None:
            return kind(meta.get("attributes")) if meta.get("node_type") == "group" else "zarr"
        attrs = _read_json(storage, ".zattrs")
    except StorageError:
        raise
    except PrecomputedTifError:
        return "ome-zarr"
    if attrs is not None:
        return kind(attrs)
    return "zarr" if storage.exists(".zgroup") or storage.exists(".zarray") else None


def _series_paths(storage: Storage, ome: dict) -> list[str]:
    """The image groups of a bioformats2raw layout, in order of series."""
    listed = _ngff(group_attributes(storage, "OME") or {}).get("series")
    if isinstance(listed, list) and listed and all(isinstance(p, str) for p in listed):
        return listed
    paths: list[str] = []
    while True:
        attrs = group_attributes(storage, str(len(paths)))
        if attrs is None or "multiscales" not in _ngff(attrs):
            return paths
        paths.append(str(len(paths)))


@dataclass(frozen=True)
class OmeZarrSource:
    """The full-resolution level of one OME-Zarr image (see the module): a :class:`~.Source`.

    ``array`` is the level's path under ``path`` (``/``-separated), ``array_axes`` its axes
    (NGFF letters in the array's order, a subset of t, c, z, y, x with y and x) and
    ``array_shape`` its shape. ``channel`` is the one channel read (None: all), ``timepoint``
    the time point of a ``t`` axis."""

    path: str
    array: str
    array_axes: str
    array_shape: tuple[int, ...]
    stored_dtype: str
    channel: int | None = None
    timepoint: int = 0
    voxel_size: tuple = (None, None, None)
    voxel_size_origin: str = ""
    channel_names: tuple = ()
    channel_colors: tuple = ()
    time_interval: float | None = None
    time_unit: str = ""

    rgb = False
    whole_rows = False

    def _size(self, axis: str) -> int:
        return self.array_shape[self.array_axes.index(axis)] if axis in self.array_axes else 1

    @property
    def files(self) -> tuple[str, ...]:
        return (self.path,)

    @property
    def location(self) -> str:
        """The level's directory (or its URL, in a bucket), as messages name it."""
        return _storage(self.path).location(self.array)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self._size("z"), self._size("y"), self._size("x"))

    @property
    def n_planes(self) -> int:
        return self.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return supported_dtype(self.stored_dtype, False) if np.dtype(self.stored_dtype).kind == "f" \
            else np.dtype(self.stored_dtype)

    @property
    def n_channels(self) -> int:
        return 1 if self.channel is not None else self._size("c")

    @property
    def axes(self) -> str:
        return "czyx" if self.n_channels > 1 else "zyx"

    @property
    def n_timepoints(self) -> int:
        return self._size("t")

    def subset(self, z0: int, z1: int) -> OmeZarrSource:
        return self

    def at_timepoint(self, t: int) -> OmeZarrSource:
        n = self.n_timepoints
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < n:
            held = f"has {n} time points (0 to {n - 1})" if n > 1 else "is not a time series"
            raise PrecomputedTifError(f"{setting('timepoint', t)} is out of range: {self.path} {held}")
        return self if t == self.timepoint else dataclasses.replace(self, timepoint=int(t))

    def read(self, box: Box) -> np.ndarray:
        """Voxels of ``box``: (z, y, x), or (c, z, y, x) with channels."""
        index: list = []
        for a in self.array_axes:
            index.append({"t": self.timepoint, "c": self.channel if self.channel is not None else slice(None),
                          "z": slice(box.z0, box.z1), "y": slice(box.y0, box.y1),
                          "x": slice(box.x0, box.x1)}[a])
        try:
            data = np.asarray(_array(self.path, self.array)[tuple(index)])
        except PrecomputedTifError:
            raise
        except Exception as exc:  # zarr-python and its codecs raise many kinds
            raise DamagedData(f"cannot read {self.location}: {exc}") from None
        kept = [a for a in self.array_axes if a in "zyx" or (a == "c" and self.channel is None)]
        if "z" not in kept:
            data, kept = data[..., np.newaxis, :, :], [*kept[:-2], "z", *kept[-2:]]
        if "c" in kept and self.n_channels == 1:
            data = data[0]
        return np.ascontiguousarray(data, self.dtype)


# A worker opens each array once and keeps it; the source itself stays small to pickle.
_arrays: dict = {}


def _array(path: str, array: str):
    """The zarr-python array at ``array`` (a ``/``-separated key) of the image at ``path``,
    read through this project's storage (:mod:`~precomputed_tif.storage.zarr_store`): a
    bucket's with its client, environment and one-line errors, and in either place a shard
    whose index points past its end an error rather than chunks filled in (zarr-python's own
    store gives it fill values)."""
    opened = _arrays.get((path, array))
    if opened is None:
        import zarr

        try:
            from ..storage.zarr_store import StorageZarrStore
        except ImportError:  # zarr-python 2 has no store interface to build on
            if is_bucket_url(path):
                raise PrecomputedTifError(f"{path}: reading an OME-Zarr from a bucket needs zarr-python 3 (Python "
                                          "3.11 or newer): pip install 'zarr>=3'") from None
            opened = zarr.open_array(store=os.path.join(path, *array.split("/")), mode="r")
        else:
            opened = zarr.open_array(store=StorageZarrStore(_storage(path)), path=array, mode="r")
        _arrays[(path, array)] = opened
    return opened


def open_ome_zarr(path: str, series: int | None = None, channel: int | None = None,
                  timepoint: int | None = None, every_timepoint: bool = False,
                  segmentation: bool = False) -> OmeZarrSource:
    """The OME-Zarr image at ``path`` (a local directory, or the URL of a prefix in a bucket; see
    the module), at time point ``timepoint`` (a time series needs one unless
    ``every_timepoint``: then time point 0), with all channels or ``channel``; ``series``
    picks one image of a bioformats2raw group.
    Any metadata it cannot use, or a data type a ``segmentation`` (or an image) cannot have,
    is a user error naming the file."""
    path = path if is_bucket_url(path) else os.path.abspath(path)
    images = image_paths(path)
    if images == [""]:
        image = ""
        if series not in (None, 0):
            raise PrecomputedTifError(f"{setting('series', series)} is out of range: {path} is one image "
                                      "(series 0)")
    else:
        if series is None and len(images) > 1:
            listed = "; ".join(f"{i}: {_describe(path, p)}" for i, p in enumerate(images))
            raise PrecomputedTifError(f"{path} holds {len(images)} images ({listed}); pick one with "
                                      f"{either('series=N', '--series N')}")
        if series is not None and not 0 <= series < len(images):
            raise PrecomputedTifError(f"{setting('series', series)} is out of range: {path} holds "
                                      f"{len(images)} images (0 to {len(images) - 1})")
        image = images[series or 0]
    source = _open_image(path, image, channel, timepoint, every_timepoint)
    supported_dtype(source.stored_dtype, segmentation)
    return source


def image_paths(path: str) -> list[str]:
    """The images of the OME-Zarr at ``path`` (a local directory or a bucket's URL), as keys
    below it in order of series: ``[""]`` for one image at the root, the series of a
    bioformats2raw group (a user error when it holds none)."""
    path = path if is_bucket_url(path) else os.path.abspath(path)
    storage = _storage(path)
    ome = _ngff(group_attributes(storage) or {})
    if "multiscales" in ome:
        return [""]
    images = [p.strip("/") for p in _series_paths(storage, ome)]
    if not images:
        raise PrecomputedTifError(f"{path} is a bioformats2raw group with no image in it")
    return images


def _describe(path: str, image: str) -> str:
    """A few words on an image of a group, for the list of series: its name and size."""
    try:
        src = _open_image(path, image, None, 0, True)
    except PrecomputedTifError:
        return f"{image} (unreadable)"
    z, y, x = src.shape
    more = "".join(f", {n} {w}" for n, w in ((src.n_channels, "channels"), (src.n_timepoints, "time points")) if n > 1)
    return f"{image} {x}x{y}x{z}{more}"


def _open_image(path: str, image: str, channel, timepoint, every_timepoint: bool) -> OmeZarrSource:
    storage = _storage(path)
    attrs, meta_key = _group(storage, image)
    meta_name = storage.location(meta_key)
    ome = _ngff(attrs or {})
    multiscales = ome.get("multiscales")
    try:
        ms = multiscales[0]  # type: ignore[index]
        axes = [a if isinstance(a, str) else a["name"] for a in ms["axes"]]
        units = [None if isinstance(a, str) else a.get("unit") for a in ms["axes"]]
        dataset = ms["datasets"][0]
        array_path = str(dataset["path"]).strip("/")
        scale = _scale_of(dataset.get("coordinateTransformations"), len(axes))
        overall = _scale_of(ms.get("coordinateTransformations"), len(axes))
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise PrecomputedTifError(f"{meta_name}: not an NGFF multiscale image it can read ({exc!r})") from None
    axes_text = "".join(a.lower() for a in axes)
    if len(set(axes_text)) != len(axes_text) or any(a not in AXES for a in axes_text) or \
            not axes_text.endswith("yx") or axes_text != "".join(a for a in AXES if a in axes_text):
        raise PrecomputedTifError(f"{meta_name}: axes {axes} are not ones it reads (t, c, z, y, x in that order, "
                                  "with y and x)")
    shape, dtype = _array_header(storage, _key(image, array_path))
    if len(shape) != len(axes_text):
        raise PrecomputedTifError(f"{meta_name}: {len(axes_text)} axes, but the array {array_path} has "
                                  f"{len(shape)} dimensions")
    sizes = dict(zip(axes_text, shape))
    steps = [s * o for s, o in zip(scale, overall)]
    voxel, unitless = _voxel_size(axes_text, units, steps, meta_name)
    origin = f"OME-Zarr metadata of {path}" + (f" (image {image})" if image else "")
    if unitless:
        # NGFF says a unit SHOULD be given: without one the numbers are read as micrometres
        # (what ome-zarr-py and ngff-zarr mean when no unit is given), and the provenance says so.
        origin += f", no unit given for {', '.join(unitless)}: taken as µm"
    n_t = sizes.get("t", 1)
    if n_t > 1 and timepoint is None and not every_timepoint:
        from .tiff import series_choices

        raise PrecomputedTifError(f"{path} is a time series of {n_t} time points; {series_choices()}, or pick "
                                  f"one with {either('timepoint=N', '--timepoint N')} (0 to {n_t - 1})")
    t = int(timepoint or 0)
    if not 0 <= t < n_t:
        raise PrecomputedTifError(f"{setting('timepoint', t)} is out of range: {path} "
                                  + (f"has {n_t} time points (0 to {n_t - 1})" if n_t > 1 else "is not a time series"))
    n_c = sizes.get("c", 1)
    if channel is not None and not 0 <= channel < n_c:
        raise PrecomputedTifError(f"{setting('channel', channel)} is out of range: {path} has {n_c} "
                                  f"channel{'s' if n_c > 1 else ''} (0 to {n_c - 1})")
    names, colors = _omero_channels(ome.get("omero") or (attrs or {}).get("omero"), n_c)
    if channel is not None:
        names, colors = names[channel:channel + 1], colors[channel:channel + 1]
    interval, time_unit = None, ""
    if "t" in axes_text:
        i = axes_text.index("t")
        time_unit = tiff_metadata.time_unit_name(units[i])
        interval = steps[i] if time_unit and _positive(steps[i]) else None
        time_unit = time_unit if interval is not None else ""
    level = f"{image}/{array_path}" if image else array_path
    return OmeZarrSource(path, level, axes_text, tuple(shape), np.dtype(dtype).name, channel, t,
                         voxel, origin if any(v is not None for v in voxel) else "",
                         names, colors, interval, time_unit)


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _voxel_size(axes: str, units: list, steps: list[float], where: str) -> tuple[tuple, list[str]]:
    """(x, y, z) µm of the spatial ``axes`` (their ``units`` and per-axis ``steps``), None for
    an axis the image lacks or whose unit is no length (a warning naming the unit and
    ``where``, so that the default size is never silently taken for the file's); and the axes
    (of x, y, z) that have no unit, whose steps are taken as micrometres."""
    voxel: list[float | None] = []
    unitless = []
    for a in "xyz":
        if a not in axes:
            voxel.append(None)
            continue
        i = axes.index(a)
        unit = units[i]
        factor = 1.0 if unit is None else tiff_metadata.unit_to_um(unit, ngff=True)
        if factor is None:
            log.warning("%s: axis %s has the unit %r, which is not a unit of length; its voxel size is not "
                        "taken from the file (give --voxel-size X,Y,Z)", where, a, unit)
        voxel.append(steps[i] * factor if factor is not None and _positive(steps[i]) else None)
        if unit is None and voxel[-1] is not None:
            unitless.append(a)
    return (voxel[0], voxel[1], voxel[2]), unitless


def _scale_of(transforms, n: int) -> list[float]:
    """The ``scale`` of a list of NGFF coordinate transformations (1 per axis when it has none)."""
    for tr in transforms or []:
        if isinstance(tr, dict) and tr.get("type") == "scale":
            values = [float(v) for v in tr["scale"]]
            if len(values) != n:
                raise ValueError(f"a scale of {len(values)} values for {n} axes")
            return values
    return [1.0] * n


def _array_header(storage: Storage, array: str) -> tuple[list[int], str]:
    """(shape, dtype name) of the Zarr array at key ``array`` (v3 ``zarr.json`` or v2 ``.zarray``)."""
    directory = storage.location(array)
    meta = _read_json(storage, _key(array, "zarr.json"))
    try:
        if meta is not None:
            if meta.get("node_type") != "array":
                raise ValueError("not an array")
            return [int(n) for n in meta["shape"]], np.dtype(meta["data_type"]).name
        meta = _read_json(storage, _key(array, ".zarray"))
        if meta is None:
            raise PrecomputedTifError(f"{directory} is not a Zarr array (no zarr.json or .zarray): the image's "
                                      "full-resolution level is missing")
        return [int(n) for n in meta["shape"]], np.dtype(meta["dtype"]).name
    except PrecomputedTifError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise PrecomputedTifError(f"{directory}: not Zarr array metadata it can read ({exc})") from None


def _omero_channels(omero, n: int) -> tuple[tuple, tuple]:
    """Per channel the ``omero`` label and colour (``#rrggbb``), None where it gives none; empty
    when it describes no channels, or not ``n`` of them."""
    entries = omero.get("channels") if isinstance(omero, dict) else None
    if not isinstance(entries, list) or len(entries) != n:
        return (), ()
    names, colors = [], []
    for e in entries:
        e = e if isinstance(e, dict) else {}
        label = e.get("label")
        names.append(label if isinstance(label, str) and label.strip() else None)
        color = e.get("color")
        ok = isinstance(color, str) and len(color) == 6 and all(c in "0123456789abcdefABCDEF" for c in color)
        colors.append(f"#{str(color).lower()}" if ok else None)
    return tuple(names), tuple(colors)

