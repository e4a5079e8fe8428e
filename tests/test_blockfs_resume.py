"""Resuming blockfs conversions: real `precomputed-tif --format blockfs` processes killed again and
again, a real full disk (a small tmpfs) while level files are made and blocks written, damaged
directory files, a permission denied -- and every rerun finishing with the right voxels and block
files no larger than a clean run's plus one task's blocks."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from blockfs_reader import read_blockfs, read_header
from precomputed_tif.convert import plan_conversion
from precomputed_tif.geometry import Geometry
from precomputed_tif.memory import BLOCK_FACTOR, PROCESS_BYTES
from precomputed_tif.pyramid import tasks_of
from stacks import make_volume, reference_pyramid, write_planes

SHAPE = (37, 61, 83)  # z, y, x: odd sizes, noise (frames barely compress)
CHUNK = (8, 8, 8)
BLOCK = 16 ** 3 * 2  # bytes of a task's block: dozens of tasks, several passes
# A memory limit that gives two workers blocks of BLOCK bytes (see memory.plan).
LIMIT = int(PROCESS_BYTES * 3 + 2 * BLOCK_FACTOR * BLOCK) + 1
EXE = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The planes, the expected levels, and what a clean run made: its block files' bytes, the most
    bytes one task's blocks take, the number of full-resolution tasks."""
    root = tmp_path_factory.mktemp("blockfs-resume")
    volume = make_volume(SHAPE, "uint16", seed=61)
    planes = write_planes(root / "src", volume)
    g = Geometry((SHAPE[2], SHAPE[1], SHAPE[0]), CHUNK)
    levels = dict(zip([lv.key for lv in g.levels], reference_pyramid(volume, [lv.step for lv in g.levels], False)))
    clean = str(root / "clean")
    p = convert(planes, clean)
    assert p.returncode == 0, p.stderr
    check_voxels(clean, levels)
    # One task writes at most this many chunks; no frame is larger than the largest of the clean run.
    plan = plan_conversion(planes, clean, format="blockfs", chunk_size=CHUNK, n_cores=2, memory_limit=LIMIT)
    assert len(plan.passes) >= 2 and plan.passes[0].block == (16, 16, 16)
    most_chunks = max(t.n_chunks() for p in plan.passes for t in tasks_of(p, plan.geometry, None, plan.source, False))
    largest = max(max(frame_sizes(d)) for d in directory_files(clean))
    return SimpleNamespace(planes=planes, levels=levels, clean_bytes=block_bytes(clean), one_task=most_chunks * largest,
                           n_full=len(full_resolution(done_ids(clean))))


def convert(planes, dest, user=None):
    return subprocess.run(command(planes, dest), capture_output=True, text=True, timeout=300, user=user)


def command(planes, dest):
    return [EXE, "--source", planes, "--dest", str(dest), "--format", "blockfs", "--chunk-size",
            ",".join(map(str, CHUNK)), "--n-cores", "2", "--memory-limit", str(LIMIT), "--no-progress"]


def directory_files(dest):
    return sorted(glob.glob(os.path.join(dest, "*", "precomputed.blockfs")))


def block_bytes(dest) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(dest, "*", "precomputed.blockfs.[0-9]*")))


def frame_sizes(directory_file) -> list[int]:
    """Sizes of the frames the directory file records (read with the independent reader's parser)."""
    meta, entries = read_header(directory_file)
    obits, sbits = meta["NOffsetBits"], meta["NSizeBits"]
    e = (obits + sbits + 7) // 8
    values = [int.from_bytes(entries[i:i + e], "little") for i in range(0, len(entries) - e + 1, e)]
    return [(v >> obits) % (1 << sbits) for v in values]


def unrecorded_bytes(dest) -> int:
    """Bytes in block files that no entry records (what an interrupted run appended)."""
    recorded = 0
    for d in directory_files(dest):
        try:
            recorded += sum(frame_sizes(d))
        except (AssertionError, OSError):
            return 0  # being made
    return block_bytes(dest) - recorded


def done_ids(dest) -> list[str]:
    try:
        with open(os.path.join(dest, ".precomputed-tif-done")) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def check_voxels(dest, levels):
    with open(os.path.join(dest, "info")) as f:
        info = json.load(f)
    assert [s["key"] for s in info["scales"]] == list(levels)
    for key, expected in levels.items():
        np.testing.assert_array_equal(read_blockfs(os.path.join(dest, key, "precomputed.blockfs")), expected,
                                      err_msg=key)


def one_line_error(p, *words) -> str:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("precomputed-tif: error: "), p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def kill_when(planes, dest, ready, timeout=120) -> int:
    """Start a conversion, wait until ``ready(done task ids)`` and some blocks are appended but not
    yet recorded (a task is mid-way), kill -9 its whole process group; returns the unrecorded bytes."""
    proc = subprocess.Popen(command(planes, dest), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready(done_ids(dest)) and unrecorded_bytes(dest) > 0:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the conversion ended before the kill point"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return unrecorded_bytes(dest)


def full_resolution(ids):
    return [i for i in ids if i.startswith("1-")]


def test_killed_again_and_again_a_rerun_finishes_and_reclaims(stack, tmp_path):
    dest = str(tmp_path / "out")
    left = []
    # Early, late in the full-resolution pass (twice), during the coarser levels' passes.
    for point in ("early", "late", "late", "coarse"):
        if point == "early":
            ready = bool
        elif point == "late":
            start = len(full_resolution(done_ids(dest)))
            ready = lambda ids, start=start: len(full_resolution(ids)) >= max(start + 1, int(0.8 * stack.n_full))  # noqa: E731
        else:
            ready = lambda ids: len(ids) > len(full_resolution(ids))  # noqa: E731 (a coarser pass's task is done)
        left.append(kill_when(stack.planes, dest, ready))
        assert not os.path.exists(os.path.join(dest, "info"))
    assert sum(left) > stack.one_task, left  # the kills left more unrecorded bytes than a rerun may keep
    p = convert(stack.planes, dest)
    assert p.returncode == 0, p.stderr
    check_voxels(dest, stack.levels)
    assert block_bytes(dest) <= stack.clean_bytes + stack.one_task, (block_bytes(dest), stack.clean_bytes)
    assert not glob.glob(os.path.join(dest, "*", "*.unrecorded"))
    assert convert(stack.planes, dest).returncode == 0  # a finished dataset: a rerun changes nothing
    check_voxels(dest, stack.levels)
