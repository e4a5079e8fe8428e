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
import textwrap
import time
from types import SimpleNamespace

import numpy as np
import pytest

from precomputed_tif import PrecomputedTifError
from precomputed_tif.convert import plan_conversion
from precomputed_tif.formats.blockfs import create
from precomputed_tif.formats.blockfs.directory import reclaim
from precomputed_tif.geometry import Geometry
from precomputed_tif.pipeline.memory import BLOCK_FACTOR, PROCESS_BYTES
from precomputed_tif.pyramid import tasks_of
from tests.helpers.blockfs_reader import read_blockfs, read_header
from tests.helpers.stacks import make_volume, reference_pyramid, write_planes

SHAPE = (37, 61, 83)  # z, y, x: odd sizes, noise (frames barely compress)
CHUNK = (8, 8, 8)
BLOCK = 16 ** 3 * 2  # bytes of a task's block: dozens of tasks, several passes



def memory_limit(workers: int) -> int:
    """The limit that gives ``workers`` workers blocks of BLOCK bytes (see memory.plan)."""
    return int(PROCESS_BYTES * (workers + (workers > 1)) + workers * BLOCK_FACTOR * BLOCK) + 1

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
    plan = plan_conversion(planes, clean, format="blockfs", chunk_size=CHUNK, n_cores=2,
                           memory_limit=memory_limit(2))
    assert len(plan.passes) >= 2 and plan.passes[0].block == (16, 16, 16)
    most_chunks = max(t.n_chunks() for p in plan.passes for t in tasks_of(p, plan.geometry, None, plan.source, False))
    largest = max(max(frame_sizes(d)) for d in directory_files(clean))
    return SimpleNamespace(planes=planes, levels=levels, clean_bytes=block_bytes(clean), one_task=most_chunks * largest,
                           n_full=len(full_resolution(done_ids(clean))))


def convert(planes, dest, prefix=(), workers=2):
    """Run ``precomputed-tif --format blockfs`` to its end (two workers, or one: faster to start)."""
    return subprocess.run([*prefix, *command(planes, dest, workers)], capture_output=True, text=True, timeout=300)


def command(planes, dest, workers=2):
    return [EXE, "--source", planes, "--dest", str(dest), "--format", "blockfs", "--chunk-size",
            ",".join(map(str, CHUNK)), "--n-cores", str(workers), "--memory-limit", str(memory_limit(workers)),
            "--no-progress"]


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


