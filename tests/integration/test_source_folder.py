"""``--source FOLDER``: a folder of TIFF planes converts as ``FOLDER/*.tif`` would -- the same
planes in the same natural order -- and a folder that holds no planes says what it holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import tifffile

from precomputed_tif import convert
from tests.helpers.readback import read_level
from tests.helpers.stacks import make_volume

EXE = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")
SHAPE = (12, 17, 21)  # z, y, x


def run(*argv):
    return subprocess.run([EXE, *map(str, argv), "--no-progress", "--n-cores", "1"], capture_output=True,
                          text=True, timeout=120)


def test_a_folder_of_planes_converts_like_its_glob(tmp_path):
    volume = make_volume(SHAPE, "uint16", seed=5)
    folder = tmp_path / "planes"
    folder.mkdir()
    # Unpadded numbers (plane 10 after plane 9), both suffixes and cases, and what is not a plane.
    for z, plane in enumerate(volume):
        tifffile.imwrite(folder / f"img_{z}.{'TIF' if z == 3 else 'tiff' if z % 2 else 'tif'}", plane)
    (folder / "notes.txt").write_text("acquired 2026-12-01")
    (folder / ".img_99.tif").write_bytes(b"not a TIFF: hidden, left out")
    (folder / "sub").mkdir()
    proc = run("--source", folder, "--dest", tmp_path / "out", "--levels", "1")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "out" / "info").read_text())
    assert info["scales"][0]["size"] == [SHAPE[2], SHAPE[1], SHAPE[0]]
    got = read_level(str(tmp_path / "out"), "tiff", info["scales"][0], np.uint16)
    np.testing.assert_array_equal(got, volume)


def test_a_folder_from_python_too(tmp_path):
    volume = make_volume((3, 9, 11), "uint8", seed=1)
    for z, plane in enumerate(volume):
        tifffile.imwrite(tmp_path / f"p{z:02d}.tif", plane)
    info = convert(str(tmp_path), str(tmp_path / "out"), n_cores=1, levels=1, format="zarr")
    assert info["scales"][0]["size"] == [11, 9, 3]


def one_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("precomputed-tif: error: "), proc.stderr
    return lines[0]


def test_a_folder_without_planes_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("x")
    line = one_line(run("--source", empty, "--dest", tmp_path / "out"))
    assert f"--source {empty} is a folder with no TIFF files" in line and "'folder/*.tif'" in line, line
    assert not os.path.exists(tmp_path / "out")


def test_an_unfinished_dataset_is_not_taken_for_planes(tmp_path):
    volume = make_volume((4, 9, 11), "uint8", seed=2)
    tifffile.imwrite(tmp_path / "stack.tif", volume, photometric="minisblack")
    dataset = tmp_path / "dataset"
    assert run("--source", tmp_path / "stack.tif", "--dest", dataset, "--levels", "1").returncode == 0
    os.unlink(dataset / "info")  # as a conversion killed before its end leaves it
    line = one_line(run("--source", dataset, "--dest", tmp_path / "again"))
    assert "is a dataset whose conversion did not finish" in line, line
