"""Files written by other software, through the real command line: the right volume or a clear error.

One test per kind of input microscopists bring (microscope OME / ImageJ files, libtiff, ImageMagick, GDAL,
Pillow). A converted dataset is read back twice, with the project's reader and with tensorstore's
neuroglancer_precomputed driver (on the raw chunks the project's web server answers: the stored
chunks are TIFF files), and compared with what tifffile reads from the input. The inputs come from
``foreign_tiffs``; each says what a correct reader must see.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert, open_volume
from precomputed_tif.cli.convert import main
from precomputed_tif.sources.tiff import open_stack
from tests.helpers import foreign_tiffs as ft
from tests.helpers.readback import expected_chunk_names
from tests.helpers.stacks import reference_pyramid

DEFAULT_VOXEL_UM = (1.8, 1.8, 2.0)
FAST = ["--no-progress", "--n-cores", "1", "--chunk-size", "16,16,16"]


# ---------------------------------------------------------------------------------------------
# Running the command and reading its result


def precomputed_tif(capsys, caplog, source, dest, *options):
    """``precomputed-tif --source SOURCE --dest DEST OPTIONS``: (exit status, stderr, stderr + log)."""
    code = main([*FAST, "--source", str(source), "--dest", str(dest), *map(str, options)])
    err = capsys.readouterr().err
    return code, err, err + "\n" + caplog.text


def converts(capsys, caplog, source, dest, *options) -> dict:
    """Run the command, expect success, return the dataset's ``info``."""
    code, err, _ = precomputed_tif(capsys, caplog, source, dest, *options)
    assert code == 0, err
    with open(os.path.join(dest, "info")) as f:
        return json.load(f)


def assert_one_line_error(code, err, *words, dest=None):
    """Exit status 2, one line on stderr starting with the program's name, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("precomputed-tif: "), lines[0]
    for w in words:
        assert str(w) in lines[0], (w, lines[0])
    if dest is not None:
        assert not os.path.exists(os.path.join(dest, "info")), "an error left a finished-looking dataset"
    return lines[0]


def mentions_number(line: str, n: int) -> bool:
    return re.search(rf"(?<![\d.]){n}(?![\d.])", line) is not None


def raw_copy(dest) -> str:
    """The dataset as Neuroglancer receives it: ``info`` and every chunk of every scale, as the
    project's web server answers them, written as plain files next to ``dest``; returns the directory."""
    from precomputed_tif.serving.core import Catalog, Dataset, handle

    def get(path) -> bytes:
        r = handle(catalog, "GET", path)
        assert r.status == 200, (path, r.status)
        return r.body if isinstance(r.body, bytes) else b"".join(r.body)

    raw = str(dest) + "_as_served"
    if os.path.exists(os.path.join(raw, "info")):
        return raw
    catalog = Catalog([Dataset("", str(dest))], single=True)
    info = get("/info")
    for scale in json.loads(info)["scales"]:
        os.makedirs(os.path.join(raw, scale["key"]))
        for name in expected_chunk_names(scale["size"], scale["chunk_sizes"][0]):
            with open(os.path.join(raw, scale["key"], name), "wb") as f:
                f.write(get(f"/{scale['key']}/{name}"))
    with open(os.path.join(raw, "info"), "wb") as f:
        f.write(info)
    return raw


def read_with_tensorstore(dest, scale_index=0) -> np.ndarray:
    """One scale read by tensorstore's neuroglancer_precomputed driver, as (c, z, y, x), or (z, y, x)
    for one channel. The project stores chunks as TIFF (or zarr, blockfs) files, which only its
    server turns into the raw chunks of the format: tensorstore reads what the server answers."""
    import tensorstore as ts

    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": "file://" + raw_copy(dest),
                     "scale_index": scale_index}, read=True).result()
    xyzc = np.asarray(store.read().result())  # tensorstore's axes: x, y, z, channel
    czyx = xyzc.transpose(3, 2, 1, 0)
    return czyx[0] if czyx.shape[0] == 1 else czyx


