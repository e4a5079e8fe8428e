"""OME-Zarr 0.5: each scale a Zarr v3 array ``<key>/`` whose chunks are grouped into shards.

Array shape (z, y, x), or (c, z, y, x) with every channel in each chunk when the
volume has several channels. The inner chunks are the pyramid's chunks (so a
viewer fetches exactly what Neuroglancer's precomputed chunks would hold); the
shards are the regions one conversion task writes (``info["precomputed_tif"]
["zarr_shards"]``, x, y, z voxels per scale), so no two tasks ever write one
file. The arrays' ``zarr.json`` is made by zarr-python, so it is what Zarr
readers expect; shards are written here, streaming, one chunk at a time
(:mod:`precomputed_tif.formats.ome_zarr.shards`), each inner chunk compressed with the
same Blosc settings as the ``zarr`` format. The multiscale group metadata
(NGFF) is written at the end, beside ``info`` (:mod:`precomputed_tif.formats.zarr.ngff`).
"""

from __future__ import annotations

import json
import os
from typing import Literal

import numcodecs
import numpy as np

from ...errors import DamagedData, PrecomputedTifError
from ...geometry import Box
from ...info import EXTRA
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

    def __init__(self, root: str, info: dict):
        super().__init__(root, info)
        self._meta: dict[str, dict] = {}
        self._indexes: dict[str, np.ndarray] = {}

    @classmethod
    def holds_dir(cls, level_dir: str) -> bool:
        try:
            with open(os.path.join(level_dir, ZARR_JSON), "rb") as f:
                meta = json.loads(f.read())
        except (OSError, ValueError):
            return False
        return isinstance(meta, dict) and meta.get("zarr_format") == 3 and meta.get("node_type") == "array"

    def axis_names(self) -> list[str]:
        return (["c"] if self.channels > 1 else []) + ["z", "y", "x"]

    def shard_size(self, key: str) -> tuple[int, int, int]:
        """(x, y, z) voxels of a scale's shards, as the conversion planned them."""
        shards = (self.info.get(EXTRA) or {}).get("zarr_shards") or {}
        return tuple(shards.get(key) or self.chunk_size(key))

    def create(self, n_writers: int = 1) -> None:
        import zarr
        from zarr.codecs import BloscCodec

        super().create(n_writers)
        lead = (self.channels,) if self.channels > 1 else ()
        Shuffle = Literal["noshuffle", "shuffle", "bitshuffle"]
        names: dict[int, Shuffle] = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}  # numcodecs' numbers
        shuffle = names[COMPRESSOR["shuffle"]]
        for s in self.info["scales"]:
            if self.holds_dir(self.level_dir(s["key"])):
                continue  # made by an earlier run of the same conversion
            x, y, z = s["size"]
            cx, cy, cz = s["chunk_sizes"][0]
            sx, sy, sz = self.shard_size(s["key"])
            zarr.create_array(
                store=self.level_dir(s["key"]), shape=(*lead, z, y, x), chunks=(*lead, cz, cy, cx),
                shards=(*lead, sz, sy, sx), dtype=self.dtype, fill_value=0, zarr_format=3,
                compressors=BloscCodec(cname=COMPRESSOR["cname"], clevel=COMPRESSOR["clevel"], shuffle=shuffle),
                dimension_names=self.axis_names(),
            )
        self.sync_created()

    def write_metadata(self, info: dict, name: str) -> None:
        from ..zarr.ngff import write_root

        write_root(self.root, info, name, "0.5")

    # -- the arrays' metadata -------------------------------------------------------------------

    def _array_meta(self, key: str) -> dict:
        meta = self._meta.get(key)
        if meta is None:
            meta = self._meta[key] = _parse_array(self.level_dir(key), self.read_file)
        return meta

    def _locate(self, key: str, box: Box) -> tuple[str, tuple[int, ...] | None, tuple[int, ...] | None]:
        """The file that holds the chunk ``box`` of a scale, the shard's grid of inner chunks, and
        the chunk's position in that grid (both in the array's axis order); the last two None
        when the scale is not sharded (the file is the chunk's own)."""
        meta = self._array_meta(key)
        inner, outer = meta["inner"], meta["outer"]
        corner = (0,) * (len(inner) - 3) + (box.z0, box.y0, box.x0)
        chunk = tuple(c // n for c, n in zip(corner, inner))
        if outer is None:
            return self._key_path(key, meta, chunk), None, None
        per_shard = tuple(o // n for o, n in zip(outer, inner))
        shard = tuple(c // p for c, p in zip(chunk, per_shard))
        position = tuple(c % p for c, p in zip(chunk, per_shard))
        return self._key_path(key, meta, shard), per_shard, position

    def _key_path(self, key: str, meta: dict, index: tuple) -> str:
        """Where the chunk (or shard) at grid ``index`` lives, by the array's chunk-key encoding:
        ``c/0/1/2`` (default) or ``0/1/2`` (v2), with the separator the array records."""
        parts = [str(i) for i in index]
        if meta["encoding"] != "v2":
            parts = ["c"] + parts
        return os.path.join(self.level_dir(key), *meta["separator"].join(parts).split("/"))

    # -- writing -------------------------------------------------------------------------------

    def encode(self, key: str, box: Box, array: np.ndarray) -> bytes:
        """One inner chunk's bytes: padded to the full chunk with the fill value (as Zarr stores
        edge chunks), little-endian, compressed."""
        meta = self._array_meta(key)
        inner = meta["inner"]
        chunk: np.ndarray = array.reshape(self.array_shape(box))
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

    def _index(self, path: str, f, per_shard) -> np.ndarray:
        st = os.fstat(f.fileno())
        stamp = f"{path}:{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"
        index = self._indexes.get(stamp)
        if index is None:
            index = read_index(f, path, per_shard)
            with self._lock:
                if len(self._indexes) >= INDEX_CACHE:
                    self._indexes.clear()
                self._indexes[stamp] = index
        return index

    def _read_bytes(self, key: str, box: Box) -> tuple[bytes | None, str]:
        path, per_shard, position = self._locate(key, box)
        if per_shard is None:
            return self.read_file(path), path
        if not os.path.lexists(path):
            return None, path
        if not self.inside(path) or not os.path.isfile(path):
            raise DamagedData(f"{path} is not a regular file inside {self.root}")
        with open(path, "rb") as f:
            offset, length = self._index(path, f, per_shard)[position]
            if offset == EMPTY:
                return None, path
            data = os.pread(f.fileno(), int(length), int(offset))
        if len(data) != int(length):
            raise DamagedData(f"{path} is truncated")
        return data, path

    def chunk_files(self, key: str, box: Box) -> list[str]:
        # The shard's index is cached by this file's version (see _index), so the version of the
        # file is the version of what is read.
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


def _parse_array(level_dir: str, read_file) -> dict:
    """What reading and writing need of a Zarr v3 array's ``zarr.json``: the shard (``outer``)
    and inner chunk shapes, data type, fill value, chunk-key encoding and the inner codec.
    Only what this project writes, and the same without sharding, is understood; anything
    else is a user error naming what is not."""
    path = os.path.join(level_dir, ZARR_JSON)
    try:
        raw = read_file(path)
        if raw is None:
            raise PrecomputedTifError(f"{level_dir} is not a Zarr v3 array (no zarr.json)")
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
        path, per_shard, position = store._locate(key, box)
        if per_shard is None:
            raise PrecomputedTifError(f"{store.level_dir(key)} is not sharded")
        writer = self.owned(key, path, lambda: ZarrShardWriter(path, per_shard))
        writer.add(position, store.encode(key, box, array))
