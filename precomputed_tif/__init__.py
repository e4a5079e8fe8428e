"""precomputed-tif: TIFF z-stacks to multi-resolution Neuroglancer precomputed volumes."""

import os as _os
import sys as _sys

__version__ = "2.0.0"

from .process import interrupt_while_loading  # noqa: E402 (first: before the slow imports)

interrupt_while_loading(_os.path.basename(_sys.argv[0]) if _sys.argv else "")

from .convert import convert  # noqa: E402
from .errors import PrecomputedTifError  # noqa: E402
from .formats.volume import Volume, open_volume  # noqa: E402
from .geometry import Box, Geometry  # noqa: E402
from .meshing import mesh_dataset  # noqa: E402

__all__ = ["convert", "mesh_dataset", "open_volume", "Volume", "Geometry", "Box", "PrecomputedTifError"]
