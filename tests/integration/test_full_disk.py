"""A disk that fills while a conversion finishes: after the last chunk, while the stores'
final files, the NGFF root metadata, ``info`` or the assembled OME-TIFF are written.

Each such run must end in one line and status 2, with nothing presented as finished, and
the same command, once there is room, must finish it byte for byte as an undisturbed run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers.full_disk import leave_free, small_disk, used_bytes
from tests.helpers.readback import assert_same_contents, dataset_contents
from tests.helpers.stacks import make_volume, write_planes

EXE = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")
PAGE = 4096


@pytest.mark.parametrize("options, finished", [
    (["--format", "tiff"], "info"),
    (["--format", "zarr"], "info"),
    (["--format", "blockfs"], "info"),
    (["--format", "precomputed"], "info"),
    (["--format", "ome-zarr"], "info"),
    (["--format", "ome-zarr", "--ngff-version", "0.4"], "info"),
    (["--format", "ome-tiff", "--tile-size", "16"], "out.ome.tif"),
], ids=["tiff", "zarr", "blockfs", "precomputed", "ome-zarr", "ome-zarr-0.4", "ome-tiff"])
def test_disk_full_while_finishing_is_one_line_and_resumable(tmp_path, options, finished):
    glob = write_planes(tmp_path / "src", make_volume((21, 37, 43), "uint16", seed=71))
    args = ["--source", glob, "--chunk-size", "16,16,16", "--n-cores", "1", "--no-progress", *options]
    if "ome-tiff" in options:
        args.remove("--chunk-size"), args.remove("16,16,16")
    with small_disk(tmp_path / "disk") as disk:
        dest = os.path.join(disk, "out")
        before = used_bytes(disk)
        clean = subprocess.run([EXE, *args, "--dest", dest], capture_output=True, text=True)
        assert clean.returncode == 0, clean.stderr
        need = used_bytes(disk) - before
        reference = dataset_contents(dest, "blockfs" if "blockfs" in options else "")
        shutil.rmtree(dest)
        # A page or a few short of what the dataset takes: the disk fills after the last chunk.
        for short in (1, 3):
            filler = leave_free(disk, need - short * PAGE)
            run = subprocess.run([EXE, *args, "--dest", dest], capture_output=True, text=True)
            assert run.returncode == 2, (short, run.returncode, run.stderr)
            assert len(run.stderr.splitlines()) == 1, run.stderr
            assert "No space left on device" in run.stderr and "is unfinished" in run.stderr, run.stderr
            assert not os.path.exists(os.path.join(dest, finished))
            os.unlink(filler)
            again = subprocess.run([EXE, *args, "--dest", dest], capture_output=True, text=True)
            assert again.returncode == 0, (short, again.stderr)
            assert_same_contents(dataset_contents(dest, "blockfs" if "blockfs" in options else ""), reference)
            shutil.rmtree(dest)
