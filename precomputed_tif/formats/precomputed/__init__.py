"""``--format precomputed``: Neuroglancer's own files (:mod:`.store`), raw, png, jpeg or
compressed_segmentation chunks (:mod:`.encodings`), sharded or not (:mod:`.shards`, :mod:`.sharding`)."""

from __future__ import annotations

import numpy as np

from ...errors import PrecomputedTifError, param, setting
from .. import Format, Planned


class PrecomputedFormat(Format):
    """Neuroglancer's own files: raw, png, jpeg or compressed_segmentation chunks, sharded or not."""

    name = "precomputed"
    aliases = ("raw",)  # what older server configurations call it
    takes = ("encoding", "jpeg_quality", "sharded")
    served_as_files = True
    precomputed_native = True
    store = ".precomputed.store:PrecomputedStore"

    def plan(self, geometry, stack, segmentation, n_workers, block_bytes, options) -> Planned:
        from ...pyramid import plan_passes, plan_sharded_passes
        from .encodings import encoding_for

        dtype = stack.dtype
        name = options.encoding or ("compressed_segmentation" if segmentation else "raw")
        if name == "jpeg" and segmentation:
            raise PrecomputedTifError(f"jpeg is lossy and would change labels: choose {param('encoding')} "
                                      f"compressed_segmentation (the default for {setting('segmentation', True)}), "
                                      "png or raw")
        if name == "compressed_segmentation" and not segmentation:
            raise PrecomputedTifError(f"compressed_segmentation is for labels: add {setting('segmentation', True)}, "
                                      f"or choose {param('encoding')} raw or png for an image")
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
        from .shards import sharding_spec

        codec = planned.codec
        data_encoding = "gzip" if codec.name in ("raw", "compressed_segmentation") else "raw"
        low_bits = {number: low for p in planned.passes for number, low in p.shards}
        for number, scale in enumerate(info["scales"], start=1):
            scale.update(codec.info())
            if number in low_bits:
                scale["sharding"] = sharding_spec(geometry.grid(number), low_bits[number], data_encoding)
