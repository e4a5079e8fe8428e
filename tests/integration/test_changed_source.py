"""A rerun resumes only the same source: planes exported again under the same names, a
multi-page file rewritten, or a source dataset converted again, are refused by name, since
resuming would mix chunks of the old and the new data (and make coarser levels of the mix)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import tifffile

from precomputed_tif import PrecomputedTifError, convert
from precomputed_tif.cli.convert import main
from precomputed_tif.pipeline.destination import INPUTS, JOB_RECORD
from precomputed_tif.pipeline.progress import DoneLog
from tests.helpers.readback import assert_same_contents, dataset_contents, files_of
from tests.helpers.stacks import make_volume, write_planes

EXE = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")
SHAPE = (33, 71, 59)


def killed_run(args, dest, until=bool):
    """Start the command and SIGKILL all its processes once ``until`` holds of the ids of the
    tasks recorded done (by default: once one is)."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not until(DoneLog(dest).load()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(dest, "info")), "finished before it could be killed"


@pytest.mark.parametrize("fmt", ["tiff", "zarr", "blockfs"])
def test_planes_exported_again_after_a_kill_are_refused_by_name(tmp_path, fmt, capsys):
    old, new = make_volume(SHAPE, "uint16", seed=81), make_volume(SHAPE, "uint16", seed=82)
    glob = write_planes(tmp_path / "src", old)
    dest = str(tmp_path / "out")
    args = ["--source", glob, "--dest", dest, "--format", fmt, "--chunk-size", "8,8,8", "--n-cores", "2",
            "--memory-limit", "280M", "--no-progress"]
    killed_run([EXE, *args], dest)
    write_planes(tmp_path / "src", new)  # the same names, re-acquired
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "img_0000.tif was modified" in err and "--overwrite" in err, err
    assert not os.path.exists(os.path.join(dest, "info"))
    # --overwrite starts again: the result is the new planes' dataset, as a fresh conversion makes it.
    assert main([*args, "--overwrite"]) == 0
    assert main(["--source", glob, "--dest", str(tmp_path / "fresh"), *args[4:]]) == 0
    assert_same_contents(dataset_contents(dest, fmt), dataset_contents(tmp_path / "fresh", fmt))


def test_unchanged_planes_resume_and_a_finished_dataset_reruns(tmp_path):
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", seed=83))
    dest = str(tmp_path / "out")
    killed_run([EXE, "--source", glob, "--dest", dest, "--chunk-size", "8,8,8", "--memory-limit", "280M",
                "--no-progress"], dest)
    convert(glob, dest, chunk_size=(8, 8, 8))
    convert(glob, str(tmp_path / "clean"), chunk_size=(8, 8, 8))
    assert files_of(dest) == files_of(tmp_path / "clean")
    convert(glob, dest, chunk_size=(8, 8, 8))  # a finished dataset: the same command is still accepted


def test_a_changed_plane_of_a_finished_dataset_is_named(tmp_path):
    volume = make_volume(SHAPE, "uint16", seed=84)
    glob = write_planes(tmp_path / "src", volume)
    dest = str(tmp_path / "out")
    convert(glob, dest, chunk_size=(8, 8, 8))
    before = files_of(dest)
    volume[17, 3, 4] ^= 1
    tifffile.imwrite(tmp_path / "src" / "img_0017.tif", volume[17], photometric="minisblack")
    with pytest.raises(PrecomputedTifError, match=r"img_0017\.tif was modified.*add overwrite=True"):
        convert(glob, dest, chunk_size=(8, 8, 8))
    assert files_of(dest) == before  # refused before anything was written
    os.unlink(tmp_path / "src" / "img_0017.tif")
    tifffile.imwrite(tmp_path / "src" / "img_0017.tif", volume[0], photometric="minisblack")
    os.utime(tmp_path / "src" / "img_0017.tif", ns=(0, 0))
    with pytest.raises(PrecomputedTifError, match=r"img_0017\.tif was modified"):
        convert(glob, dest, chunk_size=(8, 8, 8))


def test_a_rewritten_multipage_file_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, make_volume(SHAPE, "uint16", seed=85), photometric="minisblack")
    dest = str(tmp_path / "out")
    convert(str(path), dest, chunk_size=(8, 8, 8))
    tifffile.imwrite(path, make_volume(SHAPE, "uint16", seed=86), photometric="minisblack", compression="zlib")
    with pytest.raises(PrecomputedTifError, match=r"stack\.tif is another size"):
        convert(str(path), dest, chunk_size=(8, 8, 8))


def test_a_source_dataset_converted_again_is_refused(tmp_path):
    first = str(tmp_path / "first")
    convert(write_planes(tmp_path / "a", make_volume(SHAPE, "uint16", seed=87)), first, chunk_size=(8, 8, 8))
    dest = str(tmp_path / "copy")
    convert(first, dest, format="zarr", chunk_size=(8, 8, 8))
    # The source dataset made again from other planes: same shape, same info, other chunks.
    convert(write_planes(tmp_path / "b", make_volume(SHAPE, "uint16", seed=88)), first, chunk_size=(8, 8, 8),
            overwrite=True)
    with pytest.raises(PrecomputedTifError, match="^source changed"):
        convert(first, dest, format="zarr", chunk_size=(8, 8, 8))


@pytest.mark.parametrize("fmt", ["tiff", "zarr", "blockfs", "precomputed", "ome-zarr"])
def test_a_source_dataset_rerun_unchanged_is_accepted_and_a_rewritten_chunk_is_not(tmp_path, fmt):
    """Pipelines rerun every step: the same conversion of the source dataset changes nothing that
    matters downstream. A chunk rewritten in it (by any tool) does, at any depth of its level."""
    planes = write_planes(tmp_path / "a", make_volume(SHAPE, "uint16", seed=90))
    upstream, downstream = str(tmp_path / "up"), str(tmp_path / "down")
    convert(planes, upstream, format=fmt, chunk_size=(16, 16, 16))
    convert(upstream, downstream, format="precomputed")
    convert(planes, upstream, format=fmt, chunk_size=(16, 16, 16))  # the same step again
    convert(upstream, downstream, format="precomputed")
    level = os.path.join(upstream, "0" if fmt == "ome-zarr" else "1_1_1")
    chunk = max((os.path.join(b, n) for b, _, names in os.walk(level) for n in names
                 if not n.startswith(".") and n not in ("zarr.json", "precomputed.blockfs")), key=os.path.getsize)
    time.sleep(0.01)
    with open(chunk, "r+b") as f:  # rewritten in place: the directories around it do not change
        f.seek(0, os.SEEK_END)
        f.write(b"\0")
    with pytest.raises(PrecomputedTifError, match="^source changed"):
        convert(upstream, downstream, format="precomputed")


def test_a_conversion_begun_by_an_older_version_resumes_with_a_warning(tmp_path, caplog):
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", seed=89))
    dest = str(tmp_path / "out")
    convert(glob, dest, chunk_size=(8, 8, 8))
    record_path = os.path.join(dest, JOB_RECORD)
    with open(record_path) as f:
        record = json.load(f)
    del record["source"]["fingerprint"]  # as older versions wrote it, without keys they did not know
    del record["info"]["precomputed_tif"]["channel_names"]
    with open(record_path, "w") as f:
        json.dump(record, f)
    os.unlink(os.path.join(dest, INPUTS))
    with caplog.at_level(logging.WARNING):
        convert(glob, dest, chunk_size=(8, 8, 8))
    assert "cannot check that the source is unchanged" in caplog.text
    caplog.clear()
    with open(record_path) as f:
        record = json.load(f)
    record["source"]["fingerprint"] = "0:" + record["source"]["fingerprint"].partition(":")[2]  # another scheme
    with open(record_path, "w") as f:
        json.dump(record, f)
    with caplog.at_level(logging.WARNING):
        convert(glob, dest, chunk_size=(8, 8, 8))
    assert "identified the source otherwise" in caplog.text
    with open(record_path) as f:
        assert json.load(f)["source"]["fingerprint"]  # from now on it is checked