def assert_dataset(dest, info, volume, num_channels=1, voxel_size=DEFAULT_VOXEL_UM, data_type=None):
    """``info`` says what ``volume`` is, and both readers return exactly ``volume`` at full resolution."""
    assert info["num_channels"] == num_channels
    assert info["data_type"] == (data_type or volume.dtype.name)
    scale = info["scales"][0]
    assert scale["resolution"] == pytest.approx([v * 1000 for v in voxel_size], rel=1e-4)
    z, y, x = volume.shape[-3:]
    assert scale["size"] == [x, y, z]
    expected_shape = (num_channels, z, y, x) if num_channels > 1 else (z, y, x)
    assert volume.shape == expected_shape
    ours = open_volume(str(dest)).read(scale["key"])
    assert ours.shape == expected_shape, "open_volume(...).read() is (c, z, y, x) for channels, else (z, y, x)"
    np.testing.assert_array_equal(ours, volume)
    np.testing.assert_array_equal(read_with_tensorstore(dest, 0), volume)


def make(kind, tmp_path):
    fn, kw = ft.ALL[kind]
    return fn(tmp_path / kind, **kw)


# ---------------------------------------------------------------------------------------------
# Channels and time points are never folded into z


@pytest.mark.parametrize("kind", ["ome_zcyx", "ome_czyx_nm", "imagej_zcyx"])
def test_two_channel_stack_becomes_one_dataset_with_two_channels(tmp_path, capsys, caplog, kind):
    source, e = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume, num_channels=2, voxel_size=e.voxel_size)
    ranges = info["precomputed_tif"]["display_range"]
    assert len(ranges) == 2 and all(lo < hi for lo, hi in ranges), ranges


@pytest.mark.parametrize("kind, channel", [("ome_zcyx", 1), ("ome_czyx_nm", 0), ("imagej_zcyx", 1)])
def test_channel_option_converts_only_that_channel(tmp_path, capsys, caplog, kind, channel):
    source, e = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out", "--channel", channel)
    assert_dataset(tmp_path / "out", info, e.channel(channel), voxel_size=e.voxel_size)


def test_channel_option_picks_one_colour_of_rgb_planes(tmp_path, capsys, caplog):
    source, e = make("pillow_rgb", tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out", "--channel", "1")
    assert_dataset(tmp_path / "out", info, e.channel(1))


def test_channel_that_does_not_exist_is_an_error(tmp_path, capsys, caplog):
    source, _ = make("ome_zcyx", tmp_path)
    code, err, _ = precomputed_tif(capsys, caplog, source, tmp_path / "out", "--channel", "2")
    assert_one_line_error(code, err, "--channel", dest=tmp_path / "out")


@pytest.mark.parametrize("kind", ["ome_tzyx", "imagej_tzyx"])
def test_time_series_without_timepoint_is_an_error_that_counts_the_time_points(tmp_path, capsys, caplog, kind):
    source, e = make(kind, tmp_path)
    code, err, _ = precomputed_tif(capsys, caplog, source, tmp_path / "out")
    line = assert_one_line_error(code, err, "--timepoint", dest=tmp_path / "out")
    assert mentions_number(line, len(e.timepoints)), line


def test_timepoint_that_does_not_exist_is_an_error(tmp_path, capsys, caplog):
    source, _ = make("ome_tzyx", tmp_path)
    code, err, _ = precomputed_tif(capsys, caplog, source, tmp_path / "out", "--timepoint", "3")
    assert_one_line_error(code, err, "--timepoint", dest=tmp_path / "out")


@pytest.mark.parametrize("kind", ["ome_tzyx", "imagej_tzyx"])
def test_timepoint_option_converts_that_time_point(tmp_path, capsys, caplog, kind):
    source, e = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out", "--timepoint", "2")
    assert_dataset(tmp_path / "out", info, e.timepoints[2], voxel_size=e.voxel_size)


# ---------------------------------------------------------------------------------------------
# Every plane, or an error: >4 GB ImageJ layout, files cut short


def test_imagej_stack_with_only_the_first_page_header_reads_every_plane(tmp_path, capsys, caplog):
    source, e = ft.make_imagej_truncated(tmp_path / "src")
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume, voxel_size=e.voxel_size)


