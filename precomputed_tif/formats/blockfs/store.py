"""Each scale a blockfs volume: ``<key>/precomputed.blockfs`` plus block files ``.0``, ``.1``, ...

One block is one chunk. A volume with several channels has one blockfs volume
per channel: channel 0 in ``precomputed.blockfs`` (so tools that know one
channel still read it) and channel c in ``precomputed_c<c>.blockfs``.
Any number of processes write one level at once (see
:mod:`precomputed_tif.formats.blockfs.directory` for how). The number of block files
follows the number of writers, so writers rarely wait for each other's lock.

A conversion that resumes first gives back what its interrupted runs appended
and never recorded (:func:`~precomputed_tif.formats.blockfs.directory.reclaim`), so any
number of interruptions leaves block files no larger than one run's. A directory
file that cannot be read is made anew when the conversion is unfinished, and
reported, never replaced, when the dataset is finished.
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np

from ...errors import DamagedData, PrecomputedTifError, describe, setting
from ...geometry import Box
from ...info import INFO, VolumeInfo
from ...pipeline.progress import DoneLog
from ..store import ChunkStore
from . import BLOCKFS_SUFFIX, Directory, create
from .directory import UNRECORDED_SUFFIX, reclaim

log = logging.getLogger(__name__)

# lz4 at level 5 (with byte shuffle) compresses a noisy 64^3 uint16 chunk in
# about 0.5 ms; zstd costs several times more for 15% smaller files
# (benchmarks/convert.py).
COMPRESSION, COMPRESSION_LEVEL = "lz4", 5


class BlockfsStore(ChunkStore):
    format = "blockfs"
    local_only = True  # blocks are appended to its files, and only this project's servers read them
    _caches = ("_dirs",)

    def __init__(self, root: str, info: dict | VolumeInfo):
        super().__init__(root, info)
        self._dirs: dict[tuple[str, int], Directory] = {}  # a server's threads open them under _lock

    @classmethod
    def holds_dir(cls, level_dir: str) -> bool:
        return os.path.exists(os.path.join(level_dir, BLOCKFS_SUFFIX))

    def directory_path(self, key: str, channel: int = 0) -> str:
        name = BLOCKFS_SUFFIX if channel == 0 else BLOCKFS_SUFFIX.replace(".", f"_c{channel}.", 1)
        return os.path.join(self.level_dir(key), name)

    def create(self, n_writers: int = 1) -> None:
        """Make each level's volume, or, where an earlier run of the same conversion made it,
        keep its recorded blocks and give back the space of unrecorded ones (see the module)."""
        super().create(n_writers)
        finished = os.path.exists(os.path.join(self.root, INFO))
        damage, lost = [], []  # what was wrong with directory files; those that had blocks written
        for s in self.volume_info.scales:
            for c in range(self.channels):
                path = self.directory_path(s.key, c)
                if os.path.lexists(path):
                    if finished:
                        continue  # left as it is; write_metadata() reports damage
                    try:
                        reclaim(path)
                        continue
                    except DamagedData as exc:
                        damage.append(str(exc))
                        if _has_blocks(path):
                            lost.append(path)
                create(path, s.size, s.chunk_size, self.dtype, n_files=max(1, n_writers),
                       compression=COMPRESSION, compression_level=COMPRESSION_LEVEL).close()
        self.sync_created()
        done = DoneLog(self.root)
        if lost and done.load():
            # Tasks logged as finished may have written blocks the damaged file recorded: all are redone
            # (blocks still recorded elsewhere are found identical, not written again).
            done.remove()
            raise PrecomputedTifError(
                f"{lost[0]} was damaged and had blocks written through it: it was made anew and the record "
                "of finished work cleared, so that the next run writes every block again")
        for what in damage:  # nothing recorded depends on it (e.g. a file older versions left half made)
            log.warning("%s; the conversion is unfinished, so it was made anew", what)

    def created_files(self) -> list[str]:
        """Every level's directory files and block files (made, or cut back, by :meth:`create`)."""
        paths = []
        for key in self.volume_info.keys:
            with os.scandir(self.level_dir(key)) as it:
                paths += [e.path for e in it if e.is_file(follow_symlinks=False)]
        return paths

    def write_metadata(self, info: dict, name: str) -> None:
        """Check, before ``info`` is written, that every directory file reads (a finished dataset
        whose file was damaged since is reported, never rewritten); every block is recorded, so
        the record of unrecorded spots goes."""
        finished = os.path.exists(os.path.join(self.root, INFO))
        for key in self.volume_info.keys:
            for c in range(self.channels):
                path = self.directory_path(key, c)
                try:
                    Directory(path)
                except DamagedData as exc:
                    if finished:
                        again = setting("overwrite", True)
                        raise DamagedData(f"{describe(exc)}; {self.root} is a finished dataset and was left as it "
                                          f"is: convert again with {again} to replace it") from None
                    raise
                try:
                    os.unlink(path + UNRECORDED_SUFFIX)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise PrecomputedTifError(f"cannot remove {exc.filename}: {exc.strerror}") from None

    def _directory(self, key: str, channel: int, writable: bool) -> Directory:
        d = self._dirs.get((key, channel))
        if d is not None and (d.writable or not writable):
            return d
        with self._lock:
            d = self._dirs.get((key, channel))
            if d is None or (writable and not d.writable):
                if d is not None:
                    d.close()
                d = Directory(self.directory_path(key, channel), writable=writable)
                self._dirs[key, channel] = d
            return d

    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        for c, channel in enumerate(array.reshape(-1, *box.shape)):
            self._directory(key, c, writable=True).write_block(box.x0, box.y0, box.z0, channel)

    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        channels = [self._read_channel(key, c, box) for c in range(self.channels)]
        return channels[0] if self.channels == 1 else np.stack(channels)

    def chunk_version(self, key: str, box: Box) -> tuple[tuple, int]:
        ranges = (box.x0, box.x1, box.y0, box.y1, box.z0, box.z1)
        versions = [self._directory(key, c, writable=False).version(*ranges) for c in range(self.channels)]
        return tuple(v for v, _ in versions), max(t for _, t in versions)

    def _read_channel(self, key: str, channel: int, box: Box) -> np.ndarray:
        d = self._directory(key, channel, writable=False)
        if d.block_size == self.chunk_size(key) and d.block_shape(box.x0, box.y0, box.z0) == box.shape:
            return d.read_block(box.x0, box.y0, box.z0)
        return d.read(box.x0, box.x1, box.y0, box.y1, box.z0, box.z1)

    def finish(self) -> None:
        with self._lock:
            dirs, self._dirs = self._dirs, {}
        for d in dirs.values():
            d.close()


def _has_blocks(directory_path: str) -> bool:
    """Whether any block file beside a directory file holds data (frames were appended to it)."""
    level, base = os.path.split(directory_path)
    pattern = re.compile(re.escape(base) + r"\.\d+")
    with os.scandir(level) as it:
        return any(pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False) and e.stat().st_size > 0
                   for e in it)
