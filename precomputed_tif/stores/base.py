"""The interface every chunk store implements, and what they share."""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod

import numpy as np

from ..atomic import sync_directory, sync_files
from ..errors import DamagedData, PrecomputedTifError
from ..geometry import Box


class ChunkStore(ABC):
    """Chunks of every scale of one precomputed volume, stored in some format.

    A store is built from the dataset directory and its ``info`` dict (the
    scales' keys, sizes and chunk sizes and the data type come from there). It
    is small and picklable: workers receive it as an argument. Boxes are in
    the coordinates of the scale they name; arrays are (z, y, x).
    """

    format: str = ""

    def __init__(self, root: str, info: dict):
        self.root = os.path.abspath(root)
        self.real_root = os.path.realpath(self.root)
        self.info = info
        self.dtype = np.dtype(info["data_type"])
        self._scales = {s["key"]: s for s in info["scales"]}
        self._unsynced: list[str] = []  # chunk files written since the last finish()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_unsynced"] = []
        return state

    def scale(self, key: str) -> dict:
        try:
            return self._scales[key]
        except KeyError:
            raise PrecomputedTifError(f"{self.root} has no scale {key!r}") from None

    def chunk_size(self, key: str) -> tuple[int, int, int]:
        """(x, y, z) chunk size of a scale."""
        return tuple(self.scale(key)["chunk_sizes"][0])

    def size(self, key: str) -> tuple[int, int, int]:
        """(x, y, z) size of a scale in voxels."""
        return tuple(self.scale(key)["size"])

    def level_dir(self, key: str) -> str:
        return os.path.join(self.root, key)

    @classmethod
    def holds(cls, level_dir: str) -> bool:
        """True when a level directory looks like it was written in this format."""
        return False

    def create(self, n_writers: int = 1) -> None:
        """Make what writers need before any chunk is written (called once, by one process).

        ``n_writers`` is how many processes will write at once. What an earlier
        run of the same conversion made is kept, so a rerun resumes.
        """
        for s in self.info["scales"]:
            os.makedirs(self.level_dir(s["key"]), exist_ok=True)
        if type(self).create is ChunkStore.create:
            self.sync_created()

    def sync_created(self) -> None:
        """Flush what :meth:`create` made (level directories and the files directly in them) to
        disk, so no chunk recorded later depends on metadata that could still be lost."""
        paths = []
        for s in self.info["scales"]:
            with os.scandir(self.level_dir(s["key"])) as it:
                paths += [e.path for e in it if e.is_file(follow_symlinks=False) and not _is_chunk_name(e.name)]
        sync_files(paths, self.root)
        for s in self.info["scales"]:
            sync_directory(self.level_dir(s["key"]))
        sync_directory(self.root)

    @abstractmethod
    def write_chunk(self, key: str, box: Box, array: np.ndarray) -> None:
        """Store one chunk (``array`` has ``box.shape``); atomic: never seen half written."""

    @abstractmethod
    def read_chunk(self, key: str, box: Box) -> np.ndarray:
        """One chunk as a (z, y, x) array of the volume's dtype; zeros where never written."""

    def read_region(self, key: str, box: Box) -> np.ndarray:
        """Any box of a scale, assembled from the chunks it overlaps."""
        cx, cy, cz = self.chunk_size(key)
        sx, sy, sz = self.size(key)
        out = np.empty(box.shape, self.dtype)
        for z0 in range(box.z0 // cz * cz, box.z1, cz):
            for y0 in range(box.y0 // cy * cy, box.y1, cy):
                for x0 in range(box.x0 // cx * cx, box.x1, cx):
                    chunk = Box(x0, min(x0 + cx, sx), y0, min(y0 + cy, sy), z0, min(z0 + cz, sz))
                    part = chunk.intersect(box)
                    out[part.relative_to(box)] = self.read_chunk(key, chunk)[part.relative_to(chunk)]
        return out

    def finish(self) -> None:
        """Make every chunk written so far durable (flushed to disk, data before names), and
        close whatever a writer holds open; the store stays usable. A conversion records a
        task as done only after its store's ``finish`` returned."""
        paths, self._unsynced = self._unsynced, []
        if paths:
            sync_files(paths, self.root)

    def inside(self, path: str) -> bool:
        """True when ``path``, symlinks followed, lies inside the dataset's directory."""
        return os.path.realpath(path).startswith(self.real_root + os.sep)

    def read_file(self, path: str) -> bytes | None:
        """The bytes of one stored file, or None when there is none.

        Only a regular file inside the dataset's directory is read: a FIFO (which
        would block the reader forever), a device or a symlink leading out of the
        dataset is damage, not data.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DamagedData(f"cannot read {path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise DamagedData(f"{path} is not a regular file")
            if not self.inside(path):
                raise DamagedData(f"{path} leads out of {self.root} through a symlink")
            parts, left = [], st.st_size
            while True:
                block = os.read(fd, max(left, 1 << 16))
                if not block:
                    break
                parts.append(block)
                left -= len(block)
            return b"".join(parts)
        finally:
            os.close(fd)


def _is_chunk_name(name: str) -> bool:
    """Chunk files are written (and flushed) by tasks; create() flushes only metadata."""
    return not name.startswith(".") and name.endswith(".tiff")