@pytest.mark.parametrize("kind", ["truncated_libtiff", "truncated_libtiff_header", "truncated_tifffile"])
def test_file_cut_short_is_an_error_naming_planes_expected_and_readable(tmp_path, capsys, caplog, kind):
    source, e = make(kind, tmp_path)
    code, err, _ = precomputed_tif(capsys, caplog, source, tmp_path / "out")
    line = assert_one_line_error(code, err, os.path.basename(source), dest=tmp_path / "out")
    assert mentions_number(line, e.planes_expected), line
    assert any(mentions_number(line, n) for n in e.notes["readable_counts"]), (e.notes["readable_counts"], line)


# ---------------------------------------------------------------------------------------------
# Order of plane files; paths with glob characters


def test_unpadded_plane_numbers_sort_naturally_with_a_warning(tmp_path, capsys, caplog):
    source, e = ft.make_unpadded_planes(tmp_path / "src")
    code, err, everything = precomputed_tif(capsys, caplog, source, tmp_path / "out")
    assert code == 0, err
    assert re.search(r"zero.?padd", everything, re.IGNORECASE), everything
    with open(tmp_path / "out" / "info") as f:
        assert_dataset(tmp_path / "out", json.load(f), e.volume)


def test_convert_keeps_the_order_of_an_explicit_list(tmp_path):
    _, e = ft.make_unpadded_planes(tmp_path / "src")
    info = convert(list(reversed(e.files)), str(tmp_path / "out"), chunk_size=(16, 16, 16), n_cores=1)
    assert_dataset(tmp_path / "out", info, e.volume[::-1])


def test_folder_named_with_brackets_holds_the_planes_of_the_glob(tmp_path, capsys, caplog):
    source, e = ft.make_bracket_folder_planes(tmp_path)
    assert os.path.basename(os.path.dirname(source)) == "run[1]"
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume)


def test_existing_file_in_a_folder_named_with_brackets_is_used_as_is(tmp_path, capsys, caplog):
    source, e = ft.make_bracket_folder_stack(tmp_path)
    assert source.endswith(os.path.join("run[1]", "stack.tif"))
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume)


# ---------------------------------------------------------------------------------------------
# Voxel size from the file's metadata


@pytest.mark.parametrize("kind, nm", [("ome_zcyx", [325, 325, 2500]), ("ome_czyx_nm", [325, 350, 2500]),
                                      ("imagej_zcyx", [400, 450, 2500]), ("imagej_truncated", [400, 450, 2500])])
def test_voxel_size_comes_from_the_metadata(tmp_path, capsys, caplog, kind, nm):
    source, _ = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert info["scales"][0]["resolution"] == pytest.approx(nm, rel=1e-4)


@pytest.mark.parametrize("kind", ["ome_zcyx", "imagej_zcyx"])
def test_explicit_voxel_size_wins_over_the_metadata(tmp_path, capsys, caplog, kind):
    source, e = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out", "--voxel-size", "0.5,0.6,3")
    assert_dataset(tmp_path / "out", info, e.volume, num_channels=2, voxel_size=(0.5, 0.6, 3.0))


@pytest.mark.parametrize("kind", ["multipage_lzw", "pillow_grey16", "gdal_single_overviews"])
def test_without_voxel_size_metadata_the_default_is_used(tmp_path, capsys, caplog, kind):
    # tifffile and GDAL write XResolution 1/1 with ResolutionUnit NONE: that is not a voxel size.
    source, _ = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert info["scales"][0]["resolution"] == pytest.approx([1800, 1800, 2000])


