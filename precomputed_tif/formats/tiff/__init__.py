"""``--format tiff``: one compressed 3-D TIFF file per chunk (:mod:`.store`, :mod:`.chunk`)."""

from __future__ import annotations

from .. import Format


class TiffFormat(Format):
    """One 3-D TIFF file per chunk; translated to raw chunks by the project's servers."""

    name = "tiff"
    store = ".tiff.store:TiffStore"
