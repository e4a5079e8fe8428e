"""One compressed 3-D TIFF file per chunk: ``<key>/x0-x1_y0-y1_z0-z1.tiff``."""

from __future__ import annotations

import io
import os

import numpy as np
import tifffile

from ...errors import DamagedData
from ...geometry import Box
from ..store import ChunkStore
from .chunk import decode_chunk

# Deflate ("zlib", TIFF compression 8) is the compression every TIFF reader
# opens. Level 1 is much faster than higher levels and the files are only a
# little larger on noisy microscope data (benchmarks/convert.py).
ZLIB_LEVEL = 1


class TiffStore(ChunkStore):
    """Chunks as multi-page TIFF files, one page per z plane of the chunk."""

    format = "tiff"
    local_only = True  # its chunks are served by this project's servers, which read local files

    @classmethod
    def holds_dir(cls, level_dir: str) -> bool:
        with os.scandir(level_dir) as it:
            return any(e.name.endswith(".tiff") and not e.name.startswith(".") for e in it)

    def chunk_key(self, key: str, box: Box) -> str:
        """The storage key of chunk ``box`` of scale ``key``: ``<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>.tiff``."""
        return self.level_key(key, box.name + ".tiff")

    def chunk_path(self, key: str, box: Box) -> str:
        return os.path.join(self.root, *self.chunk_key(key, box).split("/"))

    def _index(self, key: str, box: Box) -> tuple[int, int, int]:
        cx, cy, cz = self.chunk_size(key)
        return box.z0 // cz, box.y0 // cy, box.x0 // cx

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        buf = io.BytesIO()
        # Channels follow each other: the pages are channel 0's z planes, then channel 1's.
        tifffile.imwrite(buf, array.reshape(-1, *box.shape[1:]), compression="zlib",
                         compressionargs={"level": ZLIB_LEVEL}, photometric="minisblack", metadata=None)
        data = buf.getvalue()
        self.put_object(self.chunk_key(key, box), data)
        self.record_checksum(key, self._index(key, box), data)

    def chunk_keys(self, key: str, box: Box) -> list[str]:
        return [self.chunk_key(key, box)]

    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        path = self.location(self.chunk_key(key, box))
        data = self.get_object(self.chunk_key(key, box))
        shape = self.array_shape(box)
        if data is None:
            return np.zeros(shape, self.dtype)
        self.verify_checksum(key, self._index(key, box), data, path)
        pages = (int(np.prod(shape[:-2])), shape[-2], shape[-1])
        array = decode_chunk(data, pages, self.dtype)
        if array is not None:
            return array.reshape(shape)
        try:
            array = tifffile.imread(io.BytesIO(data))
        except Exception as exc:
            raise DamagedData(f"{path} is not a readable chunk ({exc})") from None
        # Only the shape's axes of length 1 may differ (a chunk one plane thick reads back as 2-D).
        if [n for n in array.shape if n != 1] != [n for n in pages if n != 1]:
            raise DamagedData(f"{path} holds {array.shape} voxels, expected {shape}")
        if array.dtype.kind != self.dtype.kind or array.dtype.itemsize != self.dtype.itemsize:
            raise DamagedData(f"{path} holds {array.dtype.name} voxels in a {self.dtype.name} dataset")
        return array.reshape(shape).astype(self.dtype, copy=False)
