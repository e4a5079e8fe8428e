"""precomputed-tif: TIFF z-stacks to multi-resolution Neuroglancer precomputed volumes."""

from .convert import convert
from .errors import PrecomputedTifError
from .geometry import Box, Geometry
from .meshing import mesh_dataset
from .volume import Volume, open_volume

__all__ = ["convert", "mesh_dataset", "open_volume", "Volume", "Geometry", "Box", "PrecomputedTifError"]
__version__ = "2.0.0"
