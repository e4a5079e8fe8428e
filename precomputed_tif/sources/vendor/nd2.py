"""Nikon NIS-Elements ``.nd2`` files, read with the ``nd2`` package (extra ``nd2``).

Axes as NIS-Elements records its loops: ``Z`` (z stack) is z, ``C`` channels,
``T`` time points, ``P`` (XY positions, multi-point) are the series ``--series``
picks; colour (RGB) cameras' samples are three channels. Any other loop is
refused, naming it. A frame of the file is one (t, position, z) plane of all
channels; reading a box reads the frames of its planes only (uncompressed
frames are memory-mapped, so only their rows are touched).

Voxel size: x and y from the image calibration (µm per pixel), z the step of
the z stack loop -- what ``nd2`` and Bio-Formats report; an image without a z
loop has no z size, and an image NIS-Elements marks uncalibrated (``bCalibrated``
false: shown in pixels) no x and y size. Channel names
and colours are those NIS-Elements shows (``Channel.name``, ``colorRGBA``).
The interval between time points is the time loop's: the average period
NIS-Elements measured while acquiring, else the period it was set to, in
seconds (as ``nd2`` writes it into its own OME-Zarr).

A damaged file is never read as zeros. The ``nd2`` package returns a frame
of zeros, without an error, when the file's index of frames has no entry
for it or points past the file's end; and it reads an uncompressed frame
at a fixed distance from where the index says its chunk starts, without
looking at the chunk. So the frames of the series opened are looked up in
the index when it is opened (no reading), and each frame's chunk header
(magic number, name, lengths; the 4 KiB page just before its pixels) is
checked once per process before its pixels are first read. A frame that
fails either, or that ``nd2`` cannot decode, is one error naming its z, time
point and position. Pixels overwritten inside an intact chunk cannot be
told from an image's own: the file records no checksum of them.
"""

from __future__ import annotations

import math
import os
import struct
from typing import Any

import numpy as np

from ...errors import PrecomputedTifError
from ...geometry import Box
from .base import ArraySource, Image, SeriesInfo, dims_text, open_series, require

NOUN = "positions"

# A chunk of an ND2 file (version 2 and later): magic number, length of its name, length of its
# data (uint32, uint32, uint64, little-endian), the name ("ImageDataSeq|<frame>!" for a frame,
# zero-padded), then the data: for a frame, its acquisition time (a float64) and its pixels, raw
# or zlib-compressed.
_CHUNK = struct.Struct("<IIQ")
_CHUNK_MAGIC = 0x0ABECEDA
_TIME_STAMP = 8


