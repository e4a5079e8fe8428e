"""Meshing one block of octree nodes of one level of detail: the parallel part.

A :class:`BlockTask` reads the voxels of a box of nodes (plus the one voxel
they share with the next node on each axis) from the segmentation at
``2**lod`` times coarser than full resolution, meshes every node -- every
octant of a node above lod 0, as Neuroglancer wants them kept apart -- with
marching cubes (zmesh), encodes each segment's piece with Draco and writes
them all to one work file, an object in the dataset's storage (under
``.mesh-work/``, so a rerun after a kill and workers on other machines find
it). Level-of-detail 0 tasks also count the voxels of each segment. Nothing is
shared between tasks but the dataset they read.
"""

from __future__ import annotations

import errno
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..formats.volume import open_volume
from ..geometry import Box, as_triple, ceil_div
from ..info import VolumeInfo
from ..pyramid.downsample import downsample
from ..storage import Storage, StorageLike
from .multires import encode_fragment, quantize

MAGIC = b"PTMESH1\0"


def scale_factors(info: VolumeInfo) -> list[tuple[int, int, int]]:
    """(x, y, z) downsampling factor of every scale of ``info`` relative to the first."""
    base = info.scales[0].resolution
    return [as_triple(int(round(r / b)) for r, b in zip(s.resolution, base)) for s in info.scales]


def lod_size(size: tuple[int, int, int], lod: int) -> tuple[int, int, int]:
    """(x, y, z) size of the segmentation downsampled by ``2**lod`` (ceil, like the pyramid)."""
    f = 2**lod
    return as_triple(ceil_div(n, f) for n in size)


