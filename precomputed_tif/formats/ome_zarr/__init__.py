"""``--format ome-zarr``: NGFF 0.5 (Zarr v3 arrays in shards, :mod:`.store`, :mod:`.shards`) or 0.4
(the zarr format's Zarr v2 store)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ...errors import PrecomputedTifError, param
from .. import Format, FormatOptions, Planned

if TYPE_CHECKING:  # pragma: no cover
    from ..store import ChunkStore


class OmeZarrFormat(Format):
    """OME-Zarr: NGFF 0.5 (Zarr v3 arrays, chunks in shards a task writes whole) or 0.4 (Zarr v2)."""

    name = "ome-zarr"
    takes = ("ngff_version",)
    numbered_keys = True
    ngff_root = True
    served_as_files = True
    time_axis = True
    store = ".ome_zarr.store:OmeZarrStore"
    versions: ClassVar[tuple[str, ...]] = ("0.5", "0.4")

    def check_options(self, options, chunk_size) -> FormatOptions:
        from ..zarr.ngff import VERSIONS, ZARR3_NEEDED, zarr_major

        version = "0.5" if options.ngff_version is None else str(options.ngff_version)
        if version not in VERSIONS:
            raise PrecomputedTifError(f"{param('ngff_version')} must be one of {', '.join(VERSIONS)}, not {version!r}")
        if version == "0.5" and zarr_major() < 3:
            raise PrecomputedTifError(ZARR3_NEEDED)
        return FormatOptions(ngff_version=version)

    def store_class(self, options=None) -> type[ChunkStore]:
        if options is not None and options.ngff_version == "0.4":
            # NGFF 0.4 is Zarr v2: the zarr format's layout, with levels 0, 1, ...
            from ..zarr import ZarrFormat

            return ZarrFormat().store_class()
        return super().store_class()

    def job_name(self, options) -> str:
        return f"{self.name} {options.ngff_version}"

    def plan(self, geometry, stack, segmentation, n_workers, block_bytes, options) -> Planned:
        from ...pyramid import plan_zarr_shard_passes

        if options.ngff_version != "0.5":
            return super().plan(geometry, stack, segmentation, n_workers, block_bytes, options)
        voxel_bytes = stack.dtype.itemsize * stack.n_channels
        # As many tasks as workers, where the level allows (a Dask cluster's size is not known).
        return Planned(stack.dtype, plan_zarr_shard_passes(geometry, voxel_bytes, block_bytes,
                                                           min_tasks=n_workers or 4))

    def add_to_info(self, info, geometry, planned, options) -> None:
        from ...info import EXTRA
        from ...pyramid import zarr_shard_sizes

        if options.ngff_version == "0.5":
            info[EXTRA]["zarr_shards"] = {geometry.level(n).key: list(size) for n, size in
                                          sorted(zarr_shard_sizes(geometry, planned.passes).items())}