class _Handle:
    """An open ND2 file, where each (t, p, z) frame is in it, and which frames' chunks were
    found whole in this process."""

    def __init__(self, path: str):
        nd2 = require("nd2", "nd2", path, "ND2")
        self.path = path
        try:
            self.file = nd2.ND2File(path)
        except Exception as exc:
            raise PrecomputedTifError(f"{path} is not a readable ND2 file ({exc})") from None
        try:
            # Read lazily by nd2 from the chunk map at the file's end: a truncated file fails here.
            self.frames = {(d.get("T", 0), d.get("P", 0), d.get("Z", 0)): i
                           for i, d in enumerate(self.file.loop_indices)}
            # The chunk map as nd2 parsed it (chunk name -> offset of its header, length of its
            # data); a version 1 (JPEG 2000) file has none: nd2 reads its frames through checked chunks.
            self.index: Any = None if self.file.is_legacy else getattr(getattr(self.file, "_rdr", None), "chunkmap", ())
            a = self.file.attributes
            self.compressed = bool(a.compressionType)
            self.frame_bytes = a.heightPx * (a.widthBytes or a.widthPx * a.componentCount
                                             * (a.bitsPerComponentInMemory // 8))
            self.size = os.path.getsize(path)  # the handle is opened again if the size changes
        except Exception:
            self.file.close()
            raise damaged(path) from None
        if self.index is not None and not isinstance(self.index, dict):
            self.file.close()
            raise PrecomputedTifError(f"{path}: the installed nd2 package does not give the file's index of frames, "
                                      f"needed to check them (nd2 {getattr(nd2, '__version__', '?')})")
        self.raw = open(path, "rb")  # noqa: SIM115 -- closed with the handle
        self.whole: set[int] = set()

    def close(self) -> None:
        self.raw.close()
        self.file.close()

    def check_frames(self, position: int) -> None:
        """Every frame of ``position`` is in the file's index of frames and its chunk header is
        there, whole, within the file (one small read per frame, before anything is written)."""
        for (t, p, z), i in self.frames.items():
            if p == position and i not in self.whole:
                why = self._chunk_whole(i)
                if why:
                    raise unreadable(self.path, z, t, p, why)
                self.whole.add(i)

    def _listed(self, i: int) -> str:
        """Why the index of frames does not place frame ``i`` within the file ("" when it does)."""
        if self.index is None:
            return ""
        entry = self.index.get(_frame_name(i))
        if entry is None:
            return "the file's index of frames has no entry for it"
        offset, length = entry
        if offset < 0 or length < _TIME_STAMP or offset + _CHUNK.size + length > self.size:
            return f"the file's index puts it at bytes {offset} to {offset + _CHUNK.size + length} of {self.size}"
        if not self.compressed and length < _TIME_STAMP + self.frame_bytes:
            return f"its chunk holds {length - _TIME_STAMP} bytes, not the {self.frame_bytes} of a frame"
        return ""

    def _chunk_whole(self, i: int) -> str:
        """Why frame ``i``'s chunk is not what the index says and where nd2 reads it ("" when it
        is): its header read once, from the page just before the pixels."""
        why = self._listed(i)
        if why or self.index is None:
            return why
        name = _frame_name(i)
        offset, length = self.index[name]
        self.raw.seek(offset)
        head = self.raw.read(_CHUNK.size + len(name))
        if len(head) < _CHUNK.size + len(name):
            return f"the file ends inside its chunk header at byte {offset}"
        magic, name_length, data_length = _CHUNK.unpack_from(head)
        if magic != _CHUNK_MAGIC or name_length < len(name) or head[_CHUNK.size:] != name:
            return f"no chunk header of it at byte {offset}, where the file's index puts it"
        end = offset + _CHUNK.size + name_length + data_length
        if data_length != length or end > self.size:
            return f"its chunk header gives {data_length} bytes to byte {end}, the index {length}, the file {self.size}"
        # nd2 reads raw pixels at a fixed distance from the chunk's start: they must be there.
        where = _pixels_at(self.file, i)
        if not self.compressed and where is not None and where != offset + _CHUNK.size + name_length + _TIME_STAMP:
            return f"its pixels are not at byte {where}, where the reader takes them"
        return ""

    def frame(self, t: int, p: int, z: int) -> np.ndarray:
        """The (t, p, z) frame as ``nd2`` gives it: (channels, y, x), (y, x) or (y, x, samples)."""
        i = self.frames.get((t, p, z))
        if i is None:
            raise unreadable(self.path, z, t, p, "the file's loops list no such frame")
        if i not in self.whole:  # checked again in each process: the file may have changed since
            why = self._chunk_whole(i)
            if why:
                raise unreadable(self.path, z, t, p, why)
            self.whole.add(i)
        try:
            return self.file.read_frame(i)
        except Exception as exc:  # a compressed frame that does not decode, a legacy file's chunk
            raise unreadable(self.path, z, t, p, f"{type(exc).__name__}: {exc}") from None


def _frame_name(i: int) -> bytes:
    return b"ImageDataSeq|%d!" % i


def _pixels_at(f, i: int) -> int | None:
    """Where nd2 reads frame ``i``'s raw pixels; None when this nd2 does not say."""
    offsets = getattr(f._rdr, "_frame_offsets", None)
    return offsets.get(i) if isinstance(offsets, dict) else None


def unreadable(path: str, z: int, t: int, p: int, why: str) -> PrecomputedTifError:
    """The one line for a frame of an ND2 file that cannot be read."""
    return PrecomputedTifError(f"{path}: the frame at z {z}, time point {t}, position {p} cannot be read ({why}); "
                               "the file is damaged or truncated")


class Nd2Source(ArraySource):
    label = "ND2"

    def _open(self) -> Any:
        return _Handle(self.path)

    def _read(self, h: Any, box: Box) -> np.ndarray:
        out = np.empty((self.n_channels, *box.shape), self.image.dtype)
        p = self.image.key[0]
        rgb = self.image.rgb
        for z in range(box.z0, box.z1):
            frame = h.frame(self.timepoint, p, z)
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
        source = open_series(Nd2Source, path, NOUN, listing, image_of, series, channel, timepoint, segmentation)
        h.check_frames(source.image.key[0])
        return source
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
    x_calibrated, y_calibrated = _xy_calibrated(f)
    calibrated = (x_calibrated, y_calibrated, "Z" in sizes and _z_calibrated(f))
    # None for an axis without a (positive) calibration.
    voxel = tuple(float(v) or None if c else None for v, c in zip((vx.x, vx.y, vx.z), calibrated))
    if rgb:
        from ... import channels

        channel_names, colors = list(channels.RGB_NAMES[:n_c]), list(channels.RGB_COLORS[:n_c])
    else:
        channel_names, colors = _channels(f, n_c)

    interval, time_unit = _time_interval(f) if n_t > 1 else (None, "")

    def image_of(i: int) -> Image:
        return Image((n_z, sizes["Y"], sizes["X"]), np.dtype(f.dtype).name, n_c, n_t, voxel,
                     tuple(channel_names), tuple(colors), rgb, (listing[i].index,), interval, time_unit)
    return listing, image_of


def _time_interval(f) -> tuple[float | None, str]:
    """Seconds between time points, and NGFF's name of that unit: the time loop's period as
    NIS-Elements measured it while acquiring (``periodDiff.avg``), else the period it was set to
    (``periodMs``; 0 is "as fast as possible", no interval) -- what nd2 writes into its own
    OME-Zarr. A loop of several phases (``NETimeLoop``) has one interval only when its phases'
    periods agree within 1%. (None, "") when there is none."""
    for loop in f.experiment or ():
        kind = getattr(loop, "type", "")
        if kind == "TimeLoop":
            phases = [loop.parameters]
        elif kind == "NETimeLoop":
            phases = list(getattr(loop.parameters, "periods", None) or ())
        else:
            continue
        ms = [_period_ms(phase) for phase in phases]
        first = ms[0] if ms else None
        if first is None or any(m is None or not math.isclose(m, first, rel_tol=0.01) for m in ms):
            return None, ""
        return first / 1000, "second"
    return None, ""


def _period_ms(phase) -> float | None:
    """A time loop phase's period in ms: the average NIS-Elements measured, else the one set."""
    diff = getattr(phase, "periodDiff", None)
    value: Any
    for value in (getattr(diff, "avg", None), getattr(phase, "periodMs", None)):
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v) and v > 0:
            return v
    return None


def _xy_calibrated(f) -> tuple[bool, bool]:
    """Whether x and y have a calibration (NIS-Elements' ``bCalibrated``): an image taken without
    one keeps a number of µm per pixel in its metadata that NIS-Elements does not use, showing
    pixels instead; so does ``nd2``, placing it on the stage only when calibrated."""
    try:
        calibrated = f.metadata.channels[0].volume.axesCalibrated
        return bool(calibrated[0]), bool(calibrated[1])
    except (AttributeError, IndexError, TypeError):
        return True, True  # no per-channel metadata to say otherwise: the calibration nd2 gives


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
