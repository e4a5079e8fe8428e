"""A stack of TIFF planes seen as one lazy (z, y, x) volume.

Planes come either from many single-plane files (sorted by file name, plane i
is z = i) or from one multi-page file (page i is z = i). Opening a stack reads
every plane's header and checks that the planes agree; pixel data is read only
by :meth:`PlaneStack.read`, and only the strips or tiles of each plane that the
requested region needs.
"""

from __future__ import annotations

import dataclasses
import glob as globmod
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tifffile

from .errors import PrecomputedTifError
from .geometry import Box

log = logging.getLogger(__name__)

IMAGE_DTYPES = ("uint8", "uint16", "uint32", "float32")
SEGMENTATION_DTYPES = ("uint8", "uint16", "uint32", "uint64")


def supported_dtype(stored: np.dtype, segmentation: bool) -> np.dtype:
    """The dtype a plane of ``stored`` dtype becomes in the pyramid, or a user error."""
    stored = np.dtype(stored)
    if stored == np.bool_:
        return np.dtype(np.uint8)
    allowed = SEGMENTATION_DTYPES if segmentation else IMAGE_DTYPES
    if stored.name in allowed:
        return stored
    kind = "segmentation" if segmentation else "image"
    hint = {
        "int8": "uint8", "int16": "uint16", "int32": "uint32", "int64": "uint64",
        "float64": "float32", "float16": "float32", "uint64": "uint32 or use --segmentation",
        "float32": "an unsigned integer type for a segmentation, or drop --segmentation",
    }.get(stored.name, "one of " + ", ".join(allowed))
    raise PrecomputedTifError(
        f"planes are {stored.name}, which a precomputed {kind} cannot hold "
        f"(supported: {', '.join(allowed)}); convert them to {hint} first"
    )


