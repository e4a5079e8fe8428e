"""Neuroglancer's own precomputed format: what any static web server or bucket serves.

Each scale is either unsharded -- one file per chunk, ``<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>``
-- or sharded (its ``info`` entry has ``sharding``): ``<key>/<shard>.shard`` files
(:mod:`precomputed_tif.formats.precomputed.shards`). Chunks are encoded as the scale's ``encoding``
says (:mod:`precomputed_tif.formats.precomputed.encodings`). A layout and an encoding: nothing here
knows about pixels beyond handing arrays to the encoding.
"""

from __future__ import annotations

import os
import re
import shutil

import numpy as np

from ...errors import DamagedData, PrecomputedTifError
from ...geometry import Box, Scale
from ...storage.atomic import write_atomic
from ..store import ChunkStore, ShardOwningWriter
from .encodings import Raw, from_scale_info
from .shards import ShardReader, ShardWriter, chunk_key, shard_of, shard_path

_CHUNK_FILE = re.compile(r"^\d+-\d+_\d+-\d+_\d+-\d+$")
# Where a lossy scale that a later pass reads back keeps its chunks losslessly meanwhile:
# hidden (never served) and inside the scale's directory (removed with it).
LOSSLESS_DIR = ".lossless"


class PrecomputedStore(ChunkStore):
    format = "precomputed"
    _caches = ("_readers",)

    def __init__(self, root: str, info: dict):
        super().__init__(root, info)
        self._grids = {s["key"]: Scale.from_info(s) for s in info["scales"]}
        self._encodings = {s["key"]: from_scale_info(s) for s in info["scales"]}
        self._readers: dict[str, ShardReader] = {}

    @classmethod
    def holds_dir(cls, level_dir: str) -> bool:
        with os.scandir(level_dir) as it:
            return any(e.name.endswith(".shard") or _CHUNK_FILE.match(e.name) for e in it)

    def create(self, n_writers: int = 1) -> None:
        # No checksum files: the format has no place for them, and these files are published as
        # they are. Sharded and unsharded files alike are flushed before their task is recorded.
        for s in self.info["scales"]:
            os.makedirs(self.level_dir(s["key"]), exist_ok=True)
        self.sync_created()

    def sharding(self, key: str) -> dict | None:
        return self.scale(key).get("sharding")

    def encode(self, key: str, box: Box, array: np.ndarray) -> bytes:
        array = array.reshape(self.channels, *box.shape).astype(self.dtype, copy=False)
        return self._encodings[key].encode(array)

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        if self.sharding(key):
            raise PrecomputedTifError(f"scale {key} is sharded: its chunks are written a whole shard at a time")
        path = os.path.join(self.level_dir(key), self._grids[key].name(box))
        write_atomic(path, self.encode(key, box, array), durable=False)
        self._unsynced.append(path)
        self.keep_lossless(key, box, array)

    def keep_lossless(self, key: str, box: Box, array: np.ndarray) -> None:
        if key in self.lossless_copies:
            path = os.path.join(self.level_dir(key), LOSSLESS_DIR, self._grids[key].name(box))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, Raw().encode(array.astype(self.dtype, copy=False)), durable=False)
            self._unsynced.append(path)

    def drop_lossless_copies(self) -> None:
        for s in self.info["scales"]:
            shutil.rmtree(os.path.join(self.level_dir(s["key"]), LOSSLESS_DIR), ignore_errors=True)

    def chunk_key(self, key: str, box: Box) -> int:
        grid = self._grids[key]
        return chunk_key(grid.grid, grid.chunk_index(box))

    def shard_writer(self, key: str, shard: int) -> ShardWriter:
        spec = self.sharding(key)
        # Shards exist only in sharded scales: TaskWriter asks for a writer only there.
        assert spec is not None, f"scale {key} is not sharded"
        return ShardWriter(self.level_dir(key), spec, shard)

    def _chunk_path(self, key: str, box: Box) -> tuple[str, bool]:
        """The file chunk ``box`` of scale ``key`` is read from, and whether it is a shard."""
        self.scale(key)  # a user error for a scale info does not have
        grid = self._grids[key]
        if key in self.lossless_copies:
            return os.path.join(self.level_dir(key), LOSSLESS_DIR, grid.name(box)), False
        spec = self.sharding(key)
        if spec:
            return shard_path(self.level_dir(key), spec, shard_of(spec, self.chunk_key(key, box))), True
        return os.path.join(self.level_dir(key), grid.name(box)), False

    def chunk_files(self, key: str, box: Box) -> list[str]:
        # A shard's minishard indexes are cached by the shard file's version (see ShardReader),
        # so the file's version is the version of what is read.
        return [self._chunk_path(key, box)[0]]

    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        path, sharded = self._chunk_path(key, box)
        encoding = Raw() if key in self.lossless_copies else self._encodings[key]
        if sharded:
            spec = self.sharding(key)
            assert spec is not None
            reader = self._readers.get(key)
            if reader is None:
                reader = self._readers[key] = ShardReader(self.level_dir(key), spec)
            data = reader.read(self.chunk_key(key, box))
        else:
            data = self.read_file(path)
        shape = self.array_shape(box)
        if data is None:
            return np.zeros(shape, self.dtype)
        try:
            array = encoding.decode(data, (self.channels, *box.shape), self.dtype)
        except PrecomputedTifError as exc:
            # The encodings check what they decode: bytes that fail are a damaged file.
            raise DamagedData(f"{path}: chunk {box.name}: {exc}") from None
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
