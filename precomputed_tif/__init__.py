"""precomputed-tif: TIFF z-stacks to multi-resolution Neuroglancer precomputed volumes."""

import os as _os
import sys as _sys

__version__ = "2.0.0"

try:
    from .convert import convert
    from .errors import PrecomputedTifError
    from .formats.volume import Volume, open_volume
    from .geometry import Box, Geometry
    from .meshing import mesh_dataset
except KeyboardInterrupt:
    # Ctrl-C while a command's modules load (a second or more from a cold disk) is one line,
    # as at any later moment, rather than a traceback from inside an import. Only for the
    # commands themselves: a program importing the package gets its KeyboardInterrupt.
    _prog = _os.path.basename(_sys.argv[0]) if _sys.argv else ""
    if _prog.startswith(("precomputed-", "blockfs")):
        print(f"{_prog}: interrupted (SIGINT)", file=_sys.stderr)
        _sys.exit(130)
    raise

__all__ = ["convert", "mesh_dataset", "open_volume", "Volume", "Geometry", "Box", "PrecomputedTifError"]