@pytest.mark.parametrize("writer", ["imagej", "tiffset"])
def test_resolution_rationals_give_back_the_pixel_size_that_was_written(tmp_path, capsys, caplog, writer):
    # ImageJ writes 1/0.26 µm as 3846153/1000000, libtiff a float32 as a fraction: both mean 0.26 µm.
    source, e = ft.make_imagej_resolution(tmp_path / "src", pixel_um=0.26, writer=writer)
    num, den = e.notes["rational"]
    assert den / num != 0.26
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert info["scales"][0]["resolution"] == [260.0, 260.0, 2500.0]


def test_resolution_rational_keeps_the_digits_of_a_genuine_pixel_size(tmp_path, capsys, caplog):
    source, _ = ft.make_imagej_resolution(tmp_path / "src", pixel_um=0.2600004, writer="imagej")
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert info["scales"][0]["resolution"][:2] == [260.0004, 260.0004]


def test_voxel_size_with_z_1000_times_x_is_used_with_a_warning_quoting_the_metadata(tmp_path, capsys, caplog):
    # x and y in nm, z in µm, the same number: a unit mistake that makes z 1000 times x.
    vol = ft.pattern((5, ft.Y, ft.X), np.uint16, seed=54)
    source = tmp_path / "units.ome.tif"
    tifffile.imwrite(source, vol, ome=True, photometric="minisblack", metadata={
        "axes": "ZYX", "PhysicalSizeX": 250, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 250,
        "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 250, "PhysicalSizeZUnit": "µm"})
    with caplog.at_level("WARNING"):
        info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, vol, voxel_size=(0.25, 0.25, 250))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    quoted = [w for w in warnings if "1000 times" in w]
    assert len(quoted) == 1, warnings
    for words in ('PhysicalSizeXUnit="nm"', 'PhysicalSizeZUnit="µm"', 'PhysicalSizeZ="250', "units.ome.tif"):
        assert words in quoted[0], quoted[0]


def test_ordinary_anisotropy_gives_no_warning(tmp_path, capsys, caplog):
    source, e = make("ome_zcyx", tmp_path)  # z 2.5 µm, x and y 0.325 µm
    with caplog.at_level("WARNING"):
        converts(capsys, caplog, source, tmp_path / "out")
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "times" in r.getMessage()]


# ---------------------------------------------------------------------------------------------
# Multi-file OME-TIFF: one series, whichever of its files is given

MULTIFILE = ["bioformats_multifile", "tifffile_multifile"]


