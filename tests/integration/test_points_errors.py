"""precomputed-write-points, run as users run it: every bad input, read-only or unwritable
destination and full disk ends in one line and exit status 2, and never leaves a layer that
looks complete; the next run onto a good destination writes a layer the spec reader decodes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from tests.helpers import CHECKOUT as ROOT
from tests.helpers.annotation_reader import read_layer
from tests.integration.test_points import check_layer, random_points

PREFIX = "precomputed-write-points: error: "
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs (read-only or small) needs root")


def cli(*argv, user=None):
    """Run the command in a new process, as ``user`` (a uid) if given, with this checkout's code."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "precomputed_tif.cli.write_points", *map(str, argv)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def assert_one_line(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def write_json(path, points):
    path.write_text(json.dumps(np.asarray(points).tolist()))
    return path


def assert_written(directory, points, *argv):
    """A good run onto ``directory`` succeeds and the spec reader gets every point back."""
    frame = () if {"--voxel-size", "--dataset"} & set(map(str, argv)) else ("--voxel-size", "1.8,1.8,2")
    proc = cli(*argv, *frame, "--output-directory", directory)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    check_layer(directory, np.asarray(points, np.float64))
    assert not os.path.exists(os.path.join(directory, ".points-unfinished"))


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("content,words", [
    ("[[true, false, true]]", ["point 0", "true"]),
    ("[[1, 2, 3], [4, 5, true]]", ["point 1", "z = true"]),
    ("[[1, 2, 3], [4, \"5\", 6]]", ["point 1", "y = \"5\""]),
    ("[[1, 2, 3], [4, 5, null]]", ["point 1", "null"]),
    ("[[1, 2, 3], [4, 5]]", ["point 1", "2 values"]),
    ("[[1, 2, 3], [4, 5, 6, 7]]", ["point 1", "4 values"]),
    ("[[1, 2, 3], 4]", ["point 1", "not a list"]),
    ("[[1, 2, 3], [4, 5, NaN]]", ["point 1", "NaN"]),
    ("[[1, 2, 3], [-Infinity, 5, 6]]", ["point 1", "infinite"]),
    ("[[1, 2, 3], [1e400, 5, 6]]", ["point 1", "inf"]),
    ("[[1, 2, 3], [" + "9" * 400 + ", 5, 6]]", ["point 1", "inf"]),
    ("[[1, 2, 3], [1e39, 5, 6]]", ["point 1", "3.4e38"]),
    (DEEP, ["too deeply"]),
    ("[" + "[" * 900 + "]" * 900 + "]", ["point 0", "[[[[", "1 value"]),
    ("[{\"x\": 1, \"y\": 2, \"z\": 3}, {\"x\": false, \"y\": 2, \"z\": 3}]", ["point 1", "x = false"]),
    ("[{\"x\": 1, \"y\": 2, \"z\": 3}, {\"x\": 1, \"y\": 2}]", ["point 1", "no z"]),
    ("[{\"x\": 1, \"y\": 2, \"z\": \"3\"}]", ["point 0", "z = \"3\""]),
    ("[{\"x\": 1, \"y\": 2, \"z\": 3}, {\"x\": 1, \"y\": -" + "9" * 400 + ", \"z\": 3}]", ["point 1", "-inf"]),
    ("[{\"x\": 1, \"y\": 2, \"z\": 3}, [1, 2, 3]]", ["point 1", "object with x, y and z"]),
    ("x,y,z\n1,2,3\ntrue,5,6\n", ["point 1 (line 3)", "x = 'true'"]),
    ("x,y,z\n1,2,3\n\n4,5,\n", ["point 1 (line 4)", "z = ''"]),
    ("x,y,z\n1,2,3\n4,1_0,6\n", ["point 1 (line 3)", "'1_0'"]),
    ("x,y,z\n1,2,3\n4,5,nan\n", ["point 1", "NaN"]),
    ("x,y,z\n1,2,3\n4,5,-inf\n", ["point 1", "infinite"]),
    ("x,y,z\n1,2,3\n4,5\n", ["line 3", "2 values"]),
    ("x,y,z,w\n1,2,3,4\n4,5,6," + "9" * 400 + "e9\n", ["column 'w'", "infinite"]),
])
def test_bad_points_in_every_input_format(tmp_path, content, words):
    (tmp_path / "points").write_text(content)
    assert_one_line(cli("--input", tmp_path / "points", "--output-directory", tmp_path / "out"), *words)
    assert not (tmp_path / "out").exists()


def test_binary_input_is_refused(tmp_path):
    np.save(tmp_path / "points.npy", random_points(10))
    assert_one_line(cli("--input", tmp_path / "points.npy", "--output-directory", tmp_path / "out"),
                    "not readable text")
    assert not (tmp_path / "out").exists()


