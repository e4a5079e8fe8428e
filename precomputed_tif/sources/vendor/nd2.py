"""Nikon NIS-Elements ``.nd2`` files, read with the ``nd2`` package (extra ``nd2``).

Axes as NIS-Elements records its loops: ``Z`` (z stack) is z, ``C`` channels,
``T`` time points, ``P`` (XY positions, multi-point) are the series ``--series``
picks; colour (RGB) cameras' samples are three channels. Any other loop is
refused, naming it. A frame of the file is one (t, position, z) plane of all
channels; reading a box reads the frames of its planes only (uncompressed
frames are memory-mapped, so only their rows are touched).

Voxel size: x and y from the image calibration (µm per pixel), z the step of
the z stack loop -- what ``nd2`` and Bio-Formats report; an image without a z
loop has no z size (NIS-Elements marks that axis uncalibrated). Channel names
and colours are those NIS-Elements shows (``Channel.name``, ``colorRGBA``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import PrecomputedTifError
from ...geometry import Box
from .base import ArraySource, Image, SeriesInfo, dims_text, open_series, require

NOUN = "positions"


class _Handle:
    """An open ND2 file and where each (t, p, z) frame is in it."""

    def __init__(self, path: str):
        nd2 = require("nd2", "nd2", path, "ND2")
        try:
            self.file = nd2.ND2File(path)
        except Exception as exc:
            raise PrecomputedTifError(f"{path} is not a readable ND2 file ({exc})") from None
        try:
            # Read lazily by nd2 from the chunk map at the file's end: a truncated file fails here.
            self.frames = {(d.get("T", 0), d.get("P", 0), d.get("Z", 0)): i
                           for i, d in enumerate(self.file.loop_indices)}
        except Exception:
            self.file.close()
            raise damaged(path) from None

    def close(self) -> None:
        self.file.close()


class Nd2Source(ArraySource):
    label = "ND2"

    def _open(self) -> Any:
        return _Handle(self.path)

    def _read(self, h: Any, box: Box) -> np.ndarray:
        out = np.empty((self.n_channels, *box.shape), self.image.dtype)
        p = self.image.key[0]
        rgb = self.image.rgb
        for z in range(box.z0, box.z1):
            frame = h.file.read_frame(h.frames[(self.timepoint, p, z)])
            if rgb:  # (y, x, samples)
                frame = np.moveaxis(frame, -1, 0)
            elif frame.ndim == 2:  # one channel
                frame = frame[None]
            for i, c in enumerate(self.channels):
                out[i, z - box.z0] = frame[c, box.y0:box.y1, box.x0:box.x1]
        return out


def open_nd2(path: str, series: int | None, channel: int | None, timepoint: int | None,
             segmentation: bool) -> Nd2Source:
    h = _Handle(path)
    try:
        listing, image_of = _described(path, h.file)
        return open_series(Nd2Source, path, NOUN, listing, image_of, series, channel, timepoint, segmentation)
    finally:
        h.close()


def list_series(path: str) -> list[SeriesInfo]:
    h = _Handle(path)
    try:
        return _described(path, h.file)[0]
    finally:
        h.close()


def damaged(path: str) -> PrecomputedTifError:
    """The one line for an ND2 file whose frame index or metadata cannot be parsed."""
    return PrecomputedTifError(f"{path} is not a readable ND2 file: its index of frames or its metadata cannot "
                               "be parsed; the file may be damaged or truncated")


def _described(path: str, f) -> tuple[list[SeriesInfo], Any]:
    """:func:`_describe`, with the nd2 package's own failures on a damaged file made one line."""
    try:
        return _describe(path, f)
    except PrecomputedTifError:
        raise
    except Exception:
        raise damaged(path) from None


def _describe(path: str, f) -> tuple[list[SeriesInfo], Any]:
    sizes = dict(f.sizes)
    other = [a for a in sizes if a not in "TPZCYXS"]
    if other:
        raise PrecomputedTifError(
            f"{path} has a loop {other[0]!r} of {sizes[other[0]]} (axes {dims_text(sizes.items())}) that is "
            "neither z, channel, time nor position; export it from NIS-Elements as z stacks")
    n_p, n_t, n_z = sizes.get("P", 1), sizes.get("T", 1), sizes.get("Z", 1)
    rgb = bool(f.is_rgb)
    n_c = sizes.get("S", 3) if rgb else sizes.get("C", 1)
    if rgb and sizes.get("C", 1) > 1:
        raise PrecomputedTifError(f"{path} has {sizes['C']} channels of colour (RGB) images; not supported")
    names = _position_names(f, n_p)
    per_position = [(a, n) for a, n in sizes.items() if a != "P"]
    listing = [SeriesInfo(p, names[p], dims_text(per_position)) for p in range(n_p)]
    vx = f.voxel_size()
    calibrated = _z_calibrated(f)
    voxel = (float(vx.x) or None, float(vx.y) or None, float(vx.z) if "Z" in sizes and calibrated else None)
    if rgb:
        from ... import channels

        channel_names, colors = list(channels.RGB_NAMES[:n_c]), list(channels.RGB_COLORS[:n_c])
    else:
        channel_names, colors = _channels(f, n_c)

    def image_of(i: int) -> Image:
        return Image((n_z, sizes["Y"], sizes["X"]), np.dtype(f.dtype).name, n_c, n_t, voxel,
                     tuple(channel_names), tuple(colors), rgb, (listing[i].index,))
    return listing, image_of


def _z_calibrated(f) -> bool:
    """Whether a z step is recorded: the z stack loop's step (NIS-Elements leaves the z axis
    uncalibrated for images without one)."""
    for loop in f.experiment or ():
        if getattr(loop, "type", "") == "ZStackLoop":
            return True
    try:
        return bool(f.metadata.channels[0].volume.axesCalibrated[2])
    except (AttributeError, IndexError, TypeError):
        return False


def _channels(f, n_c: int) -> tuple[list, list]:
    from ...channels import from_rgb

    names: list = [None] * n_c
    colors: list = [None] * n_c
    for i, ch in enumerate((getattr(f.metadata, "channels", None) or ())[:n_c]):
        names[i] = getattr(ch.channel, "name", None) or None
        # NIS-Elements keeps a channel's colour as 0x00BBGGRR.
        v = getattr(ch.channel, "colorRGB", None)
        if v is None:
            v = _color_int(ch.channel)
        if isinstance(v, (int, np.integer)):
            v = int(v)
            colors[i] = from_rgb(v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF)
    return names, colors


def _color_int(channel) -> int | None:
    color = getattr(channel, "color", None)
    for method in ("as_abgr_u4",):
        fn = getattr(color, method, None)
        if callable(fn):
            return int(fn())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        v = getattr(channel, "colorRGBA", None)
    return int(v) if isinstance(v, (int, np.integer)) else None


def _position_names(f, n_p: int) -> list[str]:
    names = [""] * n_p
    for loop in f.experiment or ():
        if getattr(loop, "type", "") == "XYPosLoop":
            for i, point in enumerate(getattr(loop.parameters, "points", ())[:n_p]):
                names[i] = getattr(point, "name", "") or ""
    return names
