"""Neuroglancer's own precomputed format: what any static web server or bucket serves.

Each scale is either unsharded -- one object per chunk, ``<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>``
-- or sharded (its ``info`` entry has ``sharding``): ``<key>/<shard>.shard`` objects
(:mod:`precomputed_tif.formats.precomputed.shards`). Everything is read and written through the
store's storage by key, so a local directory and an object store take the same code. Chunks are
encoded as the scale's ``encoding`` says (:mod:`precomputed_tif.formats.precomputed.encodings`). A
layout and an encoding: nothing here knows about pixels beyond handing arrays to the encoding.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil

import numpy as np

from ...errors import DamagedData, PrecomputedTifError
from ...geometry import Box
from ...info import VolumeInfo
from ...storage import AccessDenied, Storage, StorageLike
from ..store import ChunkStore, ShardOwningWriter
from .encodings import Raw, from_scale_info
from .shards import ShardReader, ShardWriter, chunk_key, shard_key, shard_of

_CHUNK_FILE = re.compile(r"^\d+-\d+_\d+-\d+_\d+-\d+$")
# Where a lossy scale that a later pass reads back keeps its chunks losslessly meanwhile:
# hidden (never served) and inside the scale's prefix (removed with it).
LOSSLESS_DIR = ".lossless"
# How many of a level's first objects holds_objects looks at: listings are sorted, so the
# lossless copies (hidden, sorting first) may come before a chunk or shard.
_HOLDS_LOOKS_AT = 16


class PrecomputedStore(ChunkStore):
    format = "precomputed"
    _caches = ("_readers",)

    def __init__(self, root: StorageLike, info: dict | VolumeInfo):
        super().__init__(root, info)
        # Each encoding's own settings (jpeg quality, block size) are the format's to read.
        self._encodings = {s["key"]: from_scale_info(s) for s in self.info["scales"]}
        self._readers: dict[str, ShardReader] = {}

    @classmethod
    def holds_dir(cls, level_dir: str) -> bool:
        with os.scandir(level_dir) as it:
            return any(e.name.endswith(".shard") or _CHUNK_FILE.match(e.name) for e in it)

    @classmethod
    def holds_objects(cls, storage: Storage, level_key: str) -> bool:
        # A shard, a chunk, or a chunk's lossless copy among the level's first few objects.
        try:
            for k in itertools.islice(storage.list(level_key), _HOLDS_LOOKS_AT):
                name = k[len(level_key) + 1:]
                if "/" not in name and name.endswith(".shard"):
                    return True
                if _CHUNK_FILE.match(name.removeprefix(LOSSLESS_DIR + "/")):
                    return True
        except AccessDenied:
            # A published bucket that lets its objects be read but not listed: of the formats
            # that keep objects in buckets, the others have a metadata object in each level.
            return not any(storage.exists(f"{level_key}/{name}") for name in (".zarray", "zarr.json"))
        return False

    def create(self, n_writers: int = 1) -> None:
        # No checksum files: the format has no place for them, and these files are published as
        # they are. Sharded and unsharded files alike are flushed before their task is recorded.
        super().create(n_writers)  # the level directories, in a local directory
        self.sync_created()

    def sharding(self, key: str) -> dict | None:
        return self.scale(key).sharding

    def encode(self, key: str, box: Box, array: np.ndarray) -> bytes:
        array = array.reshape(self.channels, *box.shape).astype(self.dtype, copy=False)
        return self._encodings[key].encode(array)

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        if self.sharding(key):
            raise PrecomputedTifError(f"scale {key} is sharded: its chunks are written a whole shard at a time")
        self.put_object(self.level_key(key, self._scales[key].name(box)), self.encode(key, box, array),
                        compressible=self._encodings[key].compressible)
        self.keep_lossless(key, box, array)

    def keep_lossless(self, key: str, box: Box, array: np.ndarray) -> None:
        if key in self.lossless_copies:
            self.put_object(self.level_key(key, LOSSLESS_DIR, self._scales[key].name(box)),
                            Raw().encode(array.astype(self.dtype, copy=False)), compressible=True)

    def drop_lossless_copies(self) -> None:
        for key in self.volume_info.keys:
            prefix = self.level_key(key, LOSSLESS_DIR)
            for k in list(self.storage.list(prefix)):
                self.storage.delete(k)
            if self.is_local:
                # The directory itself, and what a killed writer left in it under a temporary name.
                shutil.rmtree(os.path.join(self.root, *prefix.split("/")), ignore_errors=True)

    def chunk_key(self, key: str, box: Box) -> int:
        grid = self._scales[key]
        return chunk_key(grid.grid, grid.chunk_index(box))

    def shard_writer(self, key: str, shard: int) -> ShardWriter:
        spec = self.sharding(key)
        # Shards exist only in sharded scales: TaskWriter asks for a writer only there.
        assert spec is not None, f"scale {key} is not sharded"
        return ShardWriter(self.storage, self.level_key(key), spec, shard)

    def _object_key(self, key: str, box: Box) -> tuple[str, bool]:
        """The storage key of the object chunk ``box`` of scale ``key`` is read from, and whether
        it is a shard."""
        self.scale(key)  # a user error for a scale info does not have
        grid = self._scales[key]
        if key in self.lossless_copies:
            return self.level_key(key, LOSSLESS_DIR, grid.name(box)), False
        spec = self.sharding(key)
        if spec:
            return shard_key(self.level_key(key), spec, shard_of(spec, self.chunk_key(key, box))), True
        return self.level_key(key, grid.name(box)), False

    def chunk_keys(self, key: str, box: Box) -> list[str]:
        # A shard's minishard indexes are cached by the shard's version (see ShardReader), so
        # the shard's version is the version of what is read.
        return [self._object_key(key, box)[0]]

    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        object_key, sharded = self._object_key(key, box)
        encoding = Raw() if key in self.lossless_copies else self._encodings[key]
        if sharded:
            spec = self.sharding(key)
            assert spec is not None
            reader = self._readers.get(key)
            if reader is None:
                reader = self._readers[key] = ShardReader(self, self.level_key(key), spec)
            data = reader.read(self.chunk_key(key, box))
        else:
            data = self.get_object(object_key)
        shape = self.array_shape(box)
        if data is None:
            return np.zeros(shape, self.dtype)
        try:
            array = encoding.decode(data, (self.channels, *box.shape), self.dtype)
        except PrecomputedTifError as exc:
            # The encodings check what they decode: bytes that fail are a damaged file.
            raise DamagedData(f"{self.location(object_key)}: chunk {box.name}: {exc}") from None
        return array.reshape(shape)

    def writer(self) -> TaskWriter:
        return TaskWriter(self)


class TaskWriter(ShardOwningWriter):
    """What one task writes: chunk files of unsharded scales directly, and the one shard of
    each sharded scale that the task owns."""

    store: PrecomputedStore

    def __init__(self, store: PrecomputedStore):
        super().__init__(store)

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        store = self.store
        spec = store.sharding(key)
        if not spec:
            store.write_chunk(key, box, array)
            return
        k = store.chunk_key(key, box)
        shard = shard_of(spec, k)
        self.owned(key, shard, lambda: store.shard_writer(key, shard)).add(k, store.encode(key, box, array))
        store.keep_lossless(key, box, array)
