"""Neuroglancer's multi-resolution mesh format (``neuroglancer_multilod_draco``), for writing.

See ``meshes.md`` in the neuroglancer repository. The coordinates used here:

* **u** ("padded voxel" coordinates of one level of detail): voxel ``j`` of the
  segmentation downsampled by ``2**lod`` has its centre at ``u = j + 1``.
  Marching cubes puts the surface half-way between voxel centres, and the
  volume is padded with one voxel of background on every side so that a
  segment touching the edge of the volume still gets a closed surface, whose
  caps lie at ``u = 0.5`` and ``u = size + 0.5``.
* **stored model** coordinates (the manifest's): ``u * 2**lod`` plus the
  level's ``vertex_offsets`` (``0.5 - 2**(lod - 1)``), which puts the centre of
  a coarse voxel on the centre of the fine voxels it was made from. For lod 0
  this is ``u`` itself: full-resolution voxel ``i`` has its centre at ``i + 1``.
  The ``transform`` in ``info`` maps them to nanometres, ``(s - 0.5) * resolution``,
  where Neuroglancer puts voxel ``i``'s centre.
* Octree node ``k`` of level ``lod`` spans ``u`` in ``[k * node, (k + 1) * node]``
  (``grid_origin`` 0, ``chunk_shape`` ``node`` voxels). A node's mesh is made
  from exactly the voxels with centres in that span, so neighbouring nodes
  compute the same vertices on the face they share, and quantization (10 bits
  over the node, both ends included) maps those vertices to the same place:
  a segment is one closed surface across nodes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

QUANTIZATION_BITS = 10
QMAX = 2**QUANTIZATION_BITS - 1
MESH_DIR = "mesh"


def vertex_offset(lod: int) -> float:
    """Per-axis offset (stored model units) of level ``lod``'s vertices; 0 for lod 0."""
    return 0.5 - 2.0 ** (lod - 1)


def quantize(vertices_u: np.ndarray, node_position: Sequence[int], node: int) -> np.ndarray:
    """Vertex positions (u coordinates, x y z) as integers in [0, 2**bits) within their node."""
    origin = np.asarray(node_position, np.float64) * node
    q = np.rint((np.asarray(vertices_u, np.float64) - origin) * (QMAX / node))
    return np.clip(q, 0, QMAX).astype(np.uint32)


def encode_fragment(positions: np.ndarray, faces: np.ndarray) -> bytes:
    """A Draco mesh whose integer positions are exactly ``positions`` (Draco's own quantization is
    set to the identity: ``bits`` bits over a range of ``2**bits - 1``)."""
    import DracoPy

    return DracoPy.encode(positions.astype(np.float32), faces.astype(np.uint32),
                          quantization_bits=QUANTIZATION_BITS, quantization_range=QMAX,
                          quantization_origin=np.zeros(3), compression_level=3)


def zorder(positions: np.ndarray) -> np.ndarray:
    """Z-curve (Morton) codes of (n, 3) x, y, z grid positions, x in the lowest bit."""
    p = np.asarray(positions, np.uint64).reshape(-1, 3)
    code = np.zeros(len(p), np.uint64)
    for bit in range(int(p.max(initial=0)).bit_length()):
        for axis in range(3):
            code |= ((p[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return code


def complete_octree(fragments: dict[tuple[int, int, int, int], bytes], num_lods: int) -> list[list]:
    """Per level of detail, ``[(position, bytes)]`` in Z-curve order, with an empty fragment added
    for every missing ancestor of a node: Neuroglancer walks the octree down from the top
    level, and a node without a parent would never be drawn."""
    nodes: list[dict[tuple[int, int, int], bytes]] = [{} for _ in range(num_lods)]
    for (lod, x, y, z), data in fragments.items():
        nodes[lod][(x, y, z)] = data
    for lod in range(num_lods - 1):
        for (x, y, z) in list(nodes[lod]):
            parent = (x >> 1, y >> 1, z >> 1)
            nodes[lod + 1].setdefault(parent, b"")
    out = []
    for level in nodes:
        keys = list(level)
        order: np.ndarray | list[int] = []
        if keys:
            order = np.argsort(zorder(np.array(keys, np.uint64).reshape(-1, 3)), kind="stable")
        out.append([(keys[i], level[keys[i]]) for i in order])
    return out


def manifest(levels: list[list], node: int) -> tuple[bytes, bytes]:
    """(fragment data, manifest) of one segment from :func:`complete_octree`'s levels."""
    num_lods = len(levels)
    head = struct.pack("<3f3fI", node, node, node, 0.0, 0.0, 0.0, num_lods)
    lod_scales = np.array([2.0**lod for lod in range(num_lods)], "<f4")
    offsets = np.array([[vertex_offset(lod)] * 3 for lod in range(num_lods)], "<f4")
    counts = np.array([len(level) for level in levels], "<u4")
    parts = [head, lod_scales.tobytes(), offsets.tobytes(), counts.tobytes()]
    data = []
    for level in levels:
        positions = np.array([p for p, _ in level], "<u4").reshape(-1, 3)
        sizes = np.array([len(d) for _, d in level], "<u4")
        parts += [positions.T.copy().tobytes(), sizes.tobytes()]
        data += [d for _, d in level]
    return b"".join(data), b"".join(parts)


def mesh_info(resolution_nm: Sequence[float], voxel_offset: Sequence[int], sharding: dict | None) -> dict:
    """The mesh directory's ``info``: stored model coordinates to nanometres, see the module docstring."""
    t = []
    for axis in range(3):
        row = [0.0, 0.0, 0.0]
        row[axis] = float(resolution_nm[axis])
        t += row + [float((voxel_offset[axis] - 0.5) * resolution_nm[axis])]
    info = {
        "@type": "neuroglancer_multilod_draco",
        "vertex_quantization_bits": QUANTIZATION_BITS,
        "transform": t,
        "lod_scale_multiplier": 1.0,
    }
    if sharding:
        info["sharding"] = sharding
    return info
