"""Whole conversions, every level compared with a numpy reference pyramid."""

import json
import os

import numpy as np
import pytest
import tifffile

import precomputed_tif
from precomputed_tif import convert, open_volume
from precomputed_tif.geometry import Geometry
from readback import read_level
from stacks import make_volume, reference_pyramid, write_planes

SHAPE = (45, 70, 100)  # z, y, x: nothing divides 32
CHUNK = (32, 32, 32)
FORMATS = ["tiff", "zarr", "blockfs"]


def check_dataset(dest, fmt, volume, voxel_size=(1.8, 1.8, 2.0), segmentation=False, chunk=CHUNK, levels=None):
    with open(os.path.join(dest, "info")) as f:
        info = json.load(f)
    z, y, x = volume.shape
    g = Geometry((x, y, z), chunk, voxel_size, levels)
    assert info["type"] == ("segmentation" if segmentation else "image")
    assert info["data_type"] == volume.dtype.name
    assert info["num_channels"] == 1
    assert "mesh" not in info
    assert [s["key"] for s in info["scales"]] == [lv.key for lv in g.levels]
    refs = reference_pyramid(volume, [lv.step for lv in g.levels], segmentation)
    vol = open_volume(dest)
    assert vol.format == fmt
    for scale, level, ref in zip(info["scales"], g.levels, refs):
        assert scale["size"] == [ref.shape[2], ref.shape[1], ref.shape[0]]
        assert scale["resolution"] == pytest.approx([v * 1000 * f for v, f in zip(voxel_size, level.factor)])
        assert scale["voxel_offset"] == [0, 0, 0]
        assert scale["chunk_sizes"] == [list(chunk)]
        assert scale["encoding"] == "raw"
        independent = read_level(dest, fmt, scale, volume.dtype)
        through_store = vol.read(scale["key"])
        for got in (independent, through_store):
            if volume.dtype.kind == "f":
                np.testing.assert_allclose(got, ref, rtol=1e-6, err_msg=scale["key"])
            else:
                np.testing.assert_array_equal(got, ref, err_msg=scale["key"])
    return info


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32"])
def test_image_every_dtype(tmp_path, fmt, dtype):
    volume = make_volume(SHAPE, dtype, seed=1)
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format=fmt, chunk_size=CHUNK, n_cores=1)
    check_dataset(tmp_path / "out", fmt, volume)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64"])
def test_segmentation_every_dtype(tmp_path, fmt, dtype):
    volume = make_volume(SHAPE, dtype, segmentation=True, seed=2)
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format=fmt, chunk_size=CHUNK, segmentation=True, n_cores=1)
    check_dataset(tmp_path / "out", fmt, volume, segmentation=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_anisotropic(tmp_path, fmt):
    volume = make_volume((13, 150, 133), "uint16", seed=3)
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format=fmt, chunk_size=(16, 16, 16), voxel_size=(0.3, 0.3, 2.0),
            levels=5, n_cores=1)
    info = check_dataset(tmp_path / "out", fmt, volume, voxel_size=(0.3, 0.3, 2.0), chunk=(16, 16, 16), levels=5)
    assert [s["key"] for s in info["scales"]] == ["1_1_1", "2_2_1", "4_4_1", "8_8_2", "16_16_4"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_small_blocks_and_worker_pool_give_the_same_pyramid(tmp_path, fmt):
    """Many blocks and several passes (tiny memory budget) on two processes: same result."""
    volume = make_volume(SHAPE, "uint16", seed=4)
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format=fmt, chunk_size=(8, 8, 8), n_cores=2, block_bytes=16 * 8**3 * 2)
    check_dataset(tmp_path / "out", fmt, volume, chunk=(8, 8, 8))


def test_segmentation_in_small_blocks(tmp_path):
    volume = make_volume(SHAPE, "uint32", segmentation=True, seed=5)
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format="zarr", chunk_size=(8, 8, 8), segmentation=True, n_cores=1,
            block_bytes=8**3 * 4)
    check_dataset(tmp_path / "out", "zarr", volume, segmentation=True, chunk=(8, 8, 8))


