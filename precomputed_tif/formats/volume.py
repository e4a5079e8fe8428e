"""Reading a precomputed dataset written by this project (or the original precomputed-tif)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import PrecomputedTifError
from ..geometry import Box
from ..info import read_volume_info
from .stores import ChunkStore, open_store


class Volume:
    """A dataset directory: its ``info`` (``volume_info`` parsed, ``info`` the dict), its
    store, and reads of any box of any scale."""

    def __init__(self, path: str, format: str | None = None):
        self.path = os.path.abspath(path)
        self.volume_info = read_volume_info(self.path)
        self.info = self.volume_info.to_json()
        self.store: ChunkStore = open_store(self.path, self.volume_info, format)
        # Each scale's chunk grid, built once: every chunk request parses its name against one.
        self.grids = {s.key: s for s in self.volume_info.scales}

    @property
    def format(self) -> str:
        return self.store.format

    @property
    def keys(self) -> list[str]:
        """Scale keys, finest first."""
        return list(self.volume_info.keys)

    def size(self, key: str) -> tuple[int, int, int]:
        """(x, y, z) size of a scale."""
        return self.store.size(key)

    def read(self, key: str, box: Box | None = None) -> np.ndarray:
        """A box (default: all) of one scale as a (z, y, x) array."""
        if key not in self.keys:
            raise PrecomputedTifError(f"{self.path} has no scale {key!r}; it has {', '.join(self.keys)}")
        x, y, z = self.size(key)
        return self.store.read_region(key, box or Box(0, x, 0, y, 0, z))


def open_volume(path: str, format: str | None = None) -> Volume:
    """Open a dataset directory; the format is detected when not given."""
    return Volume(path, format)
