"""``--format zarr``: a Zarr v2 array per level (:mod:`.store`), Blosc chunks (:mod:`.blosc_frame`),
and the NGFF root metadata it shares with OME-Zarr (:mod:`.ngff`)."""

from __future__ import annotations

from .. import Format


class ZarrFormat(Format):
    """A Zarr v2 array per level, with NGFF 0.4 root metadata; served as precomputed:// by the
    project's servers and as zarr:// by any static one."""

    name = "zarr"
    ngff_root = True
    store = ".zarr.store:ZarrStore"
