"""The interface every chunk store implements, and what they share."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from ..errors import PrecomputedTifError
from ..geometry import Box


class ChunkStore(ABC):
    """Chunks of every scale of one precomputed volume, stored in some format.

    A store is built from the dataset directory and its ``info`` dict (the
    scales' keys, sizes and chunk sizes and the data type come from there). It
    is small and picklable: workers receive it as an argument. Boxes are in
    the coordinates of the scale they name; arrays are (z, y, x), or
    (c, z, y, x) when the volume has several channels (``num_channels`` > 1).
    """

    format: str = ""
    # Scales whose chunks are also kept losslessly, to be read back (see the precomputed store).
    lossless_copies: frozenset = frozenset()

    def __init__(self, root: str, info: dict):
        self.root = os.path.abspath(root)
        self.info = info
        self.dtype = np.dtype(info["data_type"])
        self._scales = {s["key"]: s for s in info["scales"]}
        self.channels = int(info.get("num_channels", 1))

    def array_shape(self, box: Box) -> tuple[int, ...]:
        """Shape of the array that holds ``box``: (z, y, x), or (c, z, y, x) with channels."""
        return box.shape if self.channels == 1 else (self.channels, *box.shape)

    def scale(self, key: str) -> dict:
        try:
            return self._scales[key]
        except KeyError:
            raise PrecomputedTifError(f"{self.root} has no scale {key!r}") from None

    def chunk_size(self, key: str) -> tuple[int, int, int]:
        """(x, y, z) chunk size of a scale."""
        return tuple(self.scale(key)["chunk_sizes"][0])

    def size(self, key: str) -> tuple[int, int, int]:
        """(x, y, z) size of a scale in voxels."""
        return tuple(self.scale(key)["size"])

    def level_dir(self, key: str) -> str:
        return os.path.join(self.root, key)

    @classmethod
    def holds(cls, level_dir: str) -> bool:
        """True when a level directory looks like it was written in this format."""
        return False

    def create(self, n_writers: int = 1) -> None:
        """Make what writers need before any chunk is written (called once, by one process).

        ``n_writers`` is how many processes will write at once. What an earlier
        run of the same conversion made is kept, so a rerun resumes.
        """
        for s in self.info["scales"]:
            os.makedirs(self.level_dir(s["key"]), exist_ok=True)

    @abstractmethod
    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        """Store one chunk (``array`` has :meth:`array_shape`); atomic: never seen half written."""

    @abstractmethod
    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        """One chunk as an :meth:`array_shape` array of the volume's dtype; zeros where never written."""

    def read_region(self, key: str, box: Box) -> np.ndarray:
        """Any box of a scale, assembled from the chunks it overlaps."""
        cx, cy, cz = self.chunk_size(key)
        sx, sy, sz = self.size(key)
        out = np.empty(self.array_shape(box), self.dtype)
        for z0 in range(box.z0 // cz * cz, box.z1, cz):
            for y0 in range(box.y0 // cy * cy, box.y1, cy):
                for x0 in range(box.x0 // cx * cx, box.x1, cx):
                    chunk = Box(x0, min(x0 + cx, sx), y0, min(y0 + cy, sy), z0, min(z0 + cz, sz))
                    part = chunk.intersect(box)
                    out[(..., *part.relative_to(box))] = self.read_chunk(key, chunk)[(..., *part.relative_to(chunk))]
        return out

    def finish(self) -> None:
        """Flush and close whatever a writer holds open; the store stays usable."""

    def drop_lossless_copies(self) -> None:
        """Remove the lossless copies kept for reading back, once nothing needs them."""

    def writer(self) -> "DirectWriter":
        """What one task writes through; its ``finish`` is called when the task's chunks are all
        written, ``abort`` when the task fails. Layouts whose files hold many chunks (shards)
        collect them here."""
        return DirectWriter(self)


class DirectWriter:
    """Writes every chunk straight into the store."""

    def __init__(self, store: ChunkStore):
        self.store = store

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        self.store.write_chunk(key, box, array)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass
