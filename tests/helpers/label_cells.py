"""A small label volume of cells for the meshing tests."""

import numpy as np

SHAPE = (37, 51, 69)  # z, y, x: odd, and not a multiple of the chunk or node size
BIG_ID = 4_000_000_001


def cell_volume(shape=SHAPE, seed=3) -> np.ndarray:
    """Ellipsoidal cells, some touching each other and the volume's faces, one of a single voxel,
    one large one crossing many octree nodes, labels far from consecutive."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    out = np.zeros(shape, np.uint32)
    labels = [7 * i + 2 for i in range(1, 13)]
    for label in labels:
        c = rng.uniform(0, 1, 3) * shape
        r = rng.uniform(3, 8, 3)
        out[((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1] = label
    out[((z - 18) / 14) ** 2 + ((y - 25) / 20) ** 2 + ((x - 34) / 26) ** 2 <= 1] = 5  # crosses many nodes
    out[0:9, 40:51, 60:69] = BIG_ID  # in a corner: the surface is closed on the volume's faces
    out[30, 3, 3] = 3  # one voxel
    return out
