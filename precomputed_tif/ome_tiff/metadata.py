"""The OME-XML of the file: sizes, pixel type, physical voxel size and channels.

tifffile's :class:`~tifffile.OmeXml` writes the XML from the metadata dict
made here; its UUID is derived from the job and destination instead of drawn
at random, so the same conversion always writes the same bytes (a resumed run
equals an uninterrupted one).
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np

from ..display import CHANNEL_COLORS, RGB_COLORS
from ..errors import PrecomputedTifError
from .layout import Layout

# numpy dtype -> OME PixelType (the OME schema has no 64-bit integers).
OME_PIXEL_TYPES = {"int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8", "uint16": "uint16",
                   "uint32": "uint32", "float32": "float"}
RGB_NAMES = ("red", "green", "blue", "alpha")
GREY = "#ffffff"


def check_pixel_type(dtype: np.dtype) -> None:
    if np.dtype(dtype).name not in OME_PIXEL_TYPES:
        raise PrecomputedTifError(
            f"OME-TIFF has no {np.dtype(dtype).name} pixel type (it holds {', '.join(OME_PIXEL_TYPES)}); "
            "convert the labels to uint32 first, or choose another --format")


def channel_colors(n: int, rgb: bool) -> list[str]:
    """``#rrggbb`` per channel: grey for one channel, red/green/blue for colour input, else the
    project's channel colours (green, magenta, ...) as its Neuroglancer links use them."""
    if n == 1:
        return [GREY]
    colors = RGB_COLORS if rgb else CHANNEL_COLORS
    return [colors[i % len(colors)] for i in range(n)]


def ome_color(hex_color: str) -> int:
    """OME's Color: RGBA packed in a signed 32-bit integer, opaque."""
    rgba = (int(hex_color[1:], 16) << 8) | 0xFF
    return rgba - (1 << 32) if rgba >= 1 << 31 else rgba


def channel_names(n: int, rgb: bool) -> list[str]:
    return list(RGB_NAMES[:n]) if rgb else [f"Channel {i}" for i in range(n)]


def ome_metadata(layout: Layout, voxel_size_um, rgb: bool, name: str, job: dict, dest: str) -> dict:
    """tifffile's ``metadata=`` for the full-resolution series: axes ZCYX (stored as XYCZT),
    physical sizes in µm (x, y, z), and a name and colour per channel."""
    from .. import __version__

    identity = json.dumps({"dest": os.path.abspath(dest), "job": job}, sort_keys=True)
    vx, vy, vz = (float(v) for v in voxel_size_um)
    n = layout.channels
    return {
        "axes": "ZCYX",
        "UUID": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, identity)}",
        "Creator": f"precomputed-tif {__version__}",
        "Name": name,
        "PhysicalSizeX": vx, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": vy, "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": vz, "PhysicalSizeZUnit": "µm",
        "Channel": {"Name": channel_names(n, rgb), "Color": [ome_color(c) for c in channel_colors(n, rgb)]},
    }
