"""A toy output format, to show (and test) that adding a format is one class and one registry
entry: each chunk is a NumPy ``.npy`` file, ``<key>/x0-x1_y0-y1_z0-z1.npy``."""

from __future__ import annotations

import io
import os

import numpy as np

from precomputed_tif.formats import Format
from precomputed_tif.formats.store import ChunkStore
from precomputed_tif.geometry import Box


class NpyStore(ChunkStore):
    format = "npy"

    @classmethod
    def holds_dir(cls, level_dir: str) -> bool:
        return any(n.endswith(".npy") for n in os.listdir(level_dir))

    def chunk_key(self, key: str, box: Box) -> str:
        return self.level_key(key, box.name + ".npy")

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, array)
        self.put_object(self.chunk_key(key, box), buf.getvalue())

    def chunk_keys(self, key: str, box: Box) -> list[str]:
        return [self.chunk_key(key, box)]

    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        data = self.get_object(self.chunk_key(key, box))
        return np.zeros(self.array_shape(box), self.dtype) if data is None else np.load(io.BytesIO(data))


class NpyFormat(Format):
    """The whole of a new format: its name and its store."""

    name = "npy"
    store = "tests.helpers.toy_format:NpyStore"
