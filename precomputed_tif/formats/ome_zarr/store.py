"""OME-Zarr 0.5: each scale a Zarr v3 array ``<key>/`` whose chunks are grouped into shards.

Array shape (z, y, x), or (c, z, y, x) with every channel in each chunk when the
volume has several channels. The inner chunks are the pyramid's chunks (so a
viewer fetches exactly what Neuroglancer's precomputed chunks would hold); the
shards are the regions one conversion task writes (``info["precomputed_tif"]
["zarr_shards"]``, x, y, z voxels per scale), so no two tasks ever write one
file. The arrays' ``zarr.json`` is made by zarr-python (in memory, then stored
through the dataset's storage), so it is what Zarr readers expect; shards are
written here, streaming, one chunk at a time, through the storage
(:mod:`precomputed_tif.formats.ome_zarr.shards`), each inner chunk compressed with the
same Blosc settings as the ``zarr`` format. The multiscale group metadata
(NGFF) is written at the end, beside ``info`` (:mod:`precomputed_tif.formats.zarr.ngff`).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Literal

import numcodecs
import numpy as np

from ...errors import DamagedData, PrecomputedTifError
from ...geometry import Box
from ...info import VolumeInfo
from ...storage import ObjectReader, Storage, StorageLike
from ..store import ChunkStore, ShardOwningWriter
from ..zarr.blosc_frame import check_frame
from ..zarr.store import COMPRESSOR
from .shards import EMPTY, INDEX_CODECS, ZarrShardWriter, read_index

ZARR_JSON = "zarr.json"
# Shard indexes kept per store; each is 16 bytes per inner chunk.
INDEX_CACHE = 256


class OmeZarrStore(ChunkStore):
    format = "ome-zarr"
    _caches = ("_meta", "_indexes")

    def __init__(self, root: StorageLike, info: dict | VolumeInfo):
        super().__init__(root, info)
        self._meta: dict[str, dict] = {}
        self._indexes: dict[tuple, np.ndarray] = {}

    @classmethod
    def holds_dir(cls, level_dir: str) -> bool:
        try:
            with open(os.path.join(level_dir, ZARR_JSON), "rb") as f:
                return _is_v3_array(f.read())
        except OSError:
            return False

    @classmethod
    def holds_objects(cls, storage: Storage, level_key: str) -> bool:
        try:
            raw = storage.get(f"{level_key}/{ZARR_JSON}")
        except (OSError, PrecomputedTifError):
            return False
        return raw is not None and _is_v3_array(raw)

    def axis_names(self) -> list[str]:
        return (["t"] if self.n_timepoints > 1 else []) + (["c"] if self.channels > 1 else []) + ["z", "y", "x"]

    def shard_size(self, key: str) -> tuple[int, int, int]:
        """(x, y, z) voxels of a scale's shards, as the conversion planned them."""
        return self.volume_info.zarr_shards.get(key) or self.chunk_size(key)

    def create(self, n_writers: int = 1) -> None:
        import zarr
        from zarr.codecs import BloscCodec

        from ..zarr.ngff import zarr_objects

        super().create(n_writers)
        channels = (self.channels,) if self.channels > 1 else ()
        # A time series: a leading t axis, one time point per chunk and per shard.
        times, one = ((self.n_timepoints,), (1,)) if self.n_timepoints > 1 else ((), ())
        Shuffle = Literal["noshuffle", "shuffle", "bitshuffle"]
        names: dict[int, Shuffle] = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}  # numcodecs' numbers
        shuffle = names[COMPRESSOR["shuffle"]]
        for s in self.volume_info.scales:
            if self.holds(self.storage, s.key):
                continue  # made by an earlier run of the same conversion
            x, y, z = s.size
            cx, cy, cz = s.chunk_size
            sx, sy, sz = self.shard_size(s.key)
            objects = zarr_objects(functools.partial(
                zarr.create_array, shape=(*times, *channels, z, y, x), chunks=(*one, *channels, cz, cy, cx),
                shards=(*one, *channels, sz, sy, sx), dtype=self.dtype, fill_value=0, zarr_format=3,
                compressors=BloscCodec(cname=COMPRESSOR["cname"], clevel=COMPRESSOR["clevel"], shuffle=shuffle),
                dimension_names=self.axis_names(),
            ))
            for name, data in objects.items():  # zarr.json alone
                self.put_object(self.level_key(s.key, name), data)
        self.sync_created()

    def write_metadata(self, info: dict, name: str) -> None:
        from ..zarr.ngff import write_root

        write_root(self.storage, info, name, "0.5")

    # -- the arrays' metadata -------------------------------------------------------------------

    def _array_meta(self, key: str) -> dict:
        meta = self._meta.get(key)
        if meta is None:
            level, meta_key = self.level_key(key), self.level_key(key, ZARR_JSON)
            meta = self._meta[key] = _parse_array(self.get_object(meta_key), self.location(meta_key),
                                                  self.location(level))
        return meta

    def _locate(self, key: str, box: Box) -> tuple[str, tuple[int, ...] | None, tuple[int, ...] | None]:
        """The storage key of the object that holds the chunk ``box`` of a scale, the shard's grid
        of inner chunks, and the chunk's position in that grid (both in the array's axis order);
        the last two None when the scale is not sharded (the object is the chunk's own)."""
        meta = self._array_meta(key)
        inner, outer = meta["inner"], meta["outer"]
        time = self.time_index()
        corner = time + (0,) * (len(inner) - 3 - len(time)) + (box.z0, box.y0, box.x0)
        chunk = tuple(c // n for c, n in zip(corner, inner))
        if outer is None:
            return self._chunk_key(key, meta, chunk), None, None
        per_shard = tuple(o // n for o, n in zip(outer, inner))
        shard = tuple(c // p for c, p in zip(chunk, per_shard))
        position = tuple(c % p for c, p in zip(chunk, per_shard))
        return self._chunk_key(key, meta, shard), per_shard, position

    def _chunk_key(self, key: str, meta: dict, index: tuple) -> str:
        """The storage key of the chunk (or shard) at grid ``index``, by the array's chunk-key
        encoding: ``c/0/1/2`` (default) or ``0/1/2`` (v2), with the separator the array records."""
        parts = [str(i) for i in index]
        if meta["encoding"] != "v2":
            parts = ["c"] + parts
        return self.level_key(key, meta["separator"].join(parts))

    # -- writing -------------------------------------------------------------------------------

    def encode(self, key: str, box: Box, array: np.ndarray) -> bytes:
        """One inner chunk's bytes: padded to the full chunk with the fill value (as Zarr stores
        edge chunks), little-endian, compressed."""
        meta = self._array_meta(key)
        inner = meta["inner"]
        chunk: np.ndarray = array.reshape(self.array_shape(box))
        if self.time_index():
            chunk = chunk[np.newaxis]
        if chunk.shape != inner:
            full = np.full(inner, meta["fill"], meta["dtype"])
            full[tuple(slice(0, n) for n in chunk.shape)] = chunk
            chunk = full
        data = np.ascontiguousarray(chunk, meta["dtype"].newbyteorder("<"))
        return meta["codec"].encode(data) if meta["codec"] is not None else data.tobytes()

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        raise PrecomputedTifError(f"scale {key} is sharded: its chunks are written a whole shard at a time")

    def writer(self) -> ShardTaskWriter:
        return ShardTaskWriter(self)

    # -- reading -------------------------------------------------------------------------------

    def _index(self, shard_key: str, reader: ObjectReader, per_shard) -> np.ndarray:
        """The index of the version of the shard ``reader`` reads (cached by that version)."""
        stamp = (shard_key, reader.stat.version)
        index = self._indexes.get(stamp)
        if index is None:
            index = read_index(reader, self.location(shard_key), per_shard)
            with self._lock:
                if len(self._indexes) >= INDEX_CACHE:
                    self._indexes.clear()
                self._indexes[stamp] = index
        return index

    def _read_bytes(self, key: str, box: Box) -> tuple[bytes | None, str]:
        """The stored bytes of chunk ``box`` (None when never written) and how messages name the
        object they are in. A shard's index and chunk come from one version of it."""
        object_key, per_shard, position = self._locate(key, box)
        name = self.location(object_key)
        if per_shard is None:
            return self.get_object(object_key), name
        reader = self.open_object(object_key)
        if reader is None:
            return None, name
        with reader:
            offset, length = self._index(object_key, reader, per_shard)[position]
            if offset == EMPTY:
                return None, name
            try:
                data = reader.read(int(offset), int(length))
            except OSError as exc:
                raise DamagedData(f"cannot read {name}: {exc.strerror or exc}") from None
        if len(data) != int(length):
            raise DamagedData(f"{name} is truncated")
        return data, name

    def chunk_keys(self, key: str, box: Box) -> list[str]:
        # The shard's index is cached by the object's version (see _index), so the version of the
        # object is the version of what is read.
        return [self._locate(key, box)[0]]

    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        meta = self._array_meta(key)
        data, path = self._read_bytes(key, box)
        shape = self.array_shape(box)
        if data is None:
            return np.full(shape, meta["fill"], self.dtype)
        inner = meta["inner"]
        expected = int(np.prod(inner)) * meta["dtype"].itemsize
        codec = meta["codec"]
        if codec is not None and codec.codec_id == "blosc":
            check_frame(data, expected, path)
        try:
            raw = codec.decode(data) if codec is not None else data
            raw = np.frombuffer(memoryview(raw).cast("B"), np.uint8)
        except Exception as exc:
            raise DamagedData(f"{path} holds an unreadable Zarr chunk ({exc})") from None
        if raw.nbytes != expected:
            raise DamagedData(f"{path}: a chunk decodes to {raw.nbytes} bytes, not {expected}")
        full = raw.view(meta["dtype"]).reshape(inner)
        return full[(...,) + tuple(slice(0, n) for n in box.shape)].astype(self.dtype, copy=True).reshape(shape)


def _is_v3_array(raw: bytes) -> bool:
    """Whether ``raw`` is the ``zarr.json`` of a Zarr v3 array."""
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and meta.get("zarr_format") == 3 and meta.get("node_type") == "array"


def _parse_array(raw: bytes | None, path: str, level: str) -> dict:
    """What reading and writing need of a Zarr v3 array's ``zarr.json`` (``raw``; None when
    there is none): the shard (``outer``) and inner chunk shapes, data type, fill value,
    chunk-key encoding and the inner codec. Only what this project writes, and the same without
    sharding, is understood; anything else is a user error naming what is not (``path`` names
    the ``zarr.json``, ``level`` the array)."""
    try:
        if raw is None:
            raise PrecomputedTifError(f"{level} is not a Zarr v3 array (no zarr.json)")
        meta = json.loads(raw)
        grid = meta["chunk_grid"]["configuration"]["chunk_shape"]
        dtype = np.dtype(meta["data_type"])
        encoding = meta.get("chunk_key_encoding", {"name": "default"})
        default_separator = "/" if encoding["name"] == "default" else "."
        separator = (encoding.get("configuration") or {}).get("separator", default_separator)
        codecs = meta["codecs"]
        outer = None
        if len(codecs) == 1 and codecs[0]["name"] == "sharding_indexed":
            conf = codecs[0]["configuration"]
            if conf.get("index_location", "end") != "end" or conf.get("index_codecs", INDEX_CODECS) != INDEX_CODECS:
                raise PrecomputedTifError(f"{path}: only shard indexes at the end with a crc32c are supported")
            outer, inner, codecs = tuple(grid), tuple(conf["chunk_shape"]), conf["codecs"]
        else:
            inner = tuple(grid)
        if not codecs or codecs[0]["name"] != "bytes" or len(codecs) > 2:
            raise PrecomputedTifError(f"{path}: unsupported codecs {[c['name'] for c in codecs]}")
        if (codecs[0].get("configuration") or {}).get("endian", "little") != "little" and dtype.itemsize > 1:
            dtype = dtype.newbyteorder(">")
        codec = _compressor(codecs[1]) if len(codecs) == 2 else None
    except PrecomputedTifError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise PrecomputedTifError(f"{path} is not readable Zarr v3 metadata ({exc})") from None
    return {"outer": outer, "inner": inner, "dtype": dtype, "fill": meta.get("fill_value") or 0,
            "encoding": encoding["name"], "separator": separator, "codec": codec}


def _compressor(spec: dict):
    conf = spec.get("configuration") or {}
    name = spec["name"]
    if name == "blosc":
        # Decoding needs none of this (a frame describes itself); encoding follows zarr.json.
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}.get(conf.get("shuffle", "noshuffle"), 0)
        return numcodecs.Blosc(cname=conf.get("cname", "zstd"), clevel=conf.get("clevel", 5), shuffle=shuffle,
                               blocksize=conf.get("blocksize", 0))
    if name == "gzip":
        return numcodecs.GZip(level=conf.get("level", 5))
    if name == "zstd":
        return numcodecs.Zstd(level=conf.get("level", 0))
    raise PrecomputedTifError(f"unsupported Zarr codec {name!r}")


class ShardTaskWriter(ShardOwningWriter):
    """What one task writes: the one shard of each scale that the task owns."""

    store: OmeZarrStore

    def __init__(self, store: OmeZarrStore):
        super().__init__(store)

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        store = self.store
        shard_key, per_shard, position = store._locate(key, box)
        if per_shard is None:
            raise PrecomputedTifError(f"{store.location(store.level_key(key))} is not sharded")
        writer = self.owned(key, shard_key, lambda: ZarrShardWriter(store.storage, shard_key, per_shard))
        writer.add(position, store.encode(key, box, array))
