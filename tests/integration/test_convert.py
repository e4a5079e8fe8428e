"""Whole conversions, every level compared with a numpy reference pyramid."""

import json
import os

import numpy as np
import pytest
import tifffile

import precomputed_tif
from precomputed_tif import convert, open_volume
from precomputed_tif.geometry import Geometry
from tests.helpers.readback import read_level
from tests.helpers.stacks import make_volume, reference_pyramid, write_planes

SHAPE = (45, 70, 100)  # z, y, x: nothing divides 32
CHUNK = (32, 32, 32)
FORMATS = ["tiff", "zarr", "blockfs"]


def check_dataset(dest, fmt, volume, voxel_size=(1.8, 1.8, 2.0), segmentation=False, chunk=CHUNK, levels=None,
                  channels=1):
    """Every level equals the reference pyramid; ``volume`` is (c, z, y, x) with channels."""
    with open(os.path.join(dest, "info")) as f:
        info = json.load(f)
    if channels == 1:
        volume = volume[None]
    z, y, x = volume.shape[1:]
    g = Geometry((x, y, z), chunk, voxel_size, levels)
    assert info["type"] == ("segmentation" if segmentation else "image")
    assert info["data_type"] == volume.dtype.name
    assert info["num_channels"] == channels
    assert "mesh" not in info
    assert [s["key"] for s in info["scales"]] == [lv.key for lv in g.levels]
    per_channel = [reference_pyramid(v, [lv.step for lv in g.levels], segmentation) for v in volume]
    refs = [np.stack(levels) for levels in zip(*per_channel)]
    vol = open_volume(dest)
    assert vol.format == fmt
    for scale, level, ref in zip(info["scales"], g.levels, refs):
        assert scale["size"] == [ref.shape[3], ref.shape[2], ref.shape[1]]
        assert scale["resolution"] == pytest.approx([v * 1000 * f for v, f in zip(voxel_size, level.factor)])
        assert scale["voxel_offset"] == [0, 0, 0]
        assert scale["chunk_sizes"] == [list(chunk)]
        assert scale["encoding"] == "raw"
        independent = read_level(dest, fmt, scale, volume.dtype, channels).reshape(ref.shape)
        through_store = vol.read(scale["key"]).reshape(ref.shape)
        assert vol.read(scale["key"]).ndim == (3 if channels == 1 else 4)
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
@pytest.mark.parametrize("dtype", ["int8", "int16", "int32"])
def test_signed_images_are_stored_as_they_are(tmp_path, fmt, dtype):
    """Negative values survive, and the mean pyramid rounds them half up like any integer."""
    info = np.iinfo(dtype)
    volume = np.random.default_rng(11).integers(info.min, info.max, SHAPE, dtype=dtype, endpoint=True)
    volume[:, :4] = info.min  # sums of minima must not overflow either
    volume[:, 4:8] = info.max
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format=fmt, chunk_size=CHUNK, n_cores=1)
    check_dataset(tmp_path / "out", fmt, volume)


@pytest.mark.parametrize("fmt", FORMATS)
def test_channels_make_one_dataset(tmp_path, fmt):
    """A 3-channel OME-TIFF (z, c, y, x pages) becomes one 3-channel dataset, each channel's pyramid its own."""
    volume = np.stack([make_volume(SHAPE, "uint16", seed=s) for s in (20, 21, 22)])  # c, z, y, x
    path = tmp_path / "three.ome.tif"
    tifffile.imwrite(path, volume.transpose(1, 0, 2, 3), ome=True, metadata={"axes": "ZCYX"})
    convert(str(path), str(tmp_path / "out"), format=fmt, chunk_size=CHUNK, n_cores=2, block_bytes=32**3 * 6)
    info = check_dataset(tmp_path / "out", fmt, volume, channels=3)
    assert len(info["precomputed_tif"]["display_range"]) == 3
    convert(str(path), str(tmp_path / "one"), format=fmt, chunk_size=CHUNK, n_cores=1, channel=2)
    check_dataset(tmp_path / "one", fmt, volume[2])


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


@pytest.mark.parametrize("compression,tile,budget", [
    ("zlib", None, 32 * 32 * 32 * 2), ("lzw", (32, 48), 32 * 32 * 32 * 2), ("zstd", None, 32 * 32 * 32 * 2),
    ("packbits", None, 32 * 32 * 32 * 2), ("lzw", None, 16 * 16 * 16 * 2),
])
def test_compressed_and_tiled_planes(tmp_path, compression, tile, budget):
    volume = make_volume(SHAPE, "uint16", seed=6)
    glob = write_planes(tmp_path / "src", volume, compression=compression,
                        tile=tile and (32, 48), rowsperstrip=None if tile else 8)
    # Strips as wide as the plane are read by blocks as wide as the plane where the budget allows
    # (all but the last case); tiles, and strips under the smallest budget, by narrower blocks.
    convert(glob, str(tmp_path / "out"), format="zarr", chunk_size=(16, 16, 16), n_cores=1,
            block_bytes=budget)
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


def test_planes_in_whole_width_strips_are_read_by_whole_width_blocks():
    """Each compressed strip is then decoded once per pass, not once per block it crosses."""
    from precomputed_tif.pyramid import plan_passes

    g = Geometry((1000, 300, 200), (64, 64, 64))
    budget = 64 * 2**20
    narrow = plan_passes(g, 2, budget)
    wide = plan_passes(g, 2, budget, whole_rows=True)
    assert narrow[0].block[0] < 1000 <= wide[0].block[0]
    bx, by, bz = wide[0].block
    assert 1000 * min(by, 300) * min(bz, 200) * 2 <= budget
    assert wide[-1].last == narrow[-1].last == len(g.levels)
    # When not even one chunk-high row of blocks fits, blocks stay narrow.
    small = 64 * 64 * 999 * 2
    assert plan_passes(g, 2, small, whole_rows=True) == plan_passes(g, 2, small)


def test_option_objects_and_keywords_make_the_same_dataset(tmp_path):
    from precomputed_tif.formats import FormatOptions
    from precomputed_tif.options import ConvertOptions, Resources
    from tests.helpers.readback import files_of

    glob = write_planes(tmp_path / "src", make_volume((9, 23, 21), "uint16", seed=130))
    a = convert(glob, str(tmp_path / "a"), ConvertOptions(format="precomputed", chunk_size=(8, 8, 8),
                                                          format_options=FormatOptions(encoding="png")),
                Resources(n_cores=1))
    b = convert(glob, str(tmp_path / "b"), format="precomputed", chunk_size=[8, 8, 8], encoding="png", n_cores=1)
    assert a == b and files_of(tmp_path / "a") == files_of(tmp_path / "b")
    assert a.summary().startswith(f"wrote {tmp_path / 'a'}: 21x23x9 uint16 image")
    with pytest.raises(TypeError, match="chunksize"):
        convert(glob, str(tmp_path / "c"), chunksize=(8, 8, 8))
