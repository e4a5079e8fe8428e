"""TIFF compressions an OME-TIFF may use: how each is named, tagged and encoded.

Tiles are encoded here, in the workers, exactly as tifffile would encode them
(a whole tile, edge tiles padded with zeros, little-endian), so the assembly
only copies bytes. Deflate, LZW and uncompressed are what Bio-Formats (Fiji,
QuPath) and Viv (geotiff.js) all read.
"""

from __future__ import annotations

from collections.abc import Callable

import imagecodecs

from ...errors import PrecomputedTifError, param, setting

DEFAULT_COMPRESSION = "deflate"
# As for the tiff format's chunks: level 1 is several times faster than zlib's default 6, and the
# files are only a few per cent larger on noisy microscope data (benchmarks/ome_tiff.py).
DEFLATE_LEVEL = 1


# What encodes a tile's raw bytes (imagecodecs' encoders may return a bytearray).
Encoder = Callable[[bytes], bytes | bytearray]


def _deflate(data: bytes) -> bytes | bytearray:
    # libdeflate writes the zlib stream (RFC 1950) TIFF's Adobe Deflate wants, faster than zlib.
    return imagecodecs.deflate_encode(data, level=DEFLATE_LEVEL)


def _none(data: bytes) -> bytes:
    return data


# name -> (tifffile's compression argument, encoder of a tile's raw bytes)
COMPRESSIONS: dict[str, tuple[str | None, Encoder]] = {
    "deflate": ("zlib", _deflate),
    "lzw": ("lzw", imagecodecs.lzw_encode),
    "none": (None, _none),
}


def check_compression(name: str) -> str:
    if name not in COMPRESSIONS:
        raise PrecomputedTifError(
            f"{param('compression')} must be one of {', '.join(COMPRESSIONS)} (for {setting('format', 'ome-tiff')}), "
            f"got {name!r}")
    return name


def encoder(name: str) -> Encoder:
    return COMPRESSIONS[name][1]


def tifffile_compression(name: str) -> str | None:
    return COMPRESSIONS[name][0]
