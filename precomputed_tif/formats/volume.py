"""Reading a precomputed dataset written by this project (or the original precomputed-tif)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import PrecomputedTifError
from ..geometry import Box
from ..info import read_volume_info
from ..storage import LocalStorage, Storage, StorageLike, open_storage
from .stores import ChunkStore, open_store


class Volume:
    """A dataset: its ``info`` (``volume_info`` parsed, ``info`` the dict), its store, and reads
    of any box of any scale.

    ``where`` is a :class:`~precomputed_tif.storage.Storage`, or a directory's path (or
    ``file://`` URL), which messages then name by its absolute path."""

    def __init__(self, where: StorageLike, format: str | None = None):
        storage = where if isinstance(where, Storage) else open_storage(where)
        if isinstance(storage, LocalStorage) and not isinstance(where, Storage):
            storage = LocalStorage(os.path.abspath(storage.root))
        self.storage = storage
        self.path = storage.location()
        self.volume_info = read_volume_info(storage)
        self.info = self.volume_info.to_json()
        self.store: ChunkStore = open_store(storage, self.volume_info, format)
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


def open_volume(where: StorageLike, format: str | None = None) -> Volume:
    """Open a dataset (a Storage, or a directory's path or ``file://`` URL); the format is
    detected when not given."""
    return Volume(where, format)
