"""The OME-XML of the file: sizes, pixel type, physical voxel size and channels.

tifffile's :class:`~tifffile.OmeXml` writes the XML from the metadata dict
made here; its UUID is derived from the job and destination instead of drawn
at random, so the same conversion always writes the same bytes (a resumed run
equals an uninterrupted one).
"""

from __future__ import annotations

import json
import uuid

import numpy as np

from ... import channels
from ...errors import PrecomputedTifError, param
from ...storage import absolute

# numpy dtype -> OME PixelType (the OME schema has no 64-bit integers).
OME_PIXEL_TYPES = {"int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8", "uint16": "uint16",
                   "uint32": "uint32", "float32": "float"}


def check_pixel_type(dtype: np.dtype) -> None:
    if np.dtype(dtype).name not in OME_PIXEL_TYPES:
        raise PrecomputedTifError(
            f"OME-TIFF has no {np.dtype(dtype).name} pixel type (it holds {', '.join(OME_PIXEL_TYPES)}); "
            f"convert the labels to uint32 first, or choose another {param('format')}")


def ome_metadata(voxel_size_um, channel_names, channel_colors, name: str, job: dict, dest: str) -> dict:
    """tifffile's ``metadata=`` for the full-resolution series: axes ZCYX (stored as XYCZT),
    physical sizes in µm (x, y, z), and a name and colour (``#rrggbb``) per channel, as
    :func:`..channels.of_source` gave them."""
    from ... import __version__

    identity = json.dumps({"dest": absolute(dest), "job": job}, sort_keys=True)
    vx, vy, vz = (float(v) for v in voxel_size_um)
    return {
        "axes": "ZCYX",
        "UUID": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, identity)}",
        "Creator": f"precomputed-tif {__version__}",
        "Name": name,
        "PhysicalSizeX": vx, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": vy, "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": vz, "PhysicalSizeZUnit": "µm",
        "Channel": {"Name": list(channel_names), "Color": [channels.to_ome(c) for c in channel_colors]},
    }
