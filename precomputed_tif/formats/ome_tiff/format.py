"""``--format ome-tiff``: one pyramidal OME-TIFF file (see :mod:`precomputed_tif.formats.ome_tiff`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import PrecomputedTifError, param, setting
from ...geometry import DEFAULT_CHUNK_SIZE
from .. import Format, FormatOptions

if TYPE_CHECKING:  # pragma: no cover
    from ..store import ChunkStore


class OmeTiffFormat(Format):
    """Not a chunked dataset: its conversion is planned and run by :mod:`precomputed_tif.formats.ome_tiff`."""

    name = "ome-tiff"
    takes = ("tile_size", "compression")
    chunked = False
    served_as_files = True

    def check_options(self, options, chunk_size) -> FormatOptions:
        if tuple(chunk_size) != DEFAULT_CHUNK_SIZE:
            raise PrecomputedTifError(f"{param('chunk_size')} does not go with {setting('format', 'ome-tiff')}, whose "
                                      f"planes are stored in 2-D tiles: give {param('tile_size')} instead")
        return options

    def store_class(self, options=None) -> type[ChunkStore]:
        raise TypeError("an OME-TIFF has no chunk store")

    def summary(self, dest: str, result: dict) -> str:
        from . import summary

        return summary(result)
