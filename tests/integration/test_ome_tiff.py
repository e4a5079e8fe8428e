"""--format ome-tiff: one pyramidal OME-TIFF read back by tifffile, validated by ome-types, read by
bioio, Viv's offsets index, resume after a kill, memory, and the options that do not go with it.

Odd sizes: level n + 1 is ceil(size / 2) of level n in x and y; where level n
has an odd last column (row), the last column (row) of level n + 1 is the mean
of the 2 (or 1) voxels that exist, integers rounded half up -- what
``stacks.reference_downsample`` computes block by block with numpy.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.cli.convert import main
from precomputed_tif.pipeline.progress import DONE_LOG
from tests.helpers.peak_rss import conversion_peak_rss
from tests.helpers.readback import ome_tiff_levels as levels_of
from tests.helpers.stacks import make_volume, reference_downsample, write_planes

SHAPE = (5, 45, 70)  # z, y, x: odd, and no multiple of the tile size
TILE = 16


def signed_volume(shape, seed):
    return np.random.default_rng(seed).integers(-30000, 30000, shape).astype(np.int16)


def write_source(tmp_path, volume):
    """A (c, z, y, x) volume as the project reads it: planes for one channel, one OME-TIFF for several."""
    if volume.shape[0] == 1:
        return write_planes(tmp_path / "src", volume[0])
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, volume.transpose(1, 0, 2, 3), ome=True, metadata={"axes": "ZCYX"})
    return str(path)


def reference_levels(volume, n_levels, segmentation=False):
    """Level 0 is the (c, z, y, x) source; each next level is the x/y 2 x 2 mean (or mode) of the one before."""
    levels = [volume]
    for _ in range(n_levels - 1):
        levels.append(np.stack([reference_downsample(ch, (2, 2, 1), segmentation) for ch in levels[-1]]))
    return levels


CASES = [
    # (name, dtype, channels)
    ("uint16", "uint16", 1),
    ("int16 negative", "int16", 1),
    ("uint8 two channels", "uint8", 2),
    ("float32", "float32", 1),
]


@pytest.mark.parametrize("name,dtype,channels", CASES, ids=[c[0] for c in CASES])
def test_pyramid_reads_back_as_the_source_and_its_means(tmp_path, name, dtype, channels):
    if dtype == "int16":
        volume = signed_volume((channels, *SHAPE), 1)
        assert volume.min() < 0
    else:
        volume = np.stack([make_volume(SHAPE, dtype, seed=2 + c) for c in range(channels)])
    dest = tmp_path / "out"
    result = convert(write_source(tmp_path, volume), str(dest), format="ome-tiff", tile_size=TILE, n_cores=2,
                     voxel_size=(0.4, 0.5, 2.0))
    image = dest / "out.ome.tif"
    assert result["image"] == str(image)
    assert sorted(os.listdir(dest)) == [".precomputed-tif-inputs.json", ".precomputed-tif.json", "out.offsets.json",
                                        "out.ome.tif"]
    levels = levels_of(image)
    # 70x45 -> 35x23 -> 18x12 -> 9x6: the coarsest fits in one 16 x 16 tile.
    assert [lv.shape[-2:] for lv in levels] == [(45, 70), (23, 35), (12, 18), (6, 9)]
    for number, (got, want) in enumerate(zip(levels, reference_levels(volume, len(levels)))):
        assert got.dtype == volume.dtype
        np.testing.assert_array_equal(got, want, err_msg=f"level {number}")
    with tifffile.TiffFile(image) as tif:
        assert len(tif.pages) == SHAPE[0] * channels  # one top-level page per (z, channel)
        for page in tif.pages:
            assert page.is_tiled and (page.tilelength, page.tilewidth) == (TILE, TILE)
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            assert len(page.subifds) == 3
        reduced = tif.pages[0].pages[0]  # a SubIFD
        assert reduced.subfiletype == 1 and reduced.shape == (23, 35)


def test_ome_xml_is_valid_and_describes_the_image(tmp_path):
    from ome_types import from_xml

    volume = np.stack([make_volume(SHAPE, "uint16", seed=c) for c in range(2)])
    dest = tmp_path / "out"
    convert(write_source(tmp_path, volume), str(dest), format="ome-tiff", tile_size=TILE, n_cores=1,
            voxel_size=(0.4, 0.5, 2.0))
    with tifffile.TiffFile(dest / "out.ome.tif") as tif:
        xml = tif.pages[0].description
    ome = from_xml(xml, validate=True)  # against the OME schema
    (image,) = ome.images
    pixels = image.pixels
    assert image.name == "out.ome.tif"
    assert (pixels.size_x, pixels.size_y, pixels.size_z, pixels.size_c, pixels.size_t) == (70, 45, 5, 2, 1)
    assert pixels.type.value == "uint16" and pixels.dimension_order.value == "XYCZT"
    assert (pixels.physical_size_x, pixels.physical_size_y, pixels.physical_size_z) == (0.4, 0.5, 2.0)
    assert {pixels.physical_size_x_unit.value, pixels.physical_size_z_unit.value} == {"µm"}
    assert [c.name for c in pixels.channels] == ["channel 0", "channel 1"]  # as every format names them
    assert [c.color.as_rgb_tuple() for c in pixels.channels] == [(0, 255, 0), (255, 0, 255)]
    assert [(d.ifd, d.plane_count) for d in pixels.tiff_data_blocks] == [(0, 10)]


def test_bioio_reads_the_same_voxels_and_pixel_sizes(tmp_path):
    import bioio_ome_tiff
    from bioio import BioImage

    volume = signed_volume((2, *SHAPE), 3)
    dest = tmp_path / "out"
    convert(write_source(tmp_path, volume), str(dest), format="ome-tiff", tile_size=TILE, n_cores=1,
            voxel_size=(0.4, 0.5, 2.0))
    image = BioImage(dest / "out.ome.tif", reader=bioio_ome_tiff.Reader)
    assert image.dims.order == "TCZYX" and image.dims.shape == (1, 2, *SHAPE)
    np.testing.assert_array_equal(image.get_image_data("CZYX", T=0), volume)
    sizes = image.physical_pixel_sizes
    assert (sizes.X, sizes.Y, sizes.Z) == (0.4, 0.5, 2.0)


def test_offsets_index_is_where_viv_looks_and_lists_the_top_level_ifds(tmp_path):
    volume = make_volume(SHAPE, "uint16", seed=4)[None]
    dest = tmp_path / "brain"
    convert(write_source(tmp_path, volume), str(dest), format="ome-tiff", tile_size=TILE, n_cores=1)
    image = dest / "brain.ome.tif"
    # Avivator fetches the URL of the image with 'ome.tif' replaced by 'offsets.json'.
    offsets_path = dest / re.sub(r"ome\.tif(f?)", "offsets.json", image.name)
    offsets = json.loads(offsets_path.read_text())
    with tifffile.TiffFile(image) as tif:
        assert offsets == [page.offset for page in tif.pages]
    assert len(offsets) == SHAPE[0]


@pytest.mark.parametrize("compression,tag", [("lzw", "LZW"), ("none", "NONE")])
def test_other_compressions(tmp_path, compression, tag):
    volume = make_volume(SHAPE, "uint16", seed=5)[None]
    dest = tmp_path / "out"
    convert(write_source(tmp_path, volume), str(dest), format="ome-tiff", tile_size=TILE, n_cores=1,
            compression=compression, levels=2)
    levels = levels_of(dest / "out.ome.tif")
    assert len(levels) == 2
    for got, want in zip(levels, reference_levels(volume, 2)):
        np.testing.assert_array_equal(got, want)
    with tifffile.TiffFile(dest / "out.ome.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION[tag]


def test_colour_input_becomes_red_green_blue_channels(tmp_path):
    from ome_types import from_xml

    rgb = np.random.default_rng(6).integers(0, 255, (3, 37, 41, 3), dtype=np.uint8)
    for z, plane in enumerate(rgb):
        tifffile.imwrite(tmp_path / f"rgb_{z}.tif", plane, photometric="rgb")
    dest = tmp_path / "out"
    convert(str(tmp_path / "rgb_*.tif"), str(dest), format="ome-tiff", tile_size=TILE, n_cores=1)
    levels = levels_of(dest / "out.ome.tif")
    np.testing.assert_array_equal(levels[0], rgb.transpose(3, 0, 1, 2))
    with tifffile.TiffFile(dest / "out.ome.tif") as tif:
        channels = from_xml(tif.pages[0].description).images[0].pixels.channels
    assert [(c.name, c.color.as_rgb_tuple()) for c in channels] == [
        ("red", (255, 0, 0)), ("green", (0, 255, 0)), ("blue", (0, 0, 255))]


def test_segmentation_levels_take_the_most_frequent_label(tmp_path):
    volume = make_volume(SHAPE, "uint16", segmentation=True, seed=7)[None]
    dest = tmp_path / "out"
    convert(write_source(tmp_path, volume), str(dest), format="ome-tiff", tile_size=TILE, n_cores=1,
            segmentation=True)
    levels = levels_of(dest / "out.ome.tif")
    for got, want in zip(levels, reference_levels(volume, len(levels), segmentation=True)):
        np.testing.assert_array_equal(got, want)


# --- resume, rerun, overwrite ----------------------------------------------------------------

CONVERT = textwrap.dedent("""
    import sys
    from precomputed_tif import convert
    if __name__ == "__main__":
        convert(sys.argv[1], sys.argv[2], format="ome-tiff", tile_size=16, n_cores=2, block_bytes=1)
