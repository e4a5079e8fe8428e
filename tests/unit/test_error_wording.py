"""The same mistake, made in Python and on the command line: ``convert(...)`` raises an error
naming the Python parameter (``n_cores``, ``format='ome-zarr'``, ``overwrite=True``), the
``precomputed-tif`` command prints one line naming its flag (``--n-cores``, ``--format ome-zarr``,
``--overwrite``), and neither shows the other's spelling."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import tifffile

from precomputed_tif import PrecomputedTifError, convert
from precomputed_tif.cli.convert import main
from precomputed_tif.errors import for_command_line, param, setting, unfinished
from tests.helpers.stacks import make_volume, write_planes

EXE = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")
SHAPE = (5, 19, 23)
PREFIX = "precomputed-tif: error: "


@pytest.fixture
def planes(tmp_path):
    return write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", seed=7))


def python_error(source, dest, **keywords) -> str:
    with pytest.raises(PrecomputedTifError) as caught:
        convert(source, dest, n_cores=keywords.pop("n_cores", 1), chunk_size=(8, 8, 8), **keywords)
    return str(caught.value)


def command_error(capsys, source, dest, *argv) -> str:
    code = main(["--source", source, "--dest", dest, "--no-progress", "--chunk-size", "8,8,8", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    return lines[0][len(PREFIX):]


# (Python keywords, command-line flags, what Python says, what the command says)
MISTAKES = [
    ({"n_cores": 0}, ["--n-cores", "0"],
     "n_cores must be at least 1, got 0", "--n-cores must be at least 1, got 0"),
    ({"format": "zarr", "ngff_version": "0.4"}, ["--format", "zarr", "--ngff-version", "0.4"],
     "ngff_version goes with format='ome-zarr'", "--ngff-version goes with --format ome-zarr"),
    ({"format": "ome-tiff", "sharded": False}, ["--format", "ome-tiff", "--unsharded"],
     "encoding, jpeg_quality and sharded go with format='precomputed'; format='ome-tiff' takes tile_size and "
     "compression",
     "--encoding, --jpeg-quality, --sharded and --unsharded go with --format precomputed; --format ome-tiff takes "
     "--tile-size and --compression"),
    ({"voxel_size": (0, 1.5, 2)}, ["--voxel-size", "0,1.5,2"],
     "voxel_size must be three positive numbers x,y,z, got (0, 1.5, 2)",
     "--voxel-size must be three positive numbers x,y,z, got (0.0, 1.5, 2.0)"),
    ({"levels": 9}, ["--levels", "9"],
     "levels=9 is too many for a 23x19x5 volume with 8x8x8 chunks: at most 3 (level 3 already fits in one chunk)",
     "--levels 9 is too many for a 23x19x5 volume with 8x8x8 chunks: at most 3 (level 3 already fits in one "
     "chunk)"),
    ({"format": "precomputed", "encoding": "jpeg", "segmentation": True},
     ["--format", "precomputed", "--encoding", "jpeg", "--segmentation"],
     "jpeg is lossy and would change labels: choose encoding compressed_segmentation (the default for "
     "segmentation=True), png or raw",
     "jpeg is lossy and would change labels: choose --encoding compressed_segmentation (the default for "
     "--segmentation), png or raw"),
]


@pytest.mark.parametrize("keywords, flags, in_python, on_command_line", MISTAKES,
                         ids=[",".join(m[0]) for m in MISTAKES])
def test_a_mistake_names_the_parameter_in_python_and_the_flag_on_the_command_line(
        tmp_path, capsys, planes, keywords, flags, in_python, on_command_line):
    assert python_error(planes, str(tmp_path / "py"), **keywords) == in_python
    assert command_error(capsys, planes, str(tmp_path / "cli"), "--n-cores", "1", *flags) == on_command_line
    # Refused before anything was written, either way.
    assert not (tmp_path / "py").exists() and not (tmp_path / "cli").exists()


def test_a_changed_source_asks_python_for_overwrite_true_and_the_command_for_the_flag(tmp_path, capsys):
    volume = make_volume(SHAPE, "uint16", seed=8)
    glob = write_planes(tmp_path / "src", volume)
    dest = str(tmp_path / "out")
    convert(glob, dest, chunk_size=(8, 8, 8), n_cores=1)
    volume[3, 4, 5] ^= 1
    tifffile.imwrite(tmp_path / "src" / "img_0003.tif", volume[3], photometric="minisblack")

    said = python_error(glob, dest)
    assert said.startswith(f"source changed since the conversion in dest {dest} was made: ")
    assert "img_0003.tif was modified" in said
    assert said.endswith("add overwrite=True to convert it again from the start")
    assert "--" not in said

    printed = command_error(capsys, glob, dest, "--n-cores", "1")
    assert printed.startswith(f"--source changed since the conversion in --dest {dest} was made: ")
    assert printed.endswith("add --overwrite to convert it again from the start")
    assert printed.replace("--source", "source").replace("--dest", "dest").replace(
        "--overwrite", "overwrite=True") == said

    # What the advice says works: the same call with overwrite=True converts the new planes.
    convert(glob, dest, chunk_size=(8, 8, 8), n_cores=1, overwrite=True)


def test_the_real_command_prints_the_flag(tmp_path, planes):
    """The installed console script, in its own process: one line with the flag, exit 2."""
    proc = subprocess.run([EXE, "--source", planes, "--dest", str(tmp_path / "out"), "--n-cores", "0",
                           "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"{PREFIX}--n-cores must be at least 1, got 0\n"


def test_marks_survive_wrapping_and_pickling_and_never_show():
    """An error built from another (a stopped conversion) and one pickled back from a worker
    process keep both wordings; neither rendering shows the marks."""
    inner = PrecomputedTifError(f"{param('memory_limit')} 1M is too small; give {setting('sharded', False)}")
    outer = pickle.loads(pickle.dumps(unfinished(inner, "/data/out", "it has no info file")))
    assert str(outer) == ("memory_limit 1M is too small; give sharded=False; /data/out is unfinished (it has no "
                          "info file): fix this and make the same call again")
    assert for_command_line(outer) == ("--memory-limit 1M is too small; give --unsharded; /data/out is "
                                       "unfinished (it has no info file): fix this and run the same command again")
    assert repr(outer) == f"PrecomputedTifError({str(outer)!r})"
    for text in (str(outer), for_command_line(outer), repr(outer)):
        assert text.isprintable() and all(not 0xE000 <= ord(c) <= 0xF8FF for c in text)


def test_log_lines_name_the_parameter_in_python_and_the_flag_on_the_command_line(tmp_path, planes, caplog):
    """Planes without a voxel size: the log line that says so tells a Python caller to give
    ``voxel_size`` and a user of the command ``--voxel-size``."""
    with caplog.at_level("INFO", logger="precomputed_tif"):
        convert(planes, str(tmp_path / "py"), n_cores=1, chunk_size=(8, 8, 8), levels=1)
    said = [r.getMessage() for r in caplog.records if "no voxel size" in r.getMessage()]
    assert said and "voxel_size=(x, y, z)" in said[0] and "--voxel-size" not in said[0], said
    result = subprocess.run([EXE, "--source", planes, "--dest", str(tmp_path / "cli"), "--no-progress",
                             "--n-cores", "1", "--chunk-size", "8,8,8", "--levels", "1", "--log", "INFO"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if "no voxel size" in x)
    assert "--voxel-size X,Y,Z" in line and "voxel_size=" not in line, line
    assert not any(c in result.stderr for c in "\ue000\ue001\ue002")
