"""A fast decoder for the plain multi-page TIFF files that hold chunks.

Serving a chunk is dominated by per-page bookkeeping when a general TIFF
reader opens a 64-page file, so the files this project writes (and the ones the
original precomputed-tif wrote) are decoded here directly: classic TIFF,
one grey-scale sample per pixel, contiguous planes, strips either uncompressed
or Deflate without a predictor. :func:`decode_chunk` returns None for anything
else, and the caller falls back to tifffile, so unusual files still read; they
are only slower.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Literal

import numpy as np

_inflate: Callable[..., bytes | bytearray] | None
try:  # libdeflate is about a third faster than zlib at inflating these strips
    from imagecodecs import deflate_decode

    _inflate = deflate_decode
except ImportError:  # pragma: no cover - imagecodecs is a dependency
    _inflate = None

_TYPE_SIZE = {3: 2, 4: 4}
_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}


def _inflate_strip(data: bytes | bytearray, size: int) -> bytes | bytearray:
    if _inflate is not None:
        return _inflate(data, out=size)
    return zlib.decompress(data)


def decode_chunk(data: bytes, shape_zyx: tuple[int, int, int], dtype: np.dtype) -> np.ndarray | None:
    """The (z, y, x) array of a chunk file's bytes, or None when the file is not of the simple kind."""
    bo: Literal["<", ">"]
    if data[:4] == b"II*\0":
        bo = "<"
    elif data[:4] == b"MM\0*":
        bo = ">"
    else:
        return None
    dtype = np.dtype(dtype)
    nz, ny, nx = shape_zyx
    out = np.empty(shape_zyx, dtype.newbyteorder(bo))
    flat = out.reshape(nz, -1).view(np.uint8)
    (ifd,) = struct.unpack_from(bo + "I", data, 4)
    z = 0
    template = None  # the last fully parsed IFD, to recognise the identical ones that follow
    try:
        while ifd:
            if z >= nz:
                return None
            (n,) = struct.unpack_from(bo + "H", data, ifd)
            entries = data[ifd + 2:ifd + 2 + 12 * n]
            strips = _same_as(template, n, entries, bo)
            if strips is None:
                tags = _read_ifd(data, ifd, bo)
                if not _plain(tags, nx, ny, dtype) or len(tags[273]) != len(tags[279]):
                    return None
                strips = tags[273], tags[279]
                template = _template(n, entries, bo, tags)
            # _same_as matches only an earlier page's template: set whenever strips are.
            assert template is not None
            if not _read_plane(data, strips, template.compressed, min(template.rows, ny),
                               nx * dtype.itemsize, ny, flat[z]):
                return None
            (ifd,) = struct.unpack_from(bo + "I", data, ifd + 2 + 12 * n)
            z += 1
    except (struct.error, zlib.error, ValueError, RuntimeError, IndexError):
        return None
    except Exception as exc:  # imagecodecs' own error type
        if type(exc).__name__.endswith("Error"):
            return None
        raise
    if z != nz:
        return None
    return out.astype(dtype, copy=False)


def _read_plane(data: bytes, strips, compressed: bool, rows: int, row_bytes: int, ny: int,
                out: np.ndarray) -> bool:
    """Decode one page's strips into ``out`` (the plane's bytes); False if they do not fit."""
    pos = 0
    for i, (o, c) in enumerate(zip(*strips)):
        size = min(rows, ny - i * rows) * row_bytes
        strip: bytes | bytearray = data[o:o + c]
        if compressed:
            strip = _inflate_strip(strip, size)
        if len(strip) < size or pos + size > len(out):
            return False
        out[pos:pos + size] = np.frombuffer(strip, np.uint8, size)
        pos += size
    return pos == len(out)


class _Template:
    """An IFD whose tags were checked; later IFDs that differ only in their one strip's
    offset and byte count are the same kind of page and need no second check."""

    def __init__(self, n, masked, offset_at, count_at, compressed, rows):
        self.n, self.masked, self.offset_at, self.count_at = n, masked, offset_at, count_at
        self.compressed, self.rows = compressed, rows


def _template(n: int, entries: bytes, bo: str, tags: dict) -> _Template:
    at = {}
    for k in range(n):
        tag, typ, count = struct.unpack_from(bo + "HHI", entries, 12 * k)
        if tag in (273, 279):
            if count != 1:
                return _Template(-1, b"", 0, 0, tags[259][0] != 1, tags.get(278, (2**32,))[0])
            at[tag] = (12 * k + 8, "H" if typ == 3 else "I")
    masked = bytearray(entries)
    for pos, _ in at.values():
        masked[pos:pos + 4] = b"\0\0\0\0"
    return _Template(n, bytes(masked), at[273], at[279], tags[259][0] != 1, tags.get(278, (2**32,))[0])


def _same_as(t: _Template | None, n: int, entries: bytes, bo: str):
    """(offsets, counts) of an IFD matching the template, else None."""
    if t is None or t.n != n:
        return None
    masked = bytearray(entries)
    (po, fo), (pc, fc) = t.offset_at, t.count_at
    masked[po:po + 4] = masked[pc:pc + 4] = b"\0\0\0\0"
    if masked != t.masked:
        return None
    return struct.unpack_from(bo + fo, entries, po), struct.unpack_from(bo + fc, entries, pc)


def _read_ifd(data: bytes, ifd: int, bo: str) -> dict[int, tuple]:
    (n,) = struct.unpack_from(bo + "H", data, ifd)
    tags = {}
    for k in range(n):
        pos = ifd + 2 + 12 * k
        tag, typ, count = struct.unpack_from(bo + "HHI", data, pos)
        size = _TYPE_SIZE.get(typ)
        if size is None:
            continue  # only SHORT and LONG tags matter here
        code = "H" if typ == 3 else "I"
        where = pos + 8 if size * count <= 4 else struct.unpack_from(bo + "I", data, pos + 8)[0]
        tags[tag] = struct.unpack_from(f"{bo}{count}{code}", data, where)
    return tags


def _plain(tags: dict, nx: int, ny: int, dtype: np.dtype) -> bool:
    return (
        tags.get(256, (0,))[0] == nx
        and tags.get(257, (0,))[0] == ny
        and tags.get(258, (1,))[0] == dtype.itemsize * 8
        and tags.get(277, (1,))[0] == 1
        and tags.get(284, (1,))[0] == 1
        and tags.get(317, (1,))[0] == 1
        and tags.get(259, (1,))[0] in (1, 8, 32946)
        and tags.get(339, (1,))[0] == _SAMPLE_FORMAT.get(dtype.kind, -1)
        and 273 in tags and 279 in tags
    )