def kill_when(planes, dest, ready, unrecorded=1, timeout=120) -> int:
    """Start a conversion, wait until ``ready(done task ids)`` and until block files hold at least
    ``unrecorded`` bytes that no entry records (tasks are mid-way), then kill -9 its whole process
    group; returns the unrecorded bytes it left."""
    proc = subprocess.Popen(command(planes, dest), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready(done_ids(dest)) and (unrecorded <= 0 or unrecorded_bytes(dest) >= unrecorded):
                break
            time.sleep(0.002)
        assert proc.poll() is None, f"the conversion ended before the kill point ({unrecorded} bytes unrecorded)"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return unrecorded_bytes(dest)


def full_resolution(ids):
    return [i for i in ids if i.startswith("1-")]


@pytest.mark.slow
def test_killed_again_and_again_a_rerun_finishes_and_reclaims(stack, tmp_path):
    dest = str(tmp_path / "out")
    # Early, late in the full-resolution pass (twice), during the coarser levels' passes.
    for point in ("early", "late", "late", "coarse"):
        if point == "early":
            ready = bool
        elif point == "late":
            wanted = max(len(full_resolution(done_ids(dest))) + 1, int(0.8 * stack.n_full))
            ready = lambda ids, wanted=wanted: len(full_resolution(ids)) >= wanted  # noqa: E731
        else:  # as soon as a task of a coarser levels' pass is done: the pass is short
            ready = lambda ids: len(ids) > len(full_resolution(ids))  # noqa: E731
        # Mid-task: a few appended blocks that no entry records yet.
        kill_when(stack.planes, dest, ready, unrecorded=stack.one_task // 4 if point != "coarse" else 0)
        assert not os.path.exists(os.path.join(dest, "info"))
    p = convert(stack.planes, dest)
    assert p.returncode == 0, p.stderr
    check_voxels(dest, stack.levels)
    assert block_bytes(dest) <= stack.clean_bytes + stack.one_task, (block_bytes(dest), stack.clean_bytes)
    assert not glob.glob(os.path.join(dest, "*", "*.unrecorded"))
    before = {p: open(p, "rb").read() for p in glob.glob(os.path.join(dest, "*", "*"))}
    assert convert(stack.planes, dest).returncode == 0  # a finished dataset: a rerun changes nothing
    assert {p: open(p, "rb").read() for p in glob.glob(os.path.join(dest, "*", "*"))} == before


WRITER = textwrap.dedent("""
    import sys, time, numpy as np
    from precomputed_tif.formats.blockfs import Directory
    d = Directory(sys.argv[1], writable=True)
    d.write_block(0, 0, 0, np.ones((8, 8, 8), np.uint16))
    print("writing", flush=True)
    time.sleep(60)
""")


def test_space_is_not_reclaimed_under_a_live_writer(tmp_path):
    """A run started while another (or its workers) still writes the volume stops, cutting nothing."""
    path = str(tmp_path / "v.blockfs")
    create(path, (20, 20, 20), (8, 8, 8), "uint16", n_files=2).close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
        size = os.path.getsize(path + ".0")
        assert size > 0  # appended, not recorded: what reclaim would cut
        with pytest.raises(PrecomputedTifError, match="being written by another process"):
            reclaim(path)
        assert os.path.getsize(path + ".0") == size
    finally:
        writer.kill()
        writer.wait()
    assert reclaim(path) == size  # the writer is gone: its unrecorded block is given back
    assert os.path.getsize(path + ".0") == 0


# ---------------------------------------------------------------------------------------------
# A real full disk


@pytest.fixture
def small_disk(tmp_path):
    """A directory on its own tmpfs of 16 KiB; ``small_disk.resize("4m")`` gives it more room."""
    path = tmp_path / "disk"
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode:
        problem = f"cannot mount a tmpfs (needs root): {r.stderr.strip()}"
        (pytest.fail if os.environ.get("REQUIRE_TMPFS") else pytest.skip)(problem)

    def resize(size):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)

    yield SimpleNamespace(path=path, resize=resize)
    subprocess.run(["umount", str(path)], check=True)


def test_disk_full_while_level_files_are_made(stack, small_disk):
    """16 KiB: the job record and a few levels' directory files fit, the next one does not."""
    dest = str(small_disk.path / "out")
    line = one_line_error(convert(stack.planes, dest, workers=1), "No space left on device", "blockfs")
    made = directory_files(dest)
    assert 0 < len(made) < len(stack.levels), made  # it failed while the levels' files were made
    for d in made:  # none half made: every one that exists reads whole
        assert read_header(d)[0]["Version"] == "1.0.0"
        assert len(frame_sizes(d)) > 0
    assert block_bytes(dest) == 0 and not done_ids(dest), line
    small_disk.resize("4m")
    p = convert(stack.planes, dest, workers=1)
    assert p.returncode == 0, p.stderr
    check_voxels(dest, stack.levels)
    assert block_bytes(dest) == stack.clean_bytes


def test_disk_full_while_blocks_are_written(stack, small_disk):
    """The disk fills while the full-resolution blocks are written, twice; each rerun gives back
    what the failed run appended, and the last one finishes."""
    dest = str(small_disk.path / "out")
    small_disk.resize("128k")
    one_line_error(convert(stack.planes, dest), "No space left on device")
    assert 0 < block_bytes(dest) < stack.clean_bytes
    small_disk.resize("256k")
    one_line_error(convert(stack.planes, dest), "No space left on device")
    small_disk.resize("4m")
    p = convert(stack.planes, dest)
    assert p.returncode == 0, p.stderr
    check_voxels(dest, stack.levels)
    assert block_bytes(dest) <= stack.clean_bytes + stack.one_task, (block_bytes(dest), stack.clean_bytes)


# ---------------------------------------------------------------------------------------------
# Damaged directory files


def test_half_made_directory_file_of_an_unfinished_conversion_is_made_anew(stack, tmp_path):
    """A 0-byte directory file, as versions that did not create it whole left after a full disk."""
    dest = str(tmp_path / "out")
    kill_when(stack.planes, dest, bool)
    coarsest = os.path.join(dest, list(stack.levels)[-1], "precomputed.blockfs")
    assert os.path.getsize(coarsest + ".0") == 0  # no task reached that level yet
    with open(coarsest, "wb"):
        pass
    p = convert(stack.planes, dest, workers=1)
    assert p.returncode == 0, p.stderr
    assert "made anew" in p.stderr
    check_voxels(dest, stack.levels)
    assert block_bytes(dest) <= stack.clean_bytes + stack.one_task


def test_damaged_directory_file_that_recorded_blocks_makes_every_block_be_written_again(stack, tmp_path):
    dest = str(tmp_path / "out")
    kill_when(stack.planes, dest, lambda ids: len(full_resolution(ids)) >= 10)
    first = os.path.join(dest, "1_1_1", "precomputed.blockfs")
    with open(first, "r+b") as f:
        f.write(b"garbage!")  # its magic number: the tasks logged as done wrote blocks through it
    one_line_error(convert(stack.planes, dest, workers=1), "made anew", "run the same command again")
    assert not done_ids(dest)
    p = convert(stack.planes, dest, workers=1)
    assert p.returncode == 0, p.stderr
    check_voxels(dest, stack.levels)
    assert block_bytes(dest) <= stack.clean_bytes + stack.one_task


def test_damaged_directory_file_of_a_finished_dataset_is_reported_not_replaced(stack, tmp_path):
    dest = str(tmp_path / "out")
    assert convert(stack.planes, dest, workers=1).returncode == 0
    second = os.path.join(dest, list(stack.levels)[1], "precomputed.blockfs")
    with open(second, "r+b") as f:
        f.truncate(10)
    before = {p: open(p, "rb").read() for p in glob.glob(os.path.join(dest, "*", "*"))}
    one_line_error(convert(stack.planes, dest, workers=1), second, "finished dataset", "--overwrite")
    assert {p: open(p, "rb").read() for p in glob.glob(os.path.join(dest, "*", "*"))} == before
    assert os.path.exists(os.path.join(dest, "info"))


# ---------------------------------------------------------------------------------------------
# Permission denied


def without_root_override():
    """A command prefix that runs without root's permission to ignore file modes."""
    if os.geteuid() != 0:
        return ()
    if not shutil.which("setpriv"):
        problem = "setpriv (Debian package util-linux) is needed to drop root's file permission override"
        (pytest.fail if os.environ.get("REQUIRE_TOOLS") else pytest.skip)(problem)
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")


def test_permission_denied_in_blockfs_files_then_fixed(stack, tmp_path):
    prefix = without_root_override()
    dest = str(tmp_path / "out")
    kill_when(stack.planes, dest, bool)
    # A level directory where its files cannot be made.
    coarsest = os.path.join(dest, list(stack.levels)[-1])
    assert os.path.getsize(os.path.join(coarsest, "precomputed.blockfs.0")) == 0
    for name in os.listdir(coarsest):
        os.unlink(os.path.join(coarsest, name))
    os.chmod(coarsest, 0o555)
    one_line_error(convert(stack.planes, dest, prefix, workers=1), "Permission denied", coarsest)
    os.chmod(coarsest, 0o755)
    # A block file that cannot be written.
    block_file = os.path.join(dest, "1_1_1", "precomputed.blockfs.0")
    os.chmod(block_file, 0o444)
    one_line_error(convert(stack.planes, dest, prefix, workers=1), "Permission denied", block_file)
    os.chmod(block_file, 0o644)
    p = convert(stack.planes, dest, prefix, workers=1)
    assert p.returncode == 0, p.stderr
    check_voxels(dest, stack.levels)
    assert block_bytes(dest) <= stack.clean_bytes + stack.one_task
