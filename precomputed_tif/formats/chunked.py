"""The formats whose datasets are multi-resolution volumes with ``info``, chunks in a store."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import PrecomputedTifError
from . import Format, FormatOptions, Planned

if TYPE_CHECKING:  # pragma: no cover
    from ..stores.base import ChunkStore


class TiffFormat(Format):
    """One 3-D TIFF file per chunk; translated to raw chunks by the project's servers."""

    name = "tiff"
    store = "..stores.tiff:TiffStore"


class ZarrFormat(Format):
    """A Zarr v2 array per level, with NGFF 0.4 root metadata; served as precomputed:// by the
    project's servers and as zarr:// by any static one."""

    name = "zarr"
    ngff_root = True
    store = "..stores.zarr:ZarrStore"


class BlockfsFormat(Format):
    """One blockfs volume per level and channel (a directory file and appended block files)."""

    name = "blockfs"
    store = "..stores.blockfs:BlockfsStore"


class PrecomputedFormat(Format):
    """Neuroglancer's own files: raw, png, jpeg or compressed_segmentation chunks, sharded or not."""

    name = "precomputed"
    aliases = ("raw",)  # what older server configurations call it
    takes = ("encoding", "jpeg_quality", "sharded")
    served_as_files = True
    precomputed_native = True
    store = "..stores.precomputed:PrecomputedStore"

    def plan(self, geometry, stack, segmentation, n_workers, block_bytes, options) -> Planned:
        from ..encodings import encoding_for
        from ..pyramid import plan_passes, plan_sharded_passes

        dtype = stack.dtype
        name = options.encoding or ("compressed_segmentation" if segmentation else "raw")
        if name == "jpeg" and segmentation:
            raise PrecomputedTifError("jpeg is lossy and would change labels: choose --encoding "
                                      "compressed_segmentation (the default for --segmentation), png or raw")
        if name == "compressed_segmentation" and not segmentation:
            raise PrecomputedTifError("compressed_segmentation is for labels: add --segmentation, or choose "
                                      "--encoding raw or png for an image")
        if name == "compressed_segmentation" and dtype.name in ("uint8", "uint16"):
            dtype = np.dtype(np.uint32)  # the encoding holds 32- and 64-bit labels only
        codec = encoding_for(name, dtype, stack.n_channels, options.jpeg_quality)
        voxel_bytes = stack.dtype.itemsize * stack.n_channels
        if options.sharded is not False:
            passes = plan_sharded_passes(geometry, voxel_bytes, block_bytes, shard_all=bool(options.sharded))
        else:
            passes = plan_passes(geometry, voxel_bytes, block_bytes, stack.whole_rows)
        lossless: frozenset[str] = frozenset()
        if not codec.lossless:
            # Later passes read these levels back: from a lossless copy, never from decoded jpeg.
            lossless = frozenset(geometry.level(p.first).key for p in passes if not p.from_source)
        return Planned(dtype, passes, lossless, codec)

    def add_to_info(self, info, geometry, planned, options) -> None:
        from ..shards import sharding_spec

        codec = planned.codec
        data_encoding = "gzip" if codec.name in ("raw", "compressed_segmentation") else "raw"
        low_bits = {number: low for p in planned.passes for number, low in p.shards}
        for number, scale in enumerate(info["scales"], start=1):
            scale.update(codec.info())
            if number in low_bits:
                scale["sharding"] = sharding_spec(geometry.grid(number), low_bits[number], data_encoding)


class OmeZarrFormat(Format):
    """OME-Zarr: NGFF 0.5 (Zarr v3 arrays, chunks in shards a task writes whole) or 0.4 (Zarr v2)."""

    name = "ome-zarr"
    takes = ("ngff_version",)
    numbered_keys = True
    ngff_root = True
    served_as_files = True
    store = "..stores.ome_zarr:OmeZarrStore"
    versions: ClassVar[tuple[str, ...]] = ("0.5", "0.4")

    def check_options(self, options, chunk_size) -> FormatOptions:
        from ..ngff import VERSIONS, ZARR3_NEEDED, zarr_major

        version = "0.5" if options.ngff_version is None else str(options.ngff_version)
        if version not in VERSIONS:
            raise PrecomputedTifError(f"--ngff-version must be one of {', '.join(VERSIONS)}, not {version!r}")
        if version == "0.5" and zarr_major() < 3:
            raise PrecomputedTifError(ZARR3_NEEDED)
        return FormatOptions(ngff_version=version)

    def store_class(self, options=None) -> type[ChunkStore]:
        if options is not None and options.ngff_version == "0.4":
            # NGFF 0.4 is Zarr v2: the zarr format's layout, with levels 0, 1, ...
            return ZarrFormat().store_class()
        return super().store_class()

    def job_name(self, options) -> str:
        return f"{self.name} {options.ngff_version}"

    def plan(self, geometry, stack, segmentation, n_workers, block_bytes, options) -> Planned:
        from ..pyramid import plan_zarr_shard_passes

        if options.ngff_version != "0.5":
            return super().plan(geometry, stack, segmentation, n_workers, block_bytes, options)
        voxel_bytes = stack.dtype.itemsize * stack.n_channels
        # As many tasks as workers, where the level allows (a Dask cluster's size is not known).
        return Planned(stack.dtype, plan_zarr_shard_passes(geometry, voxel_bytes, block_bytes,
                                                           min_tasks=n_workers or 4))

    def add_to_info(self, info, geometry, planned, options) -> None:
        from ..info import EXTRA
        from ..pyramid import zarr_shard_sizes

        if options.ngff_version == "0.5":
            info[EXTRA]["zarr_shards"] = {geometry.level(n).key: list(size) for n, size in
                                          sorted(zarr_shard_sizes(geometry, planned.passes).items())}
