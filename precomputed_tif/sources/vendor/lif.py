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

Voxels are read straight from the file, where liffile says an image's data
is: each region with one ``pread`` per run of contiguous bytes (whole rows when
the region's are narrow), never through a memory map -- a map's pages count in
the process' memory as they are touched, so memory would grow with the image
(and a map of a file cut short under it kills the process). Memory holds the
region and one run: flat however large the image. Colour (RGB) images are stored
blue first when their channels say so (``ChannelTag`` 3 then 2); their samples
are put in red, green, blue order as each region is read, exactly as liffile's
own ``asarray`` orders them (it reverses the samples of three-sample images so
tagged, whatever their bit depth), without touching the rest of the image.

A damaged file is refused in one line saying what is wrong, before anything is
written: a file cut short (its header, its description of the images, or an
image's data ending past the end of the file -- checked from the data blocks'
offsets and sizes, without reading them), a data block missing or of another size
than its image needs, an image description that cannot be read. A file saved again while it
is being converted (its images' data moved) is one line asking to start again, never the bytes
now where the data was: each process opening the file checks that the image's data block is
still where it was described.
"""

from __future__ import annotations

import math
import os
import struct
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from ...errors import PrecomputedTifError
from ...geometry import Box
from .base import ArraySource, DamagedFile, Image, SeriesInfo, dims_text, open_series, require, um

NOUN = "images"
_SPECTRAL = {"λ": "λ", "Λ": "Λ"}
_LUT = {"red": "#ff0000", "green": "#00ff00", "blue": "#0000ff", "cyan": "#00ffff", "magenta": "#ff00ff",
        "yellow": "#ffff00", "gray": "#ffffff", "grey": "#ffffff", "white": "#ffffff"}
_HEADER = struct.Struct("<IIBI")  # 0x70, the header's size, 0x2A, the XML's length in UTF-16 characters
# A LIF data block's header: 0x70, its size, 0x2A, the data's size (4 bytes in version 1 files), 0x2A,
# the block id's length in UTF-16 characters.
_BLOCK = {1: struct.Struct("<IIBIBI"), 2: struct.Struct("<IIBQBI")}
_LOF_BLOCK = struct.Struct("<BQ")  # a LOF file's one data block: 0x2A, its size in bytes
_LOF_MARK = "LMS_Object_File".encode("utf-16-le")


def _short(n: int | str) -> str:
    """``1 byte``, ``12 bytes``."""
    return f"{n} byte{'' if n == 1 else 's'}"


def _structure_problem(path: str, size: int) -> str | None:
    """What is wrong with the file's own structure, in words following its name (None: nothing
    found): not a LIF file at all, an empty file,
    a header or description of the images (XML) ending past the file's end; in a single-image
    ``.lof`` file also its data block (which comes before its XML). Reads a few dozen bytes."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if not head:
            return "cannot be read: the file is empty"
        if len(head) < _HEADER.size:
            return f"cannot be read: the file is truncated: it ends within its {_HEADER.size}-byte header"
        mark, _, mark2, n_chars = _HEADER.unpack(head)
        if mark != 0x70 or mark2 != 0x2A:
            return "is not a Leica LIF or LOF file (it does not begin as one)"
        xml_end = _HEADER.size + 2 * n_chars
        if xml_end > size:
            return (f"cannot be read: the file is truncated: its description of the images (XML) needs "
                    f"{_short(xml_end - size)} "
                    "beyond its end")
        if 2 * n_chars != len(_LOF_MARK) or f.read(len(_LOF_MARK)) != _LOF_MARK:
            return None
        f.seek(xml_end + 10)  # a LOF file: version marks, then its data, then its XML
        block = f.read(_LOF_BLOCK.size)
        if len(block) < _LOF_BLOCK.size:
            return "cannot be read: the file is truncated: it ends before its image data"
        data_end = f.tell() + _LOF_BLOCK.unpack(block)[1]
        if data_end > size:
            return (f"cannot be read: the file is truncated: its image data needs {_short(data_end - size)} "
                    "beyond its end")
        f.seek(data_end)
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return "cannot be read: the file is truncated: it ends before its description of the image (XML)"
        xml_end = data_end + _HEADER.size + 2 * _HEADER.unpack(head)[3]
        if xml_end > size:
            return (f"cannot be read: the file is truncated: its description of the image (XML) needs "
                    f"{_short(xml_end - size)} "
                    "beyond its end")
    return None


class _Handle:
    """The file opened with liffile (in the process that describes it, never in workers)."""

    def __init__(self, path: str):
        liffile = require("liffile", "lif", path, "LIF")
        try:
            self.size = os.path.getsize(path)
            problem = _structure_problem(path, self.size)
        except OSError as exc:
            raise PrecomputedTifError(f"{path} cannot be read ({exc.strerror or exc})") from None
        if problem:
            raise DamagedFile(f"{path} {problem}")
        try:
            self.file = liffile.LifFile(path)
            self.images = list(self.file.images)
            self.lof = self.file.type == liffile.LifFileType.LOF
        except Exception as exc:
            raise DamagedFile(f"{path} is not a readable Leica LIF file: its description of the images (XML) "
                              f"is damaged or not LIF ({exc})") from None
        # Where the data blocks liffile found end (they follow the XML): one missing was cut off or damaged.
        self.blocks_end = max((b.offset + b.size for b in self.file.memory_blocks.values() if b.offset > 0),
                              default=_xml_end(path))

    def close(self) -> None:
        self.file.close()


class LifSource(ArraySource):
    label = "LIF"

    def _open(self) -> Any:
        """The file, open (kept per process by handle(), closed at exit), once it is known to still
        hold the image's data where it was described: a file saved again since (LAS X rewrites
        the whole file, its data blocks moved by a longer description of the images) would
        otherwise give whatever bytes now lie there."""
        index, _, _, offset, stored, dtype, _, head = self.image.key
        f = open(self.path, "rb")  # noqa: SIM115 -- returned open, closed by handle()
        try:
            size = os.fstat(f.fileno()).st_size
            end = offset + math.prod(stored) * np.dtype(dtype).itemsize
            if end > size:
                raise DamagedFile(_truncated(self.path, index, self.series_name, end - size))
            if os.pread(f.fileno(), len(head), offset - len(head)) != head:
                raise PrecomputedTifError(f"{self.path} changed while it was being read (the data of image {index} "
                                          f"{self.series_name!r} is no longer where it was); start again")
        except BaseException:
            f.close()
            raise
        return f

    def _read(self, f: Any, box: Box) -> np.ndarray:
        """(channels, z, y, x) of ``box``, read with :func:`_read_block` (only the bytes of the
        region's rows: memory bounded by the box, whatever the image's size)."""
        index, dims, channel_axis, offset, stored, dtype, bgr, _ = self.image.key
        n_stored = stored[dims.index(channel_axis)] if channel_axis in dims else 1
        # Colour stored blue first: liffile reverses the samples (its ``data[..., ::-1]``).
        wanted = [n_stored - 1 - c if bgr else c for c in self.channels]
        ranges: list[tuple[int, int]] = []
        kept: list[str] = []
        for a in dims:
            if a == "T":
                ranges.append((self.timepoint, self.timepoint + 1))
            elif a == channel_axis:
                ranges.append((min(wanted), max(wanted) + 1))
                kept.append("C")
            elif a in "ZYX":
                ranges.append({"Z": (box.z0, box.z1), "Y": (box.y0, box.y1), "X": (box.x0, box.x1)}[a])
                kept.append(a)
            else:  # an axis of length 1
                ranges.append((0, 1))
        part = _read_block(f.fileno(), offset, stored, np.dtype(dtype), ranges)
        if part is None:
            size = os.fstat(f.fileno()).st_size
            raise DamagedFile(_truncated(self.path, index, self.series_name,
                                         offset + math.prod(stored) * np.dtype(dtype).itemsize - size))
        part = part.reshape([hi - lo for (lo, hi), a in zip(ranges, dims) if a in "ZYX" or a == channel_axis])
        if "C" in kept:
            part = np.take(part, [c - min(wanted) for c in wanted], axis=kept.index("C"))
        else:
            part, kept = part[None], ["C", *kept]
        part = part.transpose([kept.index(a) for a in "CZYX" if a in kept])
        return part.reshape(len(self.channels), *box.shape)


# A run of bytes shorter than _SHORT_RUN is read with its neighbours (whole rows rather than a
# few pixels of each) when that makes a run of at most _LONG_RUN: far fewer reads, for a buffer
# of at most _LONG_RUN bytes.
_SHORT_RUN = 64 * 1024
_LONG_RUN = 1024 * 1024


def _read_block(fd: int, offset: int, shape: tuple, dtype: np.dtype, ranges: list[tuple[int, int]]
                ) -> np.ndarray | None:
    """Elements ``ranges`` ([lo, hi) per axis) of the C-order array of ``shape`` and ``dtype``
    stored at byte ``offset`` of the open file ``fd``, read with one ``pread`` per contiguous
    run of bytes (so memory holds the region and one run, never the whole array). None when the
    file ends before the region does."""
    itemsize = dtype.itemsize
    strides = [itemsize * math.prod(shape[a + 1:]) for a in range(len(shape))]
    read = list(ranges)

    def run(axis: int) -> int:  # bytes of one run covering axes axis.. (those after it whole)
        return (read[axis][1] - read[axis][0]) * strides[axis]

    # The run covers axes p.. of the array: axes after p are read whole, axis p over read[p].
    # It grows outwards while it stays at most _LONG_RUN bytes: over an axis read whole at no
    # cost, and over a short partial one (a few pixels of each row) by reading it whole too.
    p = len(shape) - 1
    while p > 0 and run(p - 1) <= _LONG_RUN and (read[p] == (0, shape[p]) or run(p) < _SHORT_RUN):
        read[p] = (0, shape[p])
        p -= 1
    run_shape = [hi - lo for lo, hi in read[p:]]
    run_bytes = math.prod(run_shape) * itemsize
    out = np.empty([hi - lo for lo, hi in ranges], dtype)
    buf = np.empty(run_shape, dtype)
    view = buf.reshape(-1).view(np.uint8).data
    inner = tuple(slice(lo - rlo, hi - rlo) for (lo, hi), (rlo, _) in zip(ranges[p:], read[p:]))
    for outer in np.ndindex(*[hi - lo for lo, hi in read[:p]]):
        at = offset + read[p][0] * strides[p] + sum((lo + i) * s for i, (lo, _), s in zip(outer, read, strides))
        done = 0
        while done < run_bytes:  # a read may return less than asked without the file ending
            n = os.preadv(fd, [view[done:]], at + done)
            if n == 0:
                return None
            done += n
        out[outer] = buf[inner]
    return out


def _load(path: str) -> _Handle:
    return _Handle(path)


def _listing(path: str, h: _Handle) -> list[SeriesInfo]:
    out = []
    for i, im in enumerate(h.images):
        name = im.path if "/" in im.path else im.name
        try:
            dims = dims_text(im.sizes.items())
        except Exception as exc:  # an attribute missing or out of range in the image's XML
            raise DamagedFile(f"{path} is damaged: the description of image {i} {name!r} cannot be read "
                              f"({exc})") from None
        out.append(SeriesInfo(i, name, dims))
    return out


def open_lif(path: str, series: int | None, channel: int | None, timepoint: int | None,
             segmentation: bool) -> LifSource:
    h = _load(path)
    try:
        return open_series(LifSource, path, NOUN, _listing(path, h), lambda i: _image(path, h, i), series, channel,
                           timepoint, segmentation)
    finally:
        h.close()


def list_series(path: str) -> list[SeriesInfo]:
    h = _load(path)
    try:
        return _listing(path, h)
    finally:
        h.close()


def _xml_end(path: str) -> int:
    """Where a LIF file's description of the images (XML) ends: its first data block begins."""
    with open(path, "rb") as f:
        return _HEADER.size + 2 * _HEADER.unpack(f.read(_HEADER.size))[3]


def _cut_block(path: str, at: int, version: int) -> bool:
    """Whether the file ends within a data block's header that begins at byte ``at`` (a file cut
    short there), rather than holding bytes there that are no block header (a damaged file)."""
    with open(path, "rb") as f:
        f.seek(at)
        block = _BLOCK.get(version, _BLOCK[2])
        head = f.read(block.size)
        if len(head) < block.size:
            return True
        mark, _, mark2, _, mark3, n_chars = block.unpack(head)
        return (mark, mark2, mark3) == (0x70, 0x2A, 0x2A) and len(f.read(2 * n_chars)) < 2 * n_chars


def _truncated(path: str, index: int, name: str, missing: int) -> str:
    return (f"{path} cannot be read: the file is truncated: image {index} {name!r} needs {_short(missing)} "
            "beyond its end")


def _data(path: str, h: _Handle, i: int, im, described: dict[str, ET.Element]) -> tuple:
    """Where image ``i``'s voxels are: (byte offset in the file, shape as stored in liffile's axis
    order, dtype, stored blue first); a :class:`DamagedFile` when the file does not hold them
    whole. Checks offsets and sizes only: no voxel is read."""
    where = f"image {i} {im.name!r}"
    try:
        block = im.memory_block
    except (KeyError, IndexError):
        if _cut_block(path, h.blocks_end, h.file.version):
            raise DamagedFile(f"{path} cannot be read: the file is truncated: it ends (at {h.size} bytes) before "
                              f"the data of {where} ({_short(_nbytes(im))})") from None
        raise DamagedFile(f"{path} is damaged: the data of {where} cannot be found (the file cannot be read "
                          f"beyond byte {h.blocks_end} of {h.size})") from None
    if block.offset <= 0:
        raise DamagedFile(f"{path} is damaged: the data of {where} is not in the file")
    dtype = np.dtype(im.dtype)
    shape = tuple(int(n) for n in im.shape)
    stored = list(shape)
    dims = tuple(im.dims)
    if "S" in dims and "Y" in described and "X" in dims:
        # Rows padded to a whole number of pixels, as liffile reads them (its "stride-aligned RGB rows").
        row = int(described["Y"].get("BytesInc", "0")) // (im.sizes["S"] * dtype.itemsize)
        if row > im.sizes["X"]:
            stored[dims.index("X")] = row
    need = math.prod(stored) * dtype.itemsize
    if block.offset + need > h.size:
        raise DamagedFile(_truncated(path, i, im.name, block.offset + need - h.size))
    if need != block.size:
        # Fewer bytes cannot hold the image; more mean a layout (rows or planes padded, samples
        # skipped) its dimensions do not describe, which liffile refuses too: read as described, the
        # voxels would be the wrong ones.
        raise DamagedFile(f"{path} is damaged: {where} holds {block.size} bytes of data where its dimensions "
                          f"need {need}")
    return block.offset, tuple(stored), dtype.str, _stored_blue_first(im, dims), _block_head(path, h, block)


def _block_head(path: str, h: _Handle, block) -> bytes:
    """The header of the data block ``block`` (the bytes just before its data: its size, and in a
    LIF file its id), as the file holds it now: what tells, when a process opens the file again,
    that the data is still there."""
    n = _LOF_BLOCK.size if h.lof else _BLOCK.get(h.file.version, _BLOCK[2]).size + 2 * len(block.id)
    with open(path, "rb") as f:
        return os.pread(f.fileno(), n, block.offset - n)


def _nbytes(im) -> int | str:
    """The bytes of an image's voxels (unpadded), or "its" when its description cannot say."""
    try:
        return math.prod(int(n) for n in im.shape) * np.dtype(im.dtype).itemsize
    except Exception:  # the description itself is damaged
        return "its"


def _stored_blue_first(im, dims: tuple) -> bool:
    """Whether a colour image's samples are stored blue, green, red: three samples whose
    channels, in the order of their bytes, are tagged blue (3) then green (2) -- the rule by
    which liffile reverses them."""
    if "S" not in dims or dims[-1] != "S" or im.sizes["S"] != 3:
        return False
    tags = [el.get("ChannelTag") for el in _channel_descriptions(im)]
    return len(tags) >= 2 and tags[0] == "3" and tags[1] == "2"


def _image(path: str, h: _Handle, i: int) -> Image:
    im = h.images[i]
    sizes = dict(im.sizes)
    dims = tuple(im.dims)
    where = f"{path}, image {i} {im.name!r}"
    if getattr(im, "is_flim", False):
        # Photon arrival-time histograms, which liffile lists but cannot decode: never read as pixels.
        raise PrecomputedTifError(f"{where} is a FLIM (TCSPC) acquisition of photon arrival times, not an "
                                  "intensity image; export its intensity image from LAS X first")
    described = _dimension_descriptions(im)
    try:
        data = _data(path, h, i, im, described)
    except PrecomputedTifError:
        raise
    except Exception as exc:  # an attribute missing or out of range in the image's XML
        raise DamagedFile(f"{path} is damaged: the description of image {i} {im.name!r} cannot be read "
                          f"({exc})") from None
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
    voxel = tuple(_spacing(described.get(a)) for a in "XYZ")
    names: tuple = ()
    colors: tuple = ()
    # Samples side by side in each pixel are a colour image's when tagged red, green and blue
    # (ChannelTag 1, 2, 3); other channels stored so are channels like any others.
    tags = sorted(el.get("ChannelTag", "") for el in _channel_descriptions(im))
    colour = channel_axis == "S" and tags == ["1", "2", "3"]
    if channel_axis in _SPECTRAL:
        waves = im.coords.get(channel_axis)
        if waves is not None and len(waves) == n_c:
            from ...channels import from_wavelength

            names = tuple(f"{channel_axis} {float(w) * 1e9:.4g} nm" for w in waves)
            colors = tuple(from_wavelength(float(w) * 1e9) for w in waves)
    elif colour:
        from ... import channels

        names, colors = channels.RGB_NAMES[:n_c], channels.RGB_COLORS[:n_c]
    else:
        luts = [str(el.get("LUTName", "")).strip().lower() for el in _channel_descriptions(im)]
        if len(luts) == n_c:
            colors = tuple(_LUT.get(lut) for lut in luts)
    interval, time_unit = _time_step(_time_description(im))
    return Image(shape, np.dtype(im.dtype).name, n_c, sizes.get("T", 1), voxel, names, colors,
                 colour, (i, dims, channel_axis, *data), interval, time_unit)


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
    """The ``ChannelDescription`` elements in the order of the channels' data (by ``BytesInc``,
    as liffile numbers the channels), whatever order the file lists them in."""
    return sorted(_element(im).iter("ChannelDescription"), key=lambda el: int(el.get("BytesInc", "0")))


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
