"""Each scale a Zarr v2 array ``<key>/`` with ``/`` separated chunk keys, shape (z, y, x),
or (c, z, y, x) with every channel in each chunk when the volume has several channels.
The root is an OME-NGFF 0.4 multiscale image group whose levels are these arrays
(:mod:`precomputed_tif.formats.zarr.ngff`), so the same directory is a precomputed dataset
(through this project's servers) and an OME-Zarr (through any static server).

The array metadata (``.zarray``) is made by zarr-python (in memory, then stored
through the dataset's storage), so it is exactly what Zarr readers expect.
Chunks are encoded and written here with the array's own numcodecs compressor:
a whole chunk at a time, each a whole object of the storage (in a local
directory a temporary file and a rename), which is both faster than going
through zarr-python for every chunk and safe against crashes. Reading uses
whatever compressor, order and fill value the array's ``.zarray`` records, so
datasets written by other tools and settings serve too.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import numcodecs
import numpy as np

from ...errors import DamagedData, PrecomputedTifError
from ...geometry import Box, as_triple, ceil_div
from ...info import VolumeInfo
from ...storage import Storage, StorageLike
from ..store import ChunkStore
from .blosc_frame import check_frame

# lz4 with byte shuffle encodes a 64^3 uint16 chunk in about 0.5 ms, zstd at
# level 1 takes about four times as long for 15% smaller files (measured with
# benchmarks/convert.py); conversion speed wins.
COMPRESSOR: dict[str, Any] = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
# A Zarr v2 array's metadata, in the array's directory (its level key).
ZARRAY = ".zarray"


class ZarrStore(ChunkStore):
    format = "zarr"
    _caches = ("_meta",)

    def __init__(self, root: StorageLike, info: dict | VolumeInfo):
        super().__init__(root, info)
        self._meta: dict[str, dict] = {}

    @classmethod
    def holds_dir(cls, level_dir: str) -> bool:
        return os.path.exists(os.path.join(level_dir, ZARRAY))

    @classmethod
    def holds_objects(cls, storage: Storage, level_key: str) -> bool:
        return storage.exists(f"{level_key}/{ZARRAY}")

    def create(self, n_writers: int = 1) -> None:
        import zarr

        from .ngff import zarr_major, zarr_objects

        super().create(n_writers)

        # zarr-python 3 writes Zarr v3 unless told otherwise; 2 knows only v2.
        version: dict[str, Any] = {"zarr_format": 2} if zarr_major() >= 3 else {}  # for zarr.open_array
        for s in self.volume_info.scales:
            if self.holds(self.storage, s.key):
                continue  # made by an earlier run of the same conversion
            x, y, z = s.size
            cx, cy, cz = s.chunk_size
            channels = (self.channels,) if self.channels > 1 else ()
            # A time series (OME-Zarr 0.4): a leading t axis, one time point per chunk.
            times, one = ((self.n_timepoints,), (1,)) if self.n_timepoints > 1 else ((), ())
            objects = zarr_objects(functools.partial(
                zarr.open_array, mode="w", shape=(*times, *channels, z, y, x), chunks=(*one, *channels, cz, cy, cx),
                dtype=self.dtype, fill_value=0, order="C", compressor=numcodecs.get_codec(COMPRESSOR),
                dimension_separator="/", **version,
            ))
            # .zarray last: it is what marks the array as made (holds), for a rerun to keep.
            for name in sorted(objects, key=lambda n: n == ZARRAY):
                self.put_object(self.level_key(s.key, name), objects[name])
        self.create_checksums()
        self.sync_created()

    def write_metadata(self, info: dict, name: str) -> None:
        # The root becomes an NGFF 0.4 multiscale image, so any Zarr viewer opens it as zarr://.
        from .ngff import write_root

        write_root(self.storage, info, name, "0.4")

    def _array_meta(self, key: str) -> dict:
        meta = self._meta.get(key)
        if meta is None:
            path = self.location(self.level_key(key, ZARRAY))
            try:
                raw = self.get_object(self.level_key(key, ZARRAY))
                if raw is None:
                    raise FileNotFoundError(path)
                zarray = json.loads(raw)
                meta = {
                    "chunks": tuple(zarray["chunks"]),
                    "dtype": np.dtype(zarray["dtype"]),
                    "order": zarray.get("order", "C"),
                    "fill": zarray.get("fill_value") or 0,
                    "sep": zarray.get("dimension_separator", "."),
                    "codec": numcodecs.get_codec(zarray["compressor"]) if zarray.get("compressor") else None,
                    "filters": [numcodecs.get_codec(f) for f in zarray.get("filters") or []],
                }
            except FileNotFoundError:
                level = self.location(self.level_key(key))
                raise PrecomputedTifError(f"{level} is not a Zarr array (no .zarray)") from None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise PrecomputedTifError(f"{path} is not readable Zarr metadata ({exc})") from None
            self._meta[key] = meta
        return meta

    def _chunk_key(self, key: str, index: tuple[int, ...]) -> str:
        """The storage key of the Zarr chunk at grid ``index`` (the array's axis order) of scale
        ``key``: its indices joined by the array's dimension separator (``/`` or ``.``)."""
        return self.level_key(key, self._array_meta(key)["sep"].join(str(i) for i in index))

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        meta = self._array_meta(key)
        chunks = meta["chunks"]
        cz, cy, cx = chunks[-3:]
        index_zyx = (box.z0 // cz, box.y0 // cy, box.x0 // cx)
        index = self._lead(chunks) + index_zyx
        if self.time_index():
            array = array[np.newaxis]
        if array.shape != chunks:
            # Zarr stores edge chunks at full size, padded with the fill value.
            full = np.full(chunks, meta["fill"], meta["dtype"])
            full[tuple(slice(0, n) for n in array.shape)] = array
            array = full
        encoded: Any = np.ascontiguousarray(array, dtype=meta["dtype"])  # numcodecs: any buffer
        for f in meta["filters"]:
            encoded = f.encode(encoded)
        if meta["codec"] is not None:
            encoded = meta["codec"].encode(encoded)
        # The codec's bytes as they are (bytes() of bytes is the same object); an array left
        # uncompressed becomes its raw bytes, so the checksum counts bytes, not rows.
        data = bytes(encoded)
        self.put_object(self._chunk_key(key, index), data)
        self.record_checksum(key, index_zyx, data)

    def _read_zarr_chunk(self, key: str, index: tuple[int, ...]) -> np.ndarray | None:
        meta = self._array_meta(key)
        chunk_key = self._chunk_key(key, index)
        path = self.location(chunk_key)  # how messages name the chunk
        data = self.get_object(chunk_key)
        if data is None:
            return None
        if meta["chunks"][-3:] == tuple(reversed(self.chunk_size(key))):
            self.verify_checksum(key, as_triple(index[-3:]), data, path)
        expected = int(np.prod(meta["chunks"])) * meta["dtype"].itemsize
        codec = meta["codec"]
        if codec is not None and codec.codec_id == "blosc":
            # The decoder trusts the frame's own size fields: check them first (see blosc_frame).
            check_frame(data, None if meta["filters"] else expected, path)
        decoded: Any = data  # numcodecs: any buffer
        try:
            if codec is not None:
                decoded = codec.decode(decoded)
            for f in reversed(meta["filters"]):
                decoded = f.decode(decoded)
            flat = np.ascontiguousarray(np.frombuffer(decoded, np.uint8))
        except Exception as exc:
            raise DamagedData(f"{path} is not a readable Zarr chunk ({exc})") from None
        if flat.nbytes != expected:
            raise DamagedData(f"{path} decodes to {flat.nbytes} bytes, the chunk has {expected}")
        chunk = flat.view(meta["dtype"]).reshape(meta["chunks"], order=meta["order"])
        return chunk[0] if self.time_index() else chunk

    def _lead(self, chunks: tuple[int, ...]) -> tuple[int, ...]:
        """The grid index of a chunk's axes before z, y, x: the time point's on a time series' t
        axis, 0 on the others (c: every channel in each chunk)."""
        time = self.time_index()
        return time + (0,) * (len(chunks) - 3 - len(time))

    def _overlapping(self, key: str, box: Box):
        """(index, box) of every Zarr chunk of a scale that ``box`` overlaps, in the array's grid."""
        meta = self._array_meta(key)
        cz, cy, cx = meta["chunks"][-3:]
        lead = self._lead(meta["chunks"])
        for iz in range(box.z0 // cz, ceil_div(box.z1, cz)):
            for iy in range(box.y0 // cy, ceil_div(box.y1, cy)):
                for ix in range(box.x0 // cx, ceil_div(box.x1, cx)):
                    zchunk = Box(ix * cx, (ix + 1) * cx, iy * cy, (iy + 1) * cy, iz * cz, (iz + 1) * cz)
                    yield (*lead, iz, iy, ix), zchunk

    def chunk_keys(self, key: str, box: Box) -> list[str]:
        return [self._chunk_key(key, index) for index, _ in self._overlapping(key, box)]

    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        meta = self._array_meta(key)
        out = np.empty(self.array_shape(box), self.dtype)
        for index, zchunk in self._overlapping(key, box):
            part = zchunk.intersect(box)
            data = self._read_zarr_chunk(key, index)
            if data is None:
                out[(...,) + part.relative_to(box)] = meta["fill"]
            else:
                out[(...,) + part.relative_to(box)] = data[(...,) + part.relative_to(zchunk)]
        return out