""")
KILL_SHAPE = (60, 90, 110)


def files_of(root):
    out = {}
    for base, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(base, n), "rb") as f:
                out[os.path.relpath(os.path.join(base, n), root)] = f.read()
    return out


def run_and_kill(glob, dest, when):
    """Start a conversion in another process and SIGKILL it (all its processes) once ``when()`` holds;
    False if it finished first."""
    proc = subprocess.Popen([sys.executable, "-c", CONVERT, glob, dest], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not when():
        time.sleep(0.002)
    finished = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return not finished


def tasks_done(dest, n):
    def when():
        try:
            with open(os.path.join(dest, DONE_LOG), "rb") as f:
                return f.read().count(b"\n") >= n
        except FileNotFoundError:
            return False
    return when


def assembling(dest):
    """True once the file is being written under its temporary name (stage 2)."""
    def when():
        try:
            return any(n.startswith(".out.ome.tif.") for n in os.listdir(dest))
        except FileNotFoundError:
            return False
    return when


@pytest.mark.slow
def test_killed_then_rerun_equals_an_uninterrupted_run(tmp_path):
    glob = write_planes(tmp_path / "src", make_volume(KILL_SHAPE, "uint16", seed=8))
    dest = str(tmp_path / "out")
    # The UUID in the OME-XML depends on the destination: compare runs into the same one.
    convert(glob, dest, format="ome-tiff", tile_size=16, n_cores=1, block_bytes=1)
    clean = files_of(dest)
    assert sorted(clean) == [".precomputed-tif-inputs.json", ".precomputed-tif.json", "out.offsets.json", "out.ome.tif"]
    shutil.rmtree(dest)
    kills = 0
    for when in (tasks_done(dest, 2), tasks_done(dest, 25), assembling(dest)):
        if not run_and_kill(glob, dest, when):
            break
        kills += 1
        assert not os.path.exists(os.path.join(dest, "out.ome.tif"))  # never there before it is whole
        assert 0 < open(os.path.join(dest, DONE_LOG), "rb").read().count(b"\n") <= KILL_SHAPE[0]
    assert kills >= 2, "the conversion finished before it could be killed"
    convert(glob, dest, format="ome-tiff", tile_size=16, n_cores=2, block_bytes=1)
    assert files_of(dest) == clean  # byte for byte; no work files, temporaries or done log left


def test_rerun_of_a_finished_conversion_changes_nothing(tmp_path, caplog):
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint8", seed=9))
    dest = tmp_path / "out"
    convert(glob, str(dest), format="ome-tiff", tile_size=TILE, n_cores=1)
    before = files_of(dest)
    mtime = os.stat(dest / "out.ome.tif").st_mtime_ns
    with caplog.at_level("INFO"):
        convert(glob, str(dest), format="ome-tiff", tile_size=TILE, n_cores=1)
    assert "already finished" in caplog.text
    assert files_of(dest) == before and os.stat(dest / "out.ome.tif").st_mtime_ns == mtime


def test_a_different_conversion_needs_overwrite_which_removes_only_its_files(tmp_path, capsys):
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", seed=10))
    dest = tmp_path / "out"
    base = ["--source", glob, "--dest", str(dest), "--no-progress", "--n-cores", "1"]
    assert main([*base, "--format", "ome-tiff", "--tile-size", "16"]) == 0
    (dest / "notes.txt").write_text("precious")
    before = (dest / "out.ome.tif").read_bytes()
    code = main([*base, "--format", "ome-tiff", "--tile-size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "different conversion (out.ome.tif)" in err and "--overwrite" in err, err
    assert (dest / "out.ome.tif").read_bytes() == before
    assert main([*base, "--format", "precomputed", "--overwrite"]) == 0  # the OME-TIFF makes way
    assert not (dest / "out.ome.tif").exists() and not (dest / "out.offsets.json").exists()
    assert (dest / "info").exists() and (dest / "notes.txt").read_text() == "precious"
    assert main([*base, "--format", "ome-tiff", "--overwrite"]) == 0  # and the precomputed dataset too
    assert sorted(os.listdir(dest)) == [".precomputed-tif-inputs.json", ".precomputed-tif.json", "notes.txt",
                                        "out.offsets.json", "out.ome.tif"]


def test_dask_cluster_writes_the_same_file(tmp_path):
    distributed = pytest.importorskip("distributed")
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", seed=13))
    dest = str(tmp_path / "out")
    convert(glob, dest, format="ome-tiff", tile_size=TILE, n_cores=2, block_bytes=1)
    local = files_of(dest)
    shutil.rmtree(dest)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_port=0) as cluster:
        convert(glob, dest, format="ome-tiff", tile_size=TILE, block_bytes=1,
                dask_scheduler=cluster.scheduler_address)
    assert files_of(dest) == local


# --- memory --------------------------------------------------------------------------------

@pytest.mark.slow
def test_peak_memory_does_not_grow_with_planes(tmp_path):
    # 128 planes are 16 MiB of voxels, 512 planes 64 MiB: were the stack (or the file) held in
    # memory, the second run would need about 48 MiB more.
    small = conversion_peak_rss(tmp_path, 128, '{"format": "ome-tiff", "tile_size": 64}')
    large = conversion_peak_rss(tmp_path, 512, '{"format": "ome-tiff", "tile_size": 64}')
    assert large - small < 12 * 2**20, (small / 2**20, large / 2**20)


# --- options that mean nothing here --------------------------------------------------------

@pytest.mark.parametrize("flags,words", [
    (["--format", "ome-tiff", "--sharded"], ["--sharded", "precomputed", "--tile-size"]),
    (["--format", "ome-tiff", "--encoding", "png"], ["--encoding", "precomputed"]),
    (["--format", "ome-tiff", "--chunk-size", "32,32,32"], ["--chunk-size", "--tile-size"]),
    (["--format", "ome-tiff", "--tile-size", "100"], ["--tile-size", "power of two"]),
    (["--format", "ome-tiff", "--compression", "jpeg"], ["--compression", "deflate", "lzw", "none"]),
    (["--format", "ome-tiff", "--levels", "9"], ["--levels 9", "at most 8"]),
    (["--format", "zarr", "--tile-size", "256"], ["--tile-size", "ome-tiff"]),
    (["--format", "precomputed", "--compression", "lzw"], ["--compression", "ome-tiff"]),
    (["--format", "ome-tiff", "--segmentation", "--mesh"], ["--mesh", "ome-tiff"]),
])
def test_options_of_other_formats_are_one_line_errors(tmp_path, capsys, flags, words):
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", seed=11))
    code = main(["--source", glob, "--dest", str(tmp_path / "out"), "--no-progress", *flags])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("precomputed-tif: error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "out").exists()


def test_labels_without_an_ome_pixel_type_are_refused(tmp_path, capsys):
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint64", segmentation=True, seed=12))
    code = main(["--source", glob, "--dest", str(tmp_path / "out"), "--no-progress", "--format", "ome-tiff",
                 "--segmentation"])
    err = capsys.readouterr().err
    assert code == 2 and "uint64" in err and "uint32" in err and len(err.strip().splitlines()) == 1, err
