"""Every mistake a user can make: one line on stderr, exit 2, no traceback, nothing half-written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from precomputed_tif.cli.convert import main
from tests.helpers.stacks import make_volume, write_planes

SHAPE = (6, 20, 30)


@pytest.fixture
def planes(tmp_path):
    return write_planes(tmp_path / "src", make_volume(SHAPE, "uint16"))


def run(capsys, *argv):
    code = main(["--no-progress", "--n-cores", "1", "--chunk-size", "8,8,8", *map(str, argv)])
    err = capsys.readouterr().err
    return code, err


def assert_user_error(code, err, *words):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("precomputed-tif: error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_empty_glob(tmp_path, capsys):
    code, err = run(capsys, "--source", tmp_path / "nothing_*.tif", "--dest", tmp_path / "out")
    assert_user_error(code, err, "no files match", "nothing_*.tif")
    assert not (tmp_path / "out").exists()


def test_planes_of_different_shape_name_the_file(tmp_path, capsys, planes):
    tifffile.imwrite(tmp_path / "src" / "img_0003.tif", np.zeros((21, 30), np.uint16))
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out")
    assert_user_error(code, err, "img_0003.tif", "30x21", "30x20")
    assert not (tmp_path / "out").exists()


def test_planes_of_different_dtype_name_the_file(tmp_path, capsys, planes):
    tifffile.imwrite(tmp_path / "src" / "img_0004.tif", np.zeros((20, 30), np.uint8))
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out")
    assert_user_error(code, err, "img_0004.tif", "uint8", "uint16")


def test_not_a_tiff(tmp_path, capsys, planes):
    (tmp_path / "src" / "img_0002.tif").write_bytes(b"this is not an image")
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out")
    assert_user_error(code, err, "img_0002.tif", "not a readable TIFF")


def test_truncated_tiff(tmp_path, capsys, planes):
    path = tmp_path / "src" / "img_0001.tif"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out")
    assert_user_error(code, err, "img_0001.tif")


def test_corrupt_compressed_data_found_while_converting(tmp_path, capsys):
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16"), compression="zlib")
    path = tmp_path / "src" / "img_0005.tif"
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = b"\xff" * count  # headers intact, pixels garbage
    path.write_bytes(bytes(data))
    code, err = run(capsys, "--source", glob, "--dest", tmp_path / "out")
    assert_user_error(code, err, "img_0005.tif", "unfinished")
    assert not (tmp_path / "out" / "info").exists()


@pytest.mark.parametrize("value", ["1.8,1.8", "a,b,c", "0,1.8,2", "-1,1,1", "nan,1,1"])
def test_bad_voxel_size(tmp_path, capsys, planes, value):
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out", f"--voxel-size={value}")
    assert_user_error(code, err, "--voxel-size")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["64,64", "64,64,0", "1.5,64,64"])
def test_bad_chunk_size(tmp_path, capsys, planes, value):
    code = main(["--source", planes, "--dest", str(tmp_path / "out"), "--chunk-size", value])
    assert_user_error(code, capsys.readouterr().err, "--chunk-size")


@pytest.mark.parametrize("dtype,flags,words", [
    ("uint64", [], ["uint64", "--segmentation", "uint32"]),
    ("int64", [], ["int64", "int32"]),
    ("int16", ["--segmentation"], ["int16", "unsigned", "uint16"]),
    ("complex64", [], ["complex64"]),
])
def test_unsupported_dtype(tmp_path, capsys, dtype, flags, words):
    glob = write_planes(tmp_path / "src", np.zeros(SHAPE, dtype))
    code, err = run(capsys, "--source", glob, "--dest", tmp_path / "out", *flags)
    assert_user_error(code, err, *words)


def test_float_segmentation_is_refused(tmp_path, capsys):
    glob = write_planes(tmp_path / "src", np.zeros(SHAPE, np.float32))
    code, err = run(capsys, "--source", glob, "--dest", tmp_path / "out", "--segmentation")
    assert_user_error(code, err, "float32", "segmentation")


def test_rgb_segmentation_is_refused(tmp_path, capsys):
    for z in range(3):
        tifffile.imwrite(tmp_path / f"rgb_{z}.tif", np.zeros((20, 30, 3), np.uint8), photometric="rgb")
    code, err = run(capsys, "--source", tmp_path / "rgb_*.tif", "--dest", tmp_path / "out", "--segmentation")
    assert_user_error(code, err, "3 channels", "--channel")


def test_channel_out_of_range(tmp_path, capsys):
    for z in range(3):
        tifffile.imwrite(tmp_path / f"rgb_{z}.tif", np.zeros((20, 30, 3), np.uint8), photometric="rgb")
    code, err = run(capsys, "--source", tmp_path / "rgb_*.tif", "--dest", tmp_path / "out", "--channel", "3")
    assert_user_error(code, err, "--channel 3", "3 channels")


def test_unknown_format(tmp_path, capsys, planes):
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out", "--format", "hdf5")
    assert_user_error(code, err, "hdf5", "tiff", "zarr")
    assert not (tmp_path / "out").exists()


def test_too_many_levels(tmp_path, capsys, planes):
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out", "--levels", "9")
    assert_user_error(code, err, "--levels 9", "at most")


def test_dest_is_a_file(tmp_path, capsys, planes):
    (tmp_path / "out").write_text("precious")
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out")
    assert_user_error(code, err, "is a file")
    assert (tmp_path / "out").read_text() == "precious"


def test_dest_with_other_files_is_never_touched(tmp_path, capsys, planes):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("precious")
    for extra in ([], ["--overwrite"]):
        code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out", *extra)
        assert_user_error(code, err, "not empty")
    assert os.listdir(tmp_path / "out") == ["notes.txt"]


def test_dest_with_another_dataset_needs_overwrite(tmp_path, capsys, planes):
    assert run(capsys, "--source", planes, "--dest", tmp_path / "out")[0] == 0
    before = (tmp_path / "out" / "info").read_text()
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out", "--voxel-size", "1,1,1")
    assert_user_error(code, err, "different", "--overwrite")
    assert (tmp_path / "out" / "info").read_text() == before
    code, err = run(capsys, "--source", planes, "--dest", tmp_path / "out", "--voxel-size", "1,1,1",
                    "--format", "zarr", "--overwrite")
    assert code == 0, err
    info = json.loads((tmp_path / "out" / "info").read_text())
    assert info["scales"][0]["resolution"] == [1000.0, 1000.0, 1000.0]
    assert not list((tmp_path / "out" / "1_1_1").glob("*.tiff"))


def test_overwrite_replaces_only_the_dataset(tmp_path, capsys, planes):
    """A point layer beside the dataset (as precomputed-write-points suggests) survives --overwrite."""
    out = tmp_path / "out"
    assert run(capsys, "--source", planes, "--dest", out)[0] == 0
    (out / "cells").mkdir()
    (out / "cells" / "info").write_text("points")
    (out / "notes.txt").write_text("precious")
    code, err = run(capsys, "--source", planes, "--dest", out, "--format", "zarr", "--overwrite")
    assert code == 0, err
    assert (out / "cells" / "info").read_text() == "points" and (out / "notes.txt").read_text() == "precious"
    assert (out / "1_1_1" / ".zarray").exists() and not list((out / "1_1_1").glob("*.tiff"))


def test_overwrite_decides_before_deleting(tmp_path, capsys, planes):
    """When the new dataset needs a name the old one does not own, nothing is deleted."""
    out = tmp_path / "out"
    assert run(capsys, "--source", planes, "--dest", out, "--levels", "1")[0] == 0
    (out / "2_2_2").mkdir()
    (out / "2_2_2" / "mine.txt").write_text("precious")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code, err = run(capsys, "--source", planes, "--dest", out, "--levels", "2", "--overwrite")
    assert_user_error(code, err, "2_2_2", "nothing was removed")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert json.loads((out / "info").read_text())["scales"][0]["key"] == "1_1_1"


@pytest.mark.parametrize("blocked", ["zmesh", "DracoPy"])
def test_mesh_without_the_mesh_extra_names_it_before_converting(tmp_path, capsys, monkeypatch, blocked):
    monkeypatch.setitem(sys.modules, blocked, None)  # as if not installed: importing it fails
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", segmentation=True))
    code, err = run(capsys, "--source", glob, "--dest", tmp_path / "out", "--segmentation", "--mesh")
    assert_user_error(code, err, blocked, "pip install 'precomputed-tif[mesh]'")
    assert not (tmp_path / "out").exists()


def test_converting_needs_no_mesh_extra(tmp_path, capsys, monkeypatch):
    for name in ("zmesh", "DracoPy"):
        monkeypatch.setitem(sys.modules, name, None)
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", segmentation=True))
    code, err = run(capsys, "--source", glob, "--dest", tmp_path / "out", "--segmentation")
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "info").read_text())["type"] == "segmentation"


def test_real_console_script_reports_one_line(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")
    proc = subprocess.run([exe, "--source", str(tmp_path / "none*.tif"), "--dest", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("precomputed-tif: error: no files match")
    assert "Traceback" not in proc.stderr


def test_help_explains_the_options():
    proc = subprocess.run([sys.executable, "-m", "precomputed_tif.cli.convert", "-h"], capture_output=True, text=True)
    assert proc.returncode == 0
    for word in ("--source", "--dest", "--levels", "--voxel-size", "microns", "--format", "zarr",
                 "--chunk-size", "--segmentation", "--n-cores", "--log", "examples"):
        assert word in proc.stdout


def console_script(*argv, timeout=60):
    """The installed command, killed (and the test failed) if it has not ended in ``timeout`` s."""
    exe = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")
    return subprocess.run([exe, "--no-progress", "--n-cores", "1", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout)


def test_fifo_named_like_a_plane_is_one_line_not_a_wait(tmp_path, planes):
    # Nothing ever writes to the FIFO: opening it for reading as a file would wait forever.
    os.remove(tmp_path / "src" / "img_0003.tif")
    os.mkfifo(tmp_path / "src" / "img_0003.tif")
    proc = console_script("--source", planes, "--dest", tmp_path / "out")
    assert_user_error(proc.returncode, proc.stderr, "img_0003.tif", "FIFO", "not a regular file")
    assert not (tmp_path / "out").exists()


def test_fifo_as_the_source_is_one_line_not_a_wait(tmp_path):
    os.mkfifo(tmp_path / "stack.tif")
    proc = console_script("--source", tmp_path / "stack.tif", "--dest", tmp_path / "out")
    assert_user_error(proc.returncode, proc.stderr, "stack.tif", "FIFO", "not a regular file")
    assert not (tmp_path / "out").exists()


def test_device_named_like_a_plane_is_one_line(tmp_path, planes):
    # /dev/zero would be read forever: it never ends.
    os.remove(tmp_path / "src" / "img_0002.tif")
    os.symlink("/dev/zero", tmp_path / "src" / "img_0002.tif")
    proc = console_script("--source", planes, "--dest", tmp_path / "out")
    assert_user_error(proc.returncode, proc.stderr, "img_0002.tif", "character device")