@pytest.mark.parametrize("compression,tile", [("zlib", None), ("lzw", (32, 48)), ("zstd", None), ("packbits", None)])
def test_compressed_and_tiled_planes(tmp_path, compression, tile):
    volume = make_volume(SHAPE, "uint16", seed=6)
    glob = write_planes(tmp_path / "src", volume, compression=compression,
                        tile=tile and (32, 48), rowsperstrip=None if tile else 8)
    # Blocks narrower than a plane make every task read only part of each strip or tile.
    convert(glob, str(tmp_path / "out"), format="zarr", chunk_size=(16, 16, 16), n_cores=1,
            block_bytes=32 * 32 * 32 * 2)
    check_dataset(tmp_path / "out", "zarr", volume, chunk=(16, 16, 16))


def test_big_endian_planes(tmp_path):
    volume = make_volume(SHAPE, "uint16", seed=7)
    glob = write_planes(tmp_path / "src", volume, byteorder=">")
    convert(glob, str(tmp_path / "out"), format="tiff", chunk_size=CHUNK, n_cores=1)
    check_dataset(tmp_path / "out", "tiff", volume)


def test_multipage_tiff(tmp_path):
    volume = make_volume(SHAPE, "uint16", seed=8)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, volume, photometric="minisblack")
    convert(str(path), str(tmp_path / "out"), format="tiff", chunk_size=CHUNK, n_cores=1)
    check_dataset(tmp_path / "out", "tiff", volume)


def test_bool_planes_become_uint8(tmp_path):
    mask = make_volume(SHAPE, "bool", seed=9)
    glob = write_planes(tmp_path / "src", mask)
    convert(glob, str(tmp_path / "img"), format="zarr", chunk_size=CHUNK, n_cores=1)
    check_dataset(tmp_path / "img", "zarr", mask.astype(np.uint8) * 255)
    convert(glob, str(tmp_path / "seg"), format="zarr", chunk_size=CHUNK, n_cores=1, segmentation=True)
    check_dataset(tmp_path / "seg", "zarr", mask.astype(np.uint8), segmentation=True)


def test_default_levels_and_chunks(tmp_path):
    volume = make_volume((3, 300, 150), "uint8", seed=10)
    glob = write_planes(tmp_path / "src", volume)
    info = convert(glob, str(tmp_path / "out"), n_cores=1)
    assert [s["key"] for s in info["scales"]] == ["1_1_1", "2_2_2", "4_4_4", "8_8_8"]
    assert info["scales"][-1]["size"][:2] == [19, 38]
    check_dataset(tmp_path / "out", "tiff", volume, chunk=(64, 64, 64))


def test_rerun_of_the_same_conversion_is_allowed(tmp_path):
    volume = make_volume(SHAPE, "uint8", seed=11)
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format="zarr", chunk_size=CHUNK, n_cores=1)
    convert(glob, str(tmp_path / "out"), format="zarr", chunk_size=CHUNK, n_cores=1)
    check_dataset(tmp_path / "out", "zarr", volume)


def test_output_files_are_readable_by_others(tmp_path):
    volume = make_volume(SHAPE, "uint8", seed=12)
    glob = write_planes(tmp_path / "src", volume)
    old = os.umask(0o022)
    try:
        convert(glob, str(tmp_path / "out"), chunk_size=CHUNK, n_cores=1)
    finally:
        os.umask(old)
    for root, _, files in os.walk(tmp_path / "out"):
        for f in files:
            assert os.stat(os.path.join(root, f)).st_mode & 0o044 == 0o044, f
        assert not [f for f in files if f.endswith(".tmp")]


def test_python_api_is_exported():
    assert precomputed_tif.convert is convert
    assert callable(precomputed_tif.open_volume)
