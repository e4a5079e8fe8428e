"""The Neuroglancer ``info`` file: built from a geometry, written atomically, read back."""

from __future__ import annotations

import json

import numpy as np

from .errors import PrecomputedTifError
from .geometry import Geometry
from .storage import StorageLike, open_storage

INFO = "info"
# What a conversion records beside ``info`` before writing anything (pipeline/destination.py):
# a directory holding it and no ``info`` is a dataset still being made.
JOB_RECORD = ".precomputed-tif.json"


# The key under which this project keeps what Neuroglancer's info has no place for
# (how to display the data); readers of the format ignore keys they do not know.
EXTRA = "precomputed_tif"


def build_info(geometry: Geometry, dtype: np.dtype, segmentation: bool, channels: int = 1) -> dict:
    """``info`` for a volume of ``channels`` channels with raw encoding (precomputed ``volume.md``).

    No ``mesh`` or ``segment_properties`` key: meshing adds them when it has
    written what they point at (Neuroglancer would ask for ``mesh/info`` otherwise).
    """
    return {
        "@type": "neuroglancer_multiscale_volume",
        "type": "segmentation" if segmentation else "image",
        "data_type": np.dtype(dtype).name,
        "num_channels": int(channels),
        "scales": [
            {
                "key": level.key,
                "size": list(level.size),
                "resolution": list(level.resolution),
                "voxel_offset": [0, 0, 0],
                "chunk_sizes": [list(geometry.chunk_size)],
                "encoding": "raw",
            }
            for level in geometry.levels
        ],
    }


def write_info(where: StorageLike, info: dict) -> None:
    """Write ``info`` into ``where`` (a :class:`~.storage.Storage`, or a directory's path or URL)
    atomically and durably: a reader sees the old file or the whole new one, and once this
    returns it survives a crash. Indented JSON and a final newline, as every version wrote it."""
    open_storage(where).put(INFO, json.dumps(info, indent=2).encode() + b"\n", durable=True)


def read_info(where: StorageLike) -> dict:
    """Parse the ``info`` in ``where`` (a :class:`~.storage.Storage`, or a directory's path or
    URL); a user error when it is missing or not a volume ``info``."""
    storage = open_storage(where)
    path = storage.location(INFO)
    try:
        data = storage.get(INFO)
        if data is None:
            raise PrecomputedTifError(f"{storage.location()} holds no precomputed dataset (no info file)")
        info = json.loads(data)
    except (OSError, ValueError) as exc:
        raise PrecomputedTifError(f"{path} is not a readable info file ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("scales"), list) or not info["scales"]:
        raise PrecomputedTifError(f"{path} is not the info file of a precomputed volume")
    return info
