"""Work files between the two stages: the compressed tiles of one z plane, every channel and level.

One file per z, ``z000123.tiles`` in the destination's work directory. It
holds the encoded tiles back to back -- channel by channel, within a channel
level by level, within a level row by row of tiles (the order the OME-TIFF
stores them) -- followed by an index: the byte count of every tile as
little-endian uint64, then the number of tiles and a magic number (uint64
each). Writing streams tile by tile to a temporary name, renamed when whole,
so a file under its final name is always complete.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import numpy as np

from ...errors import DamagedData, PrecomputedTifError, setting
from ...storage.atomic import temporary_name

MAGIC = 0x50544F4D45544946  # "PTOMETIF"
_FOOTER = struct.Struct("<QQ")


def spill_path(work: str, z: int) -> str:
    return os.path.join(work, f"z{z:06d}.tiles")


class SpillWriter:
    """Writes one work file; use as a context manager (nothing is left under the final name
    if the block raises)."""

    def __init__(self, path: str):
        self.path = path
        self._tmp = temporary_name(path)
        self._file = open(self._tmp, "xb")  # noqa: SIM115 - held by the object, which closes it
        self._counts: list[int] = []

    def add(self, tile: bytes | bytearray) -> None:
        self._file.write(tile)
        self._counts.append(len(tile))

    def __enter__(self) -> SpillWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self._file.write(np.asarray(self._counts, "<u8").tobytes())
                self._file.write(_FOOTER.pack(len(self._counts), MAGIC))
            self._file.close()
            if kind is None:
                os.replace(self._tmp, self.path)
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)


class SpillReader:
    """Reads the tiles of one work file, checking its index against the tiles it should hold."""

    def __init__(self, path: str, n_tiles: int):
        self.path = path
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - held by the object, which closes it
        except FileNotFoundError:
            raise PrecomputedTifError(
                f"work file {path} is missing; run again with {setting('overwrite', True)} to start over") from None
        size = os.fstat(self._file.fileno()).st_size
        index_bytes = 8 * n_tiles + _FOOTER.size
        if size < index_bytes:
            self.close()
            raise DamagedData(f"work file {path} is damaged (too short); run again with {setting('overwrite', True)}")
        self._file.seek(size - index_bytes)
        tail = self._file.read(index_bytes)
        count, magic = _FOOTER.unpack(tail[-_FOOTER.size:])
        counts = np.frombuffer(tail[:-_FOOTER.size], "<u8").astype(np.int64)
        if magic != MAGIC or count != n_tiles or int(counts.sum()) != size - index_bytes:
            self.close()
            raise DamagedData(f"work file {path} is damaged or from other settings; run again with "
                              f"{setting('overwrite', True)}")
        self.counts = counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    def tiles(self, first: int, n: int) -> Iterator[bytes]:
        """Tiles ``first`` to ``first + n`` (exclusive) in file order."""
        self._file.seek(int(self.offsets[first]))
        for i in range(first, first + n):
            yield self._file.read(int(self.counts[i]))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SpillReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