def test_points_far_apart_with_many_at_one_spot(tmp_path):
    """Refining toward the crowded spot stops before the grid outgrows its integers (and the
    64-bit Morton codes that key sharded cells)."""
    points = np.array([[0.5, 0.5, 0.5]] * 80 + [[3e8, 2e8, 1e8]])
    write_json(tmp_path / "p.json", points)
    assert_written(tmp_path / "out", points, "--input", tmp_path / "p.json", "--limit", 1, "--sharded")
    grids = [level["grid_shape"] for level in read_layer(tmp_path / "out")[0]["spatial"]]
    assert 50 < sum(np.log2(grids[-1])) <= 64, grids[-1]


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(name, size)``: a fresh tmpfs of ``size`` at ``tmp_path/name``, unmounted afterwards."""
    mounted = []

    def mount(name, size):
        target = tmp_path / name
        target.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        if subprocess.run(["umount", str(target)]).returncode:
            subprocess.run(["umount", "-l", str(target)])


@needs_root
def test_read_only_destination(tmp_path, mount_tmpfs):
    points = random_points(500, seed=10)
    write_json(tmp_path / "p.json", points)
    disk = mount_tmpfs("ro", "1M")
    (disk / "empty").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    for out in (disk / "new", disk / "empty"):
        line = assert_one_line(cli("--input", tmp_path / "p.json", "--output-directory", out), "read-only",
                               str(out), "choose an output directory")
        assert "stays" not in line  # nothing was written, so nothing is said to be left
    assert sorted(os.listdir(disk)) == ["empty"] and os.listdir(disk / "empty") == []
    assert_written(tmp_path / "good", points, "--input", tmp_path / "p.json")


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to run the command as another user")
def test_permission_denied(tmp_path):
    points = random_points(300, seed=11)
    base = tempfile.mkdtemp(prefix="points-perm-")  # tmp_path is root's alone: the other user cannot read it
    try:
        os.chmod(base, 0o755)
        write_json(tmp_path / "p.json", points)
        shutil.copy(tmp_path / "p.json", os.path.join(base, "p.json"))
        os.mkdir(os.path.join(base, "roots"))
        for out in (os.path.join(base, "new"), os.path.join(base, "roots")):
            assert_one_line(cli("--input", os.path.join(base, "p.json"), "--output-directory", out, user=65534),
                            "permission denied", out)
        assert sorted(os.listdir(base)) == ["p.json", "roots"] and os.listdir(os.path.join(base, "roots")) == []
        assert_written(os.path.join(base, "roots"), points, "--input", os.path.join(base, "p.json"))
    finally:
        shutil.rmtree(base)


def _pages(directory, disk):
    """{stage: 4 KiB pages its files take on ``disk``}, stages being spatial, by_id and info."""
    pages = {"spatial": 0, "by_id": 0, "info": 0}
    for base, _, files in os.walk(directory):
        for name in files:
            rel = os.path.relpath(os.path.join(base, name), directory)
            stage = "info" if rel == "info" else rel.split(os.sep)[0].rstrip("0123456789")
            pages[stage] += os.stat(os.path.join(base, name)).st_blocks * 512 // os.statvfs(disk).f_frsize
    return pages


def _free_pages(disk):
    return os.statvfs(disk).f_bavail


@needs_root
@pytest.mark.parametrize("kind,stage", [
    ("--unsharded", "spatial"), ("--unsharded", "by_id"), ("--unsharded", "info"),
    ("--sharded", "spatial"), ("--sharded", "by_id"), ("--sharded", "info"),
])
def test_disk_full(tmp_path, mount_tmpfs, kind, stage):
    """The disk fills up while a spatial level, the index by id or info is written (real files,
    real points): one line naming the file, nothing left behind, and after freeing space the
    same command writes the whole layer."""
    n = 700 if kind == "--unsharded" else 6000
    points = random_points(n, seed=12)
    write_json(tmp_path / "p.json", points)
    argv = ["--input", tmp_path / "p.json", "--limit", 60, kind]
    disk = mount_tmpfs("disk", "16M")
    # A first run measures the pages each part of the layer takes on this disk.
    assert cli(*argv, "--output-directory", disk / "measure").returncode == 0
    pages = _pages(disk / "measure", disk)
    shutil.rmtree(disk / "measure")
    assert pages["spatial"] >= 2 and pages["by_id"] >= 2 and pages["info"] >= 1, pages
    marker = 1  # the unfinished-layer marker, one page while the layer is written
    room = marker + {"spatial": pages["spatial"] // 2,
                     "by_id": pages["spatial"] + pages["by_id"] // 2,
                     "info": pages["spatial"] + pages["by_id"]}[stage]
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(bytes((_free_pages(disk) - room) * os.statvfs(disk).f_frsize))
    assert _free_pages(disk) == room
    out = disk / "cells"
    line = assert_one_line(cli(*argv, "--output-directory", out), "no space left", "free some space")
    written = line.split("writing ", 1)[1].split(";")[0]
    assert written.startswith(str(out / stage)), (stage, line)
    # Nothing of the failed run is left, so its space is free again.
    assert not out.exists() and _free_pages(disk) == room
    os.unlink(filler)
    assert_written(out, points, *argv)


@needs_root
def test_disk_full_in_a_directory_given_empty(tmp_path, mount_tmpfs):
    """An existing directory stays (empty) after a failure, and is accepted by the next run."""
    points = random_points(700, seed=13)
    write_json(tmp_path / "p.json", points)
    disk = mount_tmpfs("disk", "512K")
    (disk / "cells").mkdir()
    assert_one_line(cli("--input", tmp_path / "p.json", "--output-directory", disk / "cells", "--unsharded"),
                    "no space left", str(disk / "cells"))
    assert os.listdir(disk / "cells") == []
    subprocess.run(["mount", "-o", "remount,size=16M", str(disk)], check=True)
    assert_written(disk / "cells", points, "--input", tmp_path / "p.json", "--unsharded")


def test_a_killed_run_leaves_no_layer_and_the_next_run_replaces_it(tmp_path):
    points = random_points(4000, seed=14)
    write_json(tmp_path / "p.json", points)
    out = tmp_path / "cells"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "precomputed_tif.cli.write_points",
                             "--input", str(tmp_path / "p.json"), "--output-directory", str(out), "--unsharded",
                             "--limit", "200"], env=env)
    deadline = time.monotonic() + 120
    while not (out / "spatial1").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    # Half a layer, and it does not look like a layer: no info.
    assert (out / "spatial0").exists() and not (out / "info").exists()
    assert (out / ".points-unfinished").exists()
    assert_written(out, points, "--input", tmp_path / "p.json", "--unsharded", "--limit", 200)
    # A finished layer is not replaced.
    assert_one_line(cli("--input", tmp_path / "p.json", "--output-directory", out), "not empty",
                    "finished point layer")
    assert read_layer(out)[0]["spatial"][0]["limit"] == 200


def _image_dataset(tmp_path, voxel_size="0.5,0.5,3"):
    """A converted image of 23 x 19 x 5 voxels (x, y, z) with its voxel size in ``info``."""
    from tests.helpers.stacks import make_volume, write_planes

    planes = write_planes(tmp_path / "planes", make_volume((5, 19, 23), "uint8", seed=3))
    dest = tmp_path / "image"
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "precomputed-tif"), "--source", planes,
                           "--dest", str(dest), "--voxel-size", voxel_size, "--levels", "1", "--n-cores", "1",
                           "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dest


def test_dataset_gives_the_voxel_size_and_the_bounds(tmp_path):
    """Points written with --dataset carry the image's voxel size (from its info, in nm there)
    and its bounds, so they land on it in the viewer."""
    dataset = _image_dataset(tmp_path)
    points = [[1, 2, 0], [22.5, 18.9, 4.5], [10, 10, 2]]
    out = tmp_path / "cells"
    proc = cli("--input", write_json(tmp_path / "p.json", points), "--dataset", dataset, "--output-directory", out)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    info = json.loads((out / "info").read_text())
    assert info["dimensions"] == {"x": [0.5e-6, "m"], "y": [0.5e-6, "m"], "z": [3e-6, "m"]}
    assert info["lower_bound"] == [0, 0, 0] and info["upper_bound"] == [23, 19, 5]
    # The same voxel size given as well is fine; another one is a mistake, said in one line.
    again = cli("--input", tmp_path / "p.json", "--dataset", dataset, "--voxel-size", "0.5,0.5,3",
                "--output-directory", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    line = assert_one_line(cli("--input", tmp_path / "p.json", "--dataset", dataset, "--voxel-size", "1.8,1.8,2",
                              "--output-directory", tmp_path / "other"))
    assert "differs from the voxel size of --dataset" in line and "0.5,0.5,3" in line, line
    assert not os.path.exists(tmp_path / "other")


def test_points_outside_the_dataset_are_refused(tmp_path):
    dataset = _image_dataset(tmp_path)
    line = assert_one_line(cli("--input", write_json(tmp_path / "p.json", [[1, 1, 1], [40, 1, 1]]),
                              "--dataset", dataset, "--output-directory", tmp_path / "cells"))
    assert "1 of 2 points lie outside" in line and "[40.0, 1.0, 1.0]" in line, line
    line = assert_one_line(cli("--input", tmp_path / "p.json", "--dataset", tmp_path / "nothing",
                              "--output-directory", tmp_path / "cells"))
    assert "no precomputed dataset" in line or "no info" in line, line


def test_without_dataset_or_voxel_size_the_assumption_is_said_after_writing(tmp_path):
    proc = cli("--input", write_json(tmp_path / "p.json", [[1, 2, 3]]), "--output-directory", tmp_path / "cells")
    assert proc.returncode == 0
    warnings = [x for x in proc.stderr.splitlines() if "WARNING" in x]
    assert len(warnings) == 1 and "assumed 1.8,1.8,2 µm voxels" in warnings[0] and "--dataset DIR" in warnings[0]