@dataclass(frozen=True)
class PlaneStack:
    """Planes ``files`` (or pages of ``files[0]``), all of ``shape`` (y, x) and ``dtype``.

    Picklable and small: a worker gets the stack cut to the planes it needs
    with :meth:`subset`.
    """

    files: tuple[str, ...]
    plane_shape: tuple[int, int]
    stored_dtype: str
    multipage: bool
    n_planes: int
    first_plane: int = 0
    bool_value: int = 255
    # Where each plane's pixels start when they are stored uncompressed in one
    # piece (-1 otherwise), and the files' byte order: such planes are read
    # with one seek and one read, without parsing the TIFF again.
    offsets: tuple[int, ...] = ()
    byteorder: str = "<"

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) size of the whole stack."""
        return (self.n_planes, *self.plane_shape)

    @property
    def dtype(self) -> np.dtype:
        """dtype of arrays returned by :meth:`read` (bool planes become uint8)."""
        d = np.dtype(self.stored_dtype)
        return np.dtype(np.uint8) if d == np.bool_ else d

    def subset(self, z0: int, z1: int) -> "PlaneStack":
        """The same stack holding only planes z0 <= z < z1 (z stays absolute)."""
        cut = slice(z0 - self.first_plane, z1 - self.first_plane)
        files = self.files if self.multipage else self.files[cut]
        return dataclasses.replace(self, files=files, first_plane=z0, offsets=self.offsets[cut])

    def read(self, box: Box) -> np.ndarray:
        """Voxels of ``box`` (absolute coordinates) as a (z, y, x) array of :attr:`dtype`."""
        out = np.empty(box.shape, self.dtype)
        dtype = np.dtype(self.stored_dtype).newbyteorder(self.byteorder)
        for z in range(box.z0, box.z1):
            i = z - self.first_plane
            path = self.files[0] if self.multipage else self.files[i]
            if self.offsets[i] >= 0:
                with open(path, "rb") as f:
                    _read_rows(f, self.offsets[i], dtype, self.plane_shape[1], box, out[z - box.z0], path)
            else:
                with _open(path) as tif:
                    _read_page(tif, tif.pages[z if self.multipage else 0], path, box, out[z - box.z0])
        if np.dtype(self.stored_dtype) == np.bool_:
            out *= self.bool_value
        return out


def _open(path: str) -> tifffile.TiffFile:
    try:
        return tifffile.TiffFile(path)
    except FileNotFoundError:
        raise PrecomputedTifError(f"{path} disappeared while it was being read") from None
    except Exception as exc:
        raise PrecomputedTifError(f"{path} is not a readable TIFF file ({exc})") from None


def _read_page(tif: tifffile.TiffFile, page, path: str, box: Box, out: np.ndarray) -> None:
    """Fill ``out`` (y, x) with rows y0:y1 and columns x0:x1 of one page, decoding only
    the strips or tiles that overlap the region."""
    try:
        _read_segments(tif, page, box, out)
    except PrecomputedTifError:
        raise
    except Exception as exc:
        raise PrecomputedTifError(f"{path}: cannot decode plane data ({exc}); the file may be corrupt") from None


def _read_rows(f, offset: int, dtype: np.dtype, width: int, box: Box, out: np.ndarray, path: str) -> None:
    """Fill ``out`` from rows y0:y1 of an uncompressed plane stored at ``offset``."""
    row_bytes = width * dtype.itemsize
    f.seek(offset + box.y0 * row_bytes)
    nbytes = (box.y1 - box.y0) * row_bytes
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise PrecomputedTifError(f"{path} is shorter than its header says; the file may be truncated")
    out[...] = np.frombuffer(data, dtype).reshape(box.y1 - box.y0, width)[:, box.x0:box.x1]


def _read_segments(tif, page, box: Box, out: np.ndarray) -> None:
    seg_h, seg_w = page.chunks[-2:] if len(page.chunks) >= 2 else (page.chunks[0], page.shape[1])
    n_rows, n_cols = page.chunked[-2:] if len(page.chunked) >= 2 else (page.chunked[0], 1)
    decode = page.decode
    fh = tif.filehandle
    for r in range(box.y0 // seg_h, min(n_rows, -(-box.y1 // seg_h))):
        for c in range(box.x0 // seg_w, min(n_cols, -(-box.x1 // seg_w))):
            index = r * n_cols + c
            offset, count = page.dataoffsets[index], page.databytecounts[index]
            seg_y0, seg_x0 = r * seg_h, c * seg_w
            part = Box(seg_x0, seg_x0 + seg_w, seg_y0, seg_y0 + seg_h, box.z0, box.z0 + 1).intersect(box)
            dst = (slice(part.y0 - box.y0, part.y1 - box.y0), slice(part.x0 - box.x0, part.x1 - box.x0))
            if not count:
                out[dst] = 0
                continue
            fh.seek(offset)
            data = fh.read(count)
            if len(data) != count:
                raise ValueError("file is shorter than its header says")
            segment, _, _ = decode(data, index)
            segment = segment.reshape(segment.shape[-3], segment.shape[-2])
            out[dst] = segment[part.y0 - seg_y0:part.y1 - seg_y0, part.x0 - seg_x0:part.x1 - seg_x0]


def _plane_info(page, path: str) -> tuple[tuple[int, int], np.dtype]:
    """(y, x) shape and dtype of one page, or a user error for colour or multi-sample pages."""
    if page.samplesperpixel != 1 or len(page.shape) != 2:
        raise PrecomputedTifError(
            f"{path}: planes of shape {page.shape} (colour or multi-channel) are not supported; "
            "save one grey-scale channel per plane"
        )
    return tuple(page.shape), np.dtype(page.dtype)


def _contiguous_offset(page) -> int:
    """Byte offset of the pixels of an uncompressed, unsplit, byte-aligned page; else -1."""
    if page.is_contiguous and page.compression == 1 and not page.is_tiled and page.dtype != np.bool_:
        return int(page.dataoffsets[0])
    return -1


def _check_complete(page, path: str, size: int) -> None:
    ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts) if c]
    if ends and max(ends) > size:
        raise PrecomputedTifError(f"{path} is truncated: its planes need {max(ends)} bytes, the file has {size}")


def open_stack(source: str | Sequence[str], segmentation: bool = False, progress: bool = False) -> PlaneStack:
    """Open the planes named by a glob (or a list of files) and check that they agree.

    Raises :class:`PrecomputedTifError` naming the first offending file when
    nothing matches, a file is not a readable TIFF, or planes differ in shape or
    dtype; or when the dtype is not supported for the kind of volume.
    """
    if isinstance(source, (str, os.PathLike)):
        pattern = os.path.expanduser(str(source))
        files = sorted(globmod.glob(pattern))
        if not files:
            raise PrecomputedTifError(f"no files match --source {pattern!r}; check the path and quote the glob")
    else:
        files = sorted(str(f) for f in source)
        if not files:
            raise PrecomputedTifError("no source files given")
    files = [f for f in files if not os.path.isdir(f)]
    if not files:
        raise PrecomputedTifError(f"--source {source!r} matches only directories; use a glob like 'dir/*.tif'")

    if len(files) == 1:
        stack = _open_multipage(files[0], progress)
    else:
        stack = _open_planes(files, progress)
    supported_dtype(stack.stored_dtype, segmentation)
    return dataclasses.replace(stack, bool_value=1 if segmentation else 255)


def _open_multipage(path: str, progress: bool) -> PlaneStack:
    size = os.path.getsize(path)
    with _open(path) as tif:
        try:
            pages = list(tif.pages)
        except Exception as exc:
            raise PrecomputedTifError(f"{path} is not a readable TIFF file ({exc})") from None
        shape, dtype = _plane_info(pages[0], path)
        for i, page in enumerate(pages):
            s, d = _plane_info(page, path)
            if (s, d) != (shape, dtype):
                raise PrecomputedTifError(
                    f"{path}: page {i} is {s[1]}x{s[0]} {d.name}, but page 0 is {shape[1]}x{shape[0]} {dtype.name}"
                )
            _check_complete(page, path, size)
        offsets = tuple(_contiguous_offset(page) for page in pages)
        byteorder = tif.byteorder
    return PlaneStack((path,), shape, dtype.name, True, len(pages), offsets=offsets, byteorder=byteorder)


def _open_planes(files: list[str], progress: bool) -> PlaneStack:
    from tqdm import tqdm

    shape = dtype = byteorder = None
    offsets = []
    for path in tqdm(files, desc="checking planes", unit="plane", disable=not progress, leave=False):
        with _open(path) as tif:
            try:
                n_pages = len(tif.pages)
                page = tif.pages[0]
            except Exception as exc:
                raise PrecomputedTifError(f"{path} is not a readable TIFF file ({exc})") from None
            if n_pages != 1:
                raise PrecomputedTifError(
                    f"{path} holds {n_pages} pages; give either one file per plane or a single multi-page file"
                )
            s, d = _plane_info(page, path)
            _check_complete(page, path, os.path.getsize(path))
            offset = _contiguous_offset(page)
            if byteorder is None:
                byteorder = tif.byteorder
            # Planes of mixed byte order are rare enough to just read through tifffile.
            offsets.append(offset if tif.byteorder == byteorder else -1)
        if shape is None:
            shape, dtype, first = s, d, path
        elif (s, d) != (shape, dtype):
            raise PrecomputedTifError(
                f"{path} is {s[1]}x{s[0]} {d.name}, but {first} is {shape[1]}x{shape[0]} {dtype.name}; "
                "all planes must have the same size and type"
            )
    return PlaneStack(tuple(files), shape, dtype.name, False, len(files), offsets=tuple(offsets),
                      byteorder=byteorder)
