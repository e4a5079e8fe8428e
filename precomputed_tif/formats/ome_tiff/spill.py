"""Work files between the two stages: the compressed tiles of one z plane, every channel and level.

One file per z, ``.ome-tiff-work/z000123.tiles`` in the destination's storage
(an object like any other, so a rerun after a kill and workers on other
machines find it). It holds the encoded tiles back to back -- channel by
channel, within a channel level by level, within a level row by row of tiles
(the order the OME-TIFF stores them) -- followed by an index: the byte count of
every tile as little-endian uint64, then the number of tiles and a magic number
(uint64 each). Writing streams tile by tile (:meth:`Storage.open_stream`), so a
file under its final name is always complete.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from ...errors import DamagedData, PrecomputedTifError, setting
from ...storage import Storage
from .layout import WORK_DIR

MAGIC = 0x50544F4D45544946  # "PTOMETIF"
_FOOTER = struct.Struct("<QQ")


def spill_key(z: int) -> str:
    """The storage key of plane ``z``'s work file."""
    return f"{WORK_DIR}/z{z:06d}.tiles"


class SpillWriter:
    """Writes one work file; use as a context manager (nothing is left under the final name
    if the block raises). Durable after the storage's :meth:`~Storage.flush`."""

    def __init__(self, storage: Storage, key: str):
        self.key = key
        self._stream = storage.open_stream(key)
        self._counts: list[int] = []

    def add(self, tile: bytes | bytearray) -> None:
        self._stream.write(tile if isinstance(tile, bytes) else bytes(tile))  # (a compressed tile: small)
        self._counts.append(len(tile))

    def __enter__(self) -> SpillWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self._stream.abort()
            return
        try:
            self._stream.write(np.asarray(self._counts, "<u8").tobytes() + _FOOTER.pack(len(self._counts), MAGIC))
            self._stream.close()
        except BaseException:
            self._stream.abort()
            raise


class SpillReader:
    """Reads the tiles of one work file, checking its index against the tiles it should hold."""

    def __init__(self, storage: Storage, key: str, n_tiles: int):
        where = storage.location(key)
        reader = storage.open_reader(key)
        if reader is None:
            raise PrecomputedTifError(
                f"work file {where} is missing; run again with {setting('overwrite', True)} to start over")
        self._reader = reader
        size = reader.stat.size
        index_bytes = 8 * n_tiles + _FOOTER.size
        if size < index_bytes:
            self.close()
            raise DamagedData(f"work file {where} is damaged (too short); run again with {setting('overwrite', True)}")
        tail = reader.read(size - index_bytes, index_bytes)
        count, magic = _FOOTER.unpack(tail[-_FOOTER.size:])
        counts = np.frombuffer(tail[:-_FOOTER.size], "<u8").astype(np.int64)
        if magic != MAGIC or count != n_tiles or int(counts.sum()) != size - index_bytes:
            self.close()
            raise DamagedData(f"work file {where} is damaged or from other settings; run again with "
                              f"{setting('overwrite', True)}")
        self.counts = counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    def tiles(self, first: int, n: int) -> Iterator[bytes]:
        """Tiles ``first`` to ``first + n`` (exclusive) in file order."""
        for i in range(first, first + n):
            yield self._reader.read(int(self.offsets[i]), int(self.counts[i]))

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> SpillReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
