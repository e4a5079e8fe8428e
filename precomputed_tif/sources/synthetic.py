"""Synthetic light-sheet-like stacks for the demo and the benchmarks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import tifffile


def synthetic_planes(shape_zyx, seed: int = 0, blob_length: int = 128) -> Iterator[np.ndarray]:
    """uint16 (y, x) planes, z = 0, 1, ...: bright blobs on a dim, smoothly varying background, with noise.

    The blobs come from scikit-image's ``binary_blobs`` on a cube of
    ``blob_length`` voxels, stretched to the requested shape; intensities look
    like a camera's (offset about 100, blobs up to about 2500, noise sd 8).
    Planes are made one at a time, so any number of them fits in memory.
    """
    from skimage.data import binary_blobs

    z, y, x = shape_zyx
    blobs = binary_blobs(blob_length, blob_size_fraction=0.08, n_dim=3, volume_fraction=0.15, rng=seed)
    zi = np.arange(z) * blob_length // z
    rows = np.arange(y) * blob_length // y
    cols = np.arange(x) * blob_length // x
    rng = np.random.default_rng(seed)
    gx = np.linspace(0, np.pi, x)[None, :]
    gy = np.linspace(0, np.pi, y)[:, None]
    for k in range(z):
        smooth = 1500 + 1000 * np.sin(gx + k / 40.0) * np.cos(gy)
        plane = 100 + blobs[zi[k]][np.ix_(rows, cols)] * smooth + rng.normal(0, 8, (y, x))
        yield np.clip(plane, 0, 65535).astype(np.uint16)


def blob_centres(shape_zyx, seed: int = 0, blob_length: int = 128) -> np.ndarray:
    """(n, 3) x, y, z voxel centres of the blobs :func:`synthetic_planes` draws, in stack voxels."""
    from skimage.data import binary_blobs
    from skimage.measure import label, regionprops

    blobs = binary_blobs(blob_length, blob_size_fraction=0.08, n_dim=3, volume_fraction=0.15, rng=seed)
    scale = np.array(shape_zyx, np.float64) / blob_length
    centres = np.array([r.centroid for r in regionprops(label(blobs)) if r.area >= 8])
    return ((centres + 0.5) * scale)[:, ::-1]


def write_synthetic_planes(directory: str, shape_zyx, seed: int = 0, prefix: str = "img_") -> str:
    """Write a synthetic stack as one uncompressed TIFF per plane; returns the glob for it."""
    os.makedirs(directory, exist_ok=True)
    for k, plane in enumerate(synthetic_planes(shape_zyx, seed)):
        tifffile.imwrite(os.path.join(directory, f"{prefix}{k:05d}.tif"), plane, photometric="minisblack")
    return os.path.join(directory, f"{prefix}*.tif")


def kept_synthetic_planes(data_root: str, shape_zyx) -> list[str]:
    """The plane files of a synthetic uint16 stack of ``shape_zyx`` under ``data_root``, generated
    on first use and kept for later runs (benchmarks time the same input every time)."""
    import glob
    import shutil
    import sys

    directory = os.path.join(data_root, "x".join(map(str, shape_zyx)))
    if len(glob.glob(os.path.join(directory, "*.tif"))) != shape_zyx[0]:
        print(f"generating {tuple(shape_zyx)} uint16 planes in {directory} ...", file=sys.stderr)
        shutil.rmtree(directory, ignore_errors=True)
        write_synthetic_planes(directory, shape_zyx)
    return sorted(glob.glob(os.path.join(directory, "*.tif")))


def blob_labels(shape_zyx, seed: int = 0, blob_length: int = 128) -> np.ndarray:
    """(z, y, x) uint32 labels of the blobs :func:`synthetic_planes` draws (each connected blob a
    segment, 1, 2, ...), sampled on a grid of ``shape_zyx`` over the same extent."""
    from skimage.data import binary_blobs
    from skimage.measure import label

    blobs = binary_blobs(blob_length, blob_size_fraction=0.08, n_dim=3, volume_fraction=0.15, rng=seed)
    labels = label(blobs).astype(np.uint32)
    index = [np.arange(n) * blob_length // n for n in shape_zyx]
    return labels[np.ix_(*index)]