def tifffile_series(path) -> np.ndarray:
    """What tifffile reads as the series ``path`` belongs to: (c, z, y, x) for channels, else (z, y, x)."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data, axes = series.asarray(), series.axes
    assert axes in ("ZYX", "ZCYX"), axes
    return data.transpose(1, 0, 2, 3) if axes == "ZCYX" else data


@pytest.mark.parametrize("given", ["first file", "middle file", "glob of all files"])
@pytest.mark.parametrize("kind", MULTIFILE)
def test_multifile_ome_tiff_is_one_series_whichever_of_its_files_is_given(tmp_path, capsys, caplog, kind, given):
    first, e = make(kind, tmp_path)
    source = {"first file": first, "middle file": e.files[len(e.files) // 2],
              "glob of all files": e.notes["glob"]}[given]
    volume = tifffile_series(first)
    np.testing.assert_array_equal(volume, e.volume)
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, volume, num_channels=e.num_channels, voxel_size=e.voxel_size)
    # Every file a plane is read from is part of the source (what a fingerprint of it must cover).
    stack = open_stack(source)
    assert sorted(os.path.realpath(f) for f in stack.files) == sorted(os.path.realpath(f) for f in e.files)


@pytest.mark.parametrize("kind", MULTIFILE)
def test_multifile_ome_tiff_with_a_file_missing_is_one_line_naming_it(tmp_path, capsys, caplog, kind):
    first, e = make(kind, tmp_path)
    gone = e.files[2]
    os.remove(gone)
    for source in (first, e.files[-1], e.notes["glob"]):
        code, err, _ = precomputed_tif(capsys, caplog, source, tmp_path / "out")
        assert_one_line_error(code, err, os.path.basename(gone), "missing", dest=tmp_path / "out")


def test_glob_of_a_multifile_ome_tiff_and_another_file_is_refused(tmp_path, capsys, caplog):
    first, e = make("tifffile_multifile", tmp_path)
    stray = os.path.join(os.path.dirname(first), "part9.ome.tif")
    tifffile.imwrite(stray, e.volume[0])
    code, err, _ = precomputed_tif(capsys, caplog, e.notes["glob"], tmp_path / "out")
    assert_one_line_error(code, err, "part9.ome.tif", "multi-file OME-TIFF", dest=tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# Types


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32"])
def test_signed_planes_are_stored_natively_and_averaged_rounding_half_up(tmp_path, capsys, caplog, dtype):
    source, e = ft.make_signed_planes(tmp_path / "src", dtype)
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume, data_type=dtype)
    assert len(info["scales"]) >= 3
    scales = info["scales"]
    steps = [[1, 1, 1]] + [[round(b / a) for a, b in zip(s0["resolution"], s1["resolution"])]
                           for s0, s1 in zip(scales, scales[1:])]
    refs = reference_pyramid(e.volume, steps, segmentation=False)
    vol = open_volume(str(tmp_path / "out"))
    for scale, ref in zip(scales, refs):
        np.testing.assert_array_equal(vol.read(scale["key"]), ref, err_msg=scale["key"])
    np.testing.assert_array_equal(read_with_tensorstore(tmp_path / "out", 1), refs[1])
    assert (refs[1] < 0).any()


def test_float64_planes_become_float32_with_a_warning(tmp_path, capsys, caplog):
    source, e = ft.make_float64_planes(tmp_path / "src")
    code, err, everything = precomputed_tif(capsys, caplog, source, tmp_path / "out")
    assert code == 0, err
    assert "float64" in everything and "float32" in everything, everything
    with open(tmp_path / "out" / "info") as f:
        assert_dataset(tmp_path / "out", json.load(f), e.volume.astype(np.float32), data_type="float32")


def test_uint64_image_is_refused_suggesting_segmentation_or_uint32(tmp_path, capsys, caplog):
    source, _ = ft.make_uint64_planes(tmp_path / "src")
    code, err, _ = precomputed_tif(capsys, caplog, source, tmp_path / "out")
    assert_one_line_error(code, err, "uint64", "--segmentation", "uint32", dest=tmp_path / "out")


@pytest.mark.parametrize("kind", ["pillow_rgb", "pillow_rgba"])
def test_rgb_and_rgba_planes_become_three_or_four_uint8_channels(tmp_path, capsys, caplog, kind):
    source, e = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume, num_channels=len(kind.split("_")[1]))


# ---------------------------------------------------------------------------------------------
# Reduced-resolution pages


def test_thumbnail_after_each_plane_is_skipped(tmp_path, capsys, caplog):
    source, e = ft.make_thumbnails(tmp_path / "src")
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume)


@pytest.mark.parametrize("kind", ["gdal_deflate_overviews", "gdal_single_overviews"])
def test_gdal_overview_pages_are_skipped(tmp_path, capsys, caplog, kind):
    source, e = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume)


# ---------------------------------------------------------------------------------------------
# JPEG and everything else other tools write


@pytest.mark.parametrize("kind", ["tiffcp_jpeg_grey", "tiffcp_jpeg_ycbcr", "tiffcp_jpeg_rgb", "pillow_jpeg_grey",
                                  "pillow_jpeg_rgb", "imagemagick_jpeg", "gdal_jpeg_overviews"])
def test_jpeg_tiff_decodes_to_what_tifffile_reads(tmp_path, capsys, caplog, kind):
    source, e = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume, num_channels=e.num_channels)


@pytest.mark.parametrize("kind", ["tiffcp_lzw", "tiffcp_packbits", "tiffcp_tiled_zip", "imagemagick_zip16",
                                  "pillow_grey8", "pillow_grey16", "multipage_lzw"])
def test_files_other_tools_write_convert_exactly(tmp_path, capsys, caplog, kind):
    # ImageMagick marks every page NewSubfileType 2 ("one page of many"): not a reduced-resolution page.
    source, e = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out")
    assert_dataset(tmp_path / "out", info, e.volume)


@pytest.mark.parametrize("kind", ["tiffsplit", "tiffsplit_imagej"])
def test_tiffsplit_planes_are_whole_although_the_first_describes_the_stack(tmp_path, capsys, caplog, kind):
    source, e = make(kind, tmp_path)
    info = converts(capsys, caplog, source, tmp_path / "out", "--voxel-size", "1,1,1")
    assert_dataset(tmp_path / "out", info, e.volume, voxel_size=(1, 1, 1))


@pytest.mark.parametrize("kind", list(ft.ALL))
def test_generated_input_is_what_it_claims_to_be(tmp_path, kind):
    # Each generator checks its file with tifffile and, where easy, with the writing tool's own reader.
    _, e = make(kind, tmp_path)
    assert e.files and all(os.path.exists(f) for f in e.files)


# ---------------------------------------------------------------------------------------------
# Contrast


def test_twelve_bit_data_gets_a_display_range_within_its_values(tmp_path, capsys, caplog):
    source, _ = ft.make_twelve_bit(tmp_path / "src")
    info = converts(capsys, caplog, source, tmp_path / "out")
    ranges = info["precomputed_tif"]["display_range"]
    assert len(ranges) == 1
    lo, hi = ranges[0]
    assert 0 <= lo < hi <= 4095, ranges


# ---------------------------------------------------------------------------------------------
# The installed console script, as a user runs it


def console_script(*argv):
    exe = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")
    return subprocess.run([exe, *FAST, *map(str, argv)], capture_output=True, text=True, timeout=120)


def test_console_script_converts_a_two_channel_ome_tiff(tmp_path):
    source, e = ft.make_ome(tmp_path / "src", axes="ZCYX")
    p = console_script("--source", source, "--dest", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    with open(tmp_path / "out" / "info") as f:
        assert_dataset(tmp_path / "out", json.load(f), e.volume, num_channels=2, voxel_size=e.voxel_size)


def test_console_script_warns_on_stderr_about_unpadded_plane_numbers(tmp_path):
    source, e = ft.make_unpadded_planes(tmp_path / "src")
    p = console_script("--source", source, "--dest", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert re.search(r"zero.?padd", p.stderr, re.IGNORECASE), p.stderr
    np.testing.assert_array_equal(open_volume(str(tmp_path / "out")).read("1_1_1"), e.volume)


def test_console_script_reports_a_file_cut_short_in_one_line(tmp_path):
    source, e = ft.make_truncated_libtiff(tmp_path / "src")
    p = console_script("--source", source, "--dest", tmp_path / "out")
    line = assert_one_line_error(p.returncode, p.stderr, os.path.basename(source), dest=tmp_path / "out")
    assert mentions_number(line, 70) and mentions_number(line, e.planes_readable), line


def test_multifile_ome_tiff_with_a_fifo_for_a_file_is_one_line_not_a_wait(tmp_path):
    first, e = make("tifffile_multifile", tmp_path)
    os.remove(e.files[1])
    os.mkfifo(e.files[1])
    p = console_script("--source", first, "--dest", tmp_path / "out")
    assert_one_line_error(p.returncode, p.stderr, os.path.basename(e.files[1]), "FIFO", dest=tmp_path / "out")
