"""How one chunk's voxels become bytes and back, for the precomputed ``encoding`` values.

Pure functions of arrays and bytes: no files, no layout. Arrays are
(c, z, y, x), C-ordered, which is exactly precomputed's ``[x, y, z, channel]``
Fortran order when flattened. Every decoder checks what it is given against
the chunk's shape before trusting it, so damaged bytes give an error, never
someone else's memory.

=========================  ==========================================  ==========
encoding                   data types, channels                        lossless
=========================  ==========================================  ==========
raw                        any, any                                    yes
png                        uint8 (1-4 channels), uint16 (1 channel)    yes
jpeg                       uint8, 1 or 3 channels                      no
compressed_segmentation    uint32, uint64 (labels), 1 channel          yes
=========================  ==========================================  ==========
"""

from __future__ import annotations

import numpy as np

from ...errors import PrecomputedTifError, param, setting

ENCODINGS = ("raw", "png", "jpeg", "compressed_segmentation")
DEFAULT_JPEG_QUALITY = 90
CSEG_BLOCK = (8, 8, 8)


class Encoding:
    """bytes <-> (c, z, y, x) array for one chunk of one scale."""

    name = ""
    lossless = True
    # Whether gzip shrinks the encoded bytes much (raw voxels, label blocks), so a bucket stores
    # an unsharded chunk gzipped (Storage.put's compressible); png and jpeg are compressed already.
    compressible = True

    def info(self) -> dict:
        """The members of a scale's ``info`` entry that describe this encoding."""
        return {"encoding": self.name}

    def encode(self, array: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        raise NotImplementedError


class Raw(Encoding):
    name = "raw"

    def encode(self, array):
        return np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()

    def decode(self, data, shape, dtype):
        dtype = np.dtype(dtype)
        if len(data) != int(np.prod(shape)) * dtype.itemsize:
            raise PrecomputedTifError(f"a raw chunk holds {len(data)} bytes, {shape} {dtype.name} voxels need "
                                      f"{int(np.prod(shape)) * dtype.itemsize}")
        return np.frombuffer(data, dtype.newbyteorder("<")).reshape(shape).astype(dtype)


def _as_image(array: np.ndarray) -> np.ndarray:
    """A chunk as the 2-D image (rows = y and z, pixels = x, samples = channels) that the
    image encodings store: flattening its rows gives the voxels in x, y, z order."""
    c, z, y, x = array.shape
    image = np.moveaxis(array, 0, -1).reshape(z * y, x, c)
    return image[..., 0] if c == 1 else np.ascontiguousarray(image)


def _from_image(image: np.ndarray, shape, dtype, what: str) -> np.ndarray:
    c, z, y, x = shape
    if image.size != c * z * y * x or image.dtype != np.dtype(dtype):
        raise PrecomputedTifError(f"a {what} chunk decodes to {image.shape} {image.dtype}, not {shape} {dtype}")
    return np.moveaxis(image.reshape(z, y, x, c), -1, 0).copy()


class Png(Encoding):
    name = "png"
    compressible = False

    def encode(self, array):
        import imagecodecs

        image = _as_image(array)
        # Room for incompressible data: a filter byte per row and zlib's block overhead.
        return bytes(imagecodecs.png_encode(image, out=image.nbytes + image.shape[0] + 65536))

    def decode(self, data, shape, dtype):
        import imagecodecs

        try:
            image = imagecodecs.png_decode(data)
        except Exception as exc:
            raise PrecomputedTifError(f"a png chunk does not decode ({exc})") from None
        return _from_image(image, shape, dtype, "png")


class Jpeg(Encoding):
    name = "jpeg"
    compressible = False
    lossless = False

    def __init__(self, quality: int = DEFAULT_JPEG_QUALITY):
        self.quality = int(quality)

    def info(self):
        return {"encoding": "jpeg", "jpeg_quality": self.quality}

    def encode(self, array):
        import imagecodecs

        return bytes(imagecodecs.jpeg8_encode(_as_image(array), level=self.quality))

    def decode(self, data, shape, dtype):
        import imagecodecs

        try:
            image = imagecodecs.jpeg8_decode(data)
        except Exception as exc:
            raise PrecomputedTifError(f"a jpeg chunk does not decode ({exc})") from None
        return _from_image(image, shape, dtype, "jpeg")


class CompressedSegmentation(Encoding):
    """Neuroglancer's compressed segmentation, through the ``compressed_segmentation`` package."""

    name = "compressed_segmentation"

    def __init__(self, block_size=CSEG_BLOCK):
        self.block_size = tuple(int(v) for v in block_size)

    def info(self):
        return {"encoding": self.name, "compressed_segmentation_block_size": list(self.block_size)}

    def encode(self, array):
        import compressed_segmentation as cseg

        xyz = np.asfortranarray(array[0].transpose(2, 1, 0))
        return bytes(cseg.compress(xyz, block_size=self.block_size, order="F"))

    def decode(self, data, shape, dtype):
        import compressed_segmentation as cseg

        c, z, y, x = shape
        check_compressed_segmentation(data, (x, y, z), self.block_size, np.dtype(dtype))
        xyz = cseg.decompress(data, (x, y, z), np.dtype(dtype), block_size=self.block_size, order="F")
        return np.ascontiguousarray(xyz.transpose(2, 1, 0))[None]


def check_compressed_segmentation(data: bytes, shape_xyz, block_size, dtype: np.dtype) -> None:
    """Raise unless every block header of a one-channel compressed segmentation chunk points
    inside ``data``: the decoder trusts those offsets."""
    words = len(data) // 4
    if len(data) % 4 or words < 1:
        raise PrecomputedTifError("a compressed_segmentation chunk is not a whole number of 32-bit words")
    raw = np.frombuffer(data, "<u4")
    grid = [-(-s // b) for s, b in zip(shape_xyz, block_size)]
    n_blocks = int(np.prod(grid))
    start = int(raw[0])
    if start < 1 or start + 2 * n_blocks > words:
        raise PrecomputedTifError("a compressed_segmentation chunk is shorter than its block headers")
    headers = raw[start:start + 2 * n_blocks].reshape(n_blocks, 2).astype(np.int64)
    table = (headers[:, 0] & 0xFFFFFF) + start
    bits = headers[:, 0] >> 24
    values = headers[:, 1] + start
    value_words = 2 if dtype.itemsize == 8 else 1
    voxels = int(np.prod(block_size))
    if not np.isin(bits, (0, 1, 2, 4, 8, 16, 32)).all():
        raise PrecomputedTifError("a compressed_segmentation chunk has a block of an invalid bit width")
    encoded_words = (bits * voxels + 31) // 32
    if (table < start).any() or (values + encoded_words > words).any() or (table + value_words > words).any():
        raise PrecomputedTifError("a compressed_segmentation chunk points past its own end")


def encoding_for(name: str, dtype: np.dtype, channels: int, jpeg_quality: int | None = None) -> Encoding:
    """The encoding called ``name`` for chunks of ``dtype`` and ``channels``, or a user error that
    says which encodings fit the data."""
    dtype = np.dtype(dtype)
    if name not in ENCODINGS:
        raise PrecomputedTifError(f"unknown encoding {name!r}; choose one of: {', '.join(ENCODINGS)}")
    if name == "jpeg" and (dtype != np.uint8 or channels not in (1, 3)):
        raise PrecomputedTifError(
            f"jpeg holds only uint8 data with 1 or 3 channels, and this volume is {dtype.name} with {channels} "
            f"channel(s); use {setting('encoding', 'png')} (lossless, uint8 or one-channel uint16) or raw")
    if name == "png" and not ((dtype == np.uint8 and channels <= 4) or (dtype == np.uint16 and channels == 1)):
        raise PrecomputedTifError(
            f"png holds uint8 data with 1 to 4 channels or one-channel uint16, and this volume is {dtype.name} "
            f"with {channels} channel(s); use {setting('encoding', 'raw')}")
    if name == "compressed_segmentation" and (dtype.name not in ("uint32", "uint64") or channels != 1):
        raise PrecomputedTifError(
            f"compressed_segmentation holds one channel of uint32 or uint64 labels, not {dtype.name} with "
            f"{channels} channel(s); use {setting('encoding', 'raw')}")
    if jpeg_quality is not None and name != "jpeg":
        raise PrecomputedTifError(f"{param('jpeg_quality')} goes with {setting('encoding', 'jpeg')}")
    if name == "jpeg":
        quality = DEFAULT_JPEG_QUALITY if jpeg_quality is None else int(jpeg_quality)
        if not 1 <= quality <= 100:
            raise PrecomputedTifError(f"{param('jpeg_quality')} must be 1 to 100, got {quality}")
        return Jpeg(quality)
    return {"raw": Raw, "png": Png, "compressed_segmentation": CompressedSegmentation}[name]()


def from_scale_info(scale: dict) -> Encoding:
    """The encoding a scale of an ``info`` file declares."""
    name = scale.get("encoding", "raw")
    if name == "jpeg":
        return Jpeg(scale.get("jpeg_quality", DEFAULT_JPEG_QUALITY))
    if name == "compressed_segmentation":
        return CompressedSegmentation(scale.get("compressed_segmentation_block_size", CSEG_BLOCK))
    if name == "png":
        return Png()
    if name == "raw":
        return Raw()
    raise PrecomputedTifError(f"scale {scale.get('key')!r} has encoding {name!r}, which this project cannot read")