def nodes_per_axis(size: tuple[int, int, int], lod: int, node: int) -> tuple[int, int, int]:
    """Octree nodes that the padded level covers: surfaces reach ``u = size + 0.5``."""
    return as_triple(n // node + 1 for n in lod_size(size, lod))


class LodData:
    """Voxels of the segmentation at ``2**lod`` times coarser than full resolution.

    Read from the stored scale that is closest to it (its factors divide
    ``2**lod``), then made with the project's own mode downsampling for the
    remaining factors (anisotropic pyramids skip some isotropic levels).
    """

    def __init__(self, volume, lod: int):
        self.volume = volume
        self.size = lod_size(volume.size(volume.keys[0]), lod)
        want = 2**lod
        factors = scale_factors(volume.volume_info)
        usable = [i for i, f in enumerate(factors) if all(want % a == 0 for a in f)]
        best = max(usable, key=lambda i: np.prod(factors[i]))  # scale 0 (factors 1) always qualifies
        self.key = volume.keys[best]
        self.ratio = tuple(want // a for a in factors[best])
        self.stored_size = volume.size(self.key)

    def read(self, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
        """Voxels [lo, hi) (x, y, z, clipped to the level) as a (z, y, x) array."""
        start = [max(0, a) for a in lo]
        end = [min(b, n) for b, n in zip(hi, self.size)]
        box = [(a * r, min(b * r, s)) for a, b, r, s in zip(start, end, self.ratio, self.stored_size)]
        data = self.volume.read(self.key, Box(box[0][0], box[0][1], box[1][0], box[1][1], box[2][0], box[2][1]))
        ratio = list(self.ratio)
        while any(r > 1 for r in ratio):
            data = downsample(data, [2 if r > 1 else 1 for r in ratio], True)
            ratio = [max(1, r // 2) for r in ratio]
        return data

    def padded(self, lo_u: tuple[int, int, int], hi_u: tuple[int, int, int]) -> np.ndarray:
        """Voxels with centres u in [lo_u, hi_u] (both ends included; u = voxel + 1) as (z, y, x),
        background (0) outside the level."""
        lo = [a - 1 for a in lo_u]
        hi = [b for b in hi_u]  # u = hi_u is voxel hi_u - 1; exclusive end hi_u
        shape = [b - a for a, b in zip(lo, hi)]
        out = np.zeros(shape[::-1], self.volume_dtype)
        clo = [max(0, a) for a in lo]
        chi = [min(b, n) for b, n in zip(hi, self.size)]
        if any(b <= a for a, b in zip(clo, chi)):
            return out
        data = self.read(clo, chi)
        sl = tuple(slice(a - o, b - o) for a, b, o in zip(clo, chi, lo))[::-1]
        out[sl] = data
        return out

    @property
    def volume_dtype(self):
        return label_dtype(self.volume.volume_info.dtype)


def label_dtype(name: str | np.dtype) -> np.dtype:
    """Labels are unsigned for Neuroglancer: signed types are read as the unsigned type of their size."""
    dt = np.dtype(name)
    return np.dtype(f"u{dt.itemsize}") if dt.kind == "i" else dt


@dataclass(frozen=True)
class BlockTask:
    """Mesh the nodes [lo, hi) (node grid coordinates, x, y, z) of level of detail ``lod`` of
    the segmentation read from ``dataset`` (its storage, or a path); the work file goes under
    the key prefix ``work`` of ``storage`` (the same dataset's, when meshing one)."""

    dataset: StorageLike
    storage: Storage
    work: str
    lod: int
    node: int
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]

    @property
    def id(self) -> str:
        return f"{self.lod}/{self.lo[0]}-{self.hi[0]}_{self.lo[1]}-{self.hi[1]}_{self.lo[2]}-{self.hi[2]}"

    @property
    def key(self) -> str:
        """The storage key of the task's work file."""
        return f"{self.work}/{self.id.replace('/', '_')}.frag"


def plan_blocks(dataset: StorageLike, storage: Storage, work: str, size, num_lods: int, node: int, nodes_per_task: int):
    """Block tasks of every level of detail, coarse levels first (they are quick and show first)."""
    tasks = []
    for lod in range(num_lods - 1, -1, -1):
        grid = nodes_per_axis(size, lod, node)
        k = nodes_per_task
        for z in range(0, grid[2], k):
            for y in range(0, grid[1], k):
                for x in range(0, grid[0], k):
                    tasks.append(BlockTask(dataset, storage, work, lod, node, (x, y, z),
                                           (min(x + k, grid[0]), min(y + k, grid[1]), min(z + k, grid[2]))))
    return tasks


def run_block(task: BlockTask) -> str:
    """Mesh one block; writes its work file and returns the task's id."""
    import zmesh

    B = task.node
    lo_u = as_triple(k * B for k in task.lo)
    block = LodData(open_volume(task.dataset), task.lod).padded(lo_u, as_triple(k * B for k in task.hi))
    mesher = zmesh.Mesher((1, 1, 1))
    index, blobs = [], []
    for nz in range(task.lo[2], task.hi[2]):
        for ny in range(task.lo[1], task.hi[1]):
            for nx in range(task.lo[0], task.hi[0]):
                for label, vertices, faces in _mesh_node(mesher, block, lo_u, (nx, ny, nz), B, task.lod):
                    blob = encode_fragment(quantize(vertices, (nx, ny, nz), B), faces)
                    index.append((label, task.lod, nx, ny, nz, len(blob)))
                    blobs.append(blob)
    counts = np.zeros((0, 2), np.uint64)
    if task.lod == 0:
        # Each node owns the voxels with u in [kB, (k+1)B): each voxel is counted by one task.
        labels, n = np.unique(block[:-1, :-1, :-1], return_counts=True)
        keep = labels != 0
        counts = np.stack([labels[keep].astype(np.uint64), n[keep].astype(np.uint64)], axis=1)
    write_work_file(task.storage, task.key, np.array(index, np.uint64).reshape(-1, 6), counts, blobs)
    return task.id


def _mesh_node(mesher, block: np.ndarray, lo_u, position, node: int, lod: int):
    """(label, vertices in u, faces) of every segment in one octree node of ``block``.

    Above lod 0 each octant is meshed on its own, so that no triangle crosses the middle of the
    node (Neuroglancer draws a coarse node's octants separately where finer ones are missing).
    """
    part = node if lod == 0 else node // 2
    steps = range(1 if lod == 0 else 2)
    pieces: dict[int, list] = {}
    for cz in steps:
        for cy in steps:
            for cx in steps:
                origin = [p * node + c * part for p, c in zip(position, (cx, cy, cz))]
                x, y, z = (o - lo for o, lo in zip(origin, lo_u))
                sub = block[z:z + part + 1, y:y + part + 1, x:x + part + 1]  # voxels u in [origin, origin + part]
                if not sub.any():
                    continue
                mesher.mesh(np.asfortranarray(sub.T))  # zmesh wants x, y, z
                for label in mesher.ids():
                    m = mesher.get(label, normals=False)
                    if len(m.faces):
                        pieces.setdefault(int(label), []).append((m.vertices.astype(np.float64) + origin, m.faces))
                mesher.clear()
    for label, parts in pieces.items():
        starts = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
        yield (label, np.concatenate([v for v, _ in parts]),
               np.concatenate([f.astype(np.uint32) + np.uint32(s) for (_, f), s in zip(parts, starts)]))


def write_work_file(storage: Storage, key: str, index: np.ndarray, counts: np.ndarray, blobs: list[bytes]) -> None:
    """Put a block's results as the object ``key``, durably (the task is recorded as done next):
    a magic number, the numbers of index rows and counts (uint64), the fragment index rows
    (segment, lod, x, y, z, size), the voxel counts (segment, voxels), then the Draco data."""
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(np.array([len(index), len(counts)], "<u8").tobytes())
    buf.write(index.astype("<u8").tobytes())
    buf.write(counts.astype("<u8").tobytes())
    for b in blobs:
        buf.write(b)
    storage.put(key, buf.getvalue(), durable=True)


class WorkFile:
    """A block's results: fragment index (segment, lod, x, y, z, size), voxel counts, Draco data.
    Read by byte ranges from the object ``key`` of ``storage``."""

    def __init__(self, storage: Storage, key: str):
        self.storage = storage
        self.key = key
        head = self._read(0, 24)
        if head[:8] != MAGIC or len(head) < 24:
            raise ValueError(f"{storage.location(key)} is not a mesh work file")
        n, m = (int(v) for v in np.frombuffer(head[8:24], "<u8"))
        tables = self._read(24, 48 * n + 16 * m)
        self.index = np.frombuffer(tables[:48 * n], "<u8").reshape(-1, 6)
        self.counts = np.frombuffer(tables[48 * n:], "<u8").reshape(-1, 2)
        self.data_start = 24 + 48 * n + 16 * m
        self.offsets = self.data_start + np.concatenate([[0], np.cumsum(self.index[:, 5])]).astype(np.int64)

    def _read(self, start: int, length: int) -> bytes:
        data = self.storage.get_range(self.key, start, length)
        if data is None:  # reported like a missing file: the meshing is unfinished
            raise FileNotFoundError(errno.ENOENT, "no such work file", self.storage.location(self.key))
        return data

    def fragments(self, rows: np.ndarray):
        """(segment, lod, x, y, z, bytes) of the given index rows."""
        if len(rows) == 0:
            return
        reader = self.storage.open_reader(self.key)
        if reader is None:
            raise FileNotFoundError(errno.ENOENT, "no such work file", self.storage.location(self.key))
        with reader:
            for r in rows:
                seg, lod, x, y, z, size = (int(v) for v in self.index[r])
                yield seg, lod, x, y, z, reader.read(int(self.offsets[r]), size)
