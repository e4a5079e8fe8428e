"""Resume after a kill, a memory limit for the whole conversion, and Dask."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

from precomputed_tif import PrecomputedTifError, convert, open_volume
from precomputed_tif.cli.convert import main
from precomputed_tif.pipeline import memory
from precomputed_tif.pipeline.progress import DONE_LOG
from tests.helpers.peak_rss import PeakRSS
from tests.helpers.readback import files_of
from tests.helpers.stacks import make_volume, write_planes

SHAPE = (48, 90, 110)
CHUNK = (8, 8, 8)
BLOCK = 16 * 16 * 16 * 2  # two levels per task, hundreds of tasks: many places to be killed

CONVERT = textwrap.dedent("""
    import sys
    from precomputed_tif import convert
    if __name__ == "__main__":
        convert(sys.argv[1], sys.argv[2], format=sys.argv[3], chunk_size=(8, 8, 8), n_cores=int(sys.argv[4]),
                block_bytes=int(sys.argv[5]))
""")


def same_voxels(a, b):
    va, vb = open_volume(a), open_volume(b)
    assert va.info == vb.info
    for key in va.keys:
        np.testing.assert_array_equal(va.read(key), vb.read(key), err_msg=key)


def run_and_kill(glob, dest, fmt, cores, after_tasks):
    """Start a conversion and SIGKILL it (all its processes) once ``after_tasks`` tasks are recorded."""
    proc = subprocess.Popen([sys.executable, "-c", CONVERT, glob, dest, fmt, str(cores), str(BLOCK)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = os.path.join(dest, DONE_LOG)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(log, "rb") as f:
                if f.read().count(b"\n") >= after_tasks:
                    break
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    finished = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return not finished


@pytest.mark.parametrize("fmt,cores", [("tiff", 1), ("zarr", 2), ("blockfs", 2), ("precomputed", 2)])
@pytest.mark.slow
def test_killed_several_times_then_rerun_equals_a_clean_run(tmp_path, fmt, cores):
    volume = make_volume(SHAPE, "uint16", seed=41)
    glob = write_planes(tmp_path / "src", volume)
    clean, resumed = str(tmp_path / "clean"), str(tmp_path / "resumed")
    convert(glob, clean, format=fmt, chunk_size=CHUNK, n_cores=1, block_bytes=BLOCK)
    kills = 0
    # Sharded output has few, large tasks (one per shard): kill it after fewer.
    for after in (1, 2, 4) if fmt == "precomputed" else (3, 40, 150):
        kills += run_and_kill(glob, resumed, fmt, cores, after)
        assert not os.path.exists(os.path.join(resumed, "info"))  # never presented as complete
    assert kills >= 2, "the conversion finished before it could be killed"
    done_before = open(os.path.join(resumed, DONE_LOG), "rb").read().count(b"\n")
    convert(glob, resumed, format=fmt, chunk_size=CHUNK, n_cores=cores, block_bytes=BLOCK)
    assert done_before > 0
    if fmt == "blockfs":
        same_voxels(clean, resumed)
    else:
        assert files_of(clean) == files_of(resumed)  # byte for byte, no temporary files left


def test_rerun_of_a_finished_conversion_does_nothing(tmp_path, caplog):
    glob = write_planes(tmp_path / "src", make_volume((20, 30, 40), "uint8", seed=42))
    convert(glob, str(tmp_path / "out"), format="zarr", chunk_size=CHUNK, n_cores=1)
    before = files_of(tmp_path / "out")
    mtimes = {p: os.stat(tmp_path / "out" / p).st_mtime_ns for p in before if p != "info"}
    with caplog.at_level("INFO"):
        convert(glob, str(tmp_path / "out"), format="zarr", chunk_size=CHUNK, n_cores=1)
    assert "skipped" in caplog.text
    assert files_of(tmp_path / "out") == before
    assert {p: os.stat(tmp_path / "out" / p).st_mtime_ns for p in mtimes} == mtimes


def test_a_different_command_on_an_unfinished_dest_is_refused(tmp_path, capsys):
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", seed=43))
    dest = str(tmp_path / "out")
    if not run_and_kill(glob, dest, "zarr", 1, 5):
        pytest.skip("finished before the kill")
    code = main(["--source", glob, "--dest", dest, "--chunk-size", "16,16,16", "--format", "zarr", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "unfinished conversion" in err and "--overwrite" in err
    code = main(["--source", glob, "--dest", dest, "--chunk-size", "16,16,16", "--format", "zarr", "--no-progress",
                 "--overwrite", "--n-cores", "1"])
    assert code == 0
    assert open_volume(dest).info["scales"][0]["chunk_sizes"] == [[16, 16, 16]]


@pytest.mark.slow
def test_memory_limit_holds_for_large_planes(tmp_path):
    """Planes of 2048 x 2048 (8 MiB each, 256 MiB in all) under a 320 MiB limit with two workers."""
    rng = np.random.default_rng(44)
    base = rng.integers(0, 4000, (2048, 2048), dtype=np.uint16)
    src = tmp_path / "src"
    src.mkdir()
    import tifffile

    for z in range(64):
        tifffile.imwrite(src / f"p{z:03d}.tif", np.roll(base, z, axis=1))
    limit = 320 * 2**20
    baseline = psutil.Process().memory_info().rss
    with PeakRSS(interval=0.005) as peak:
        convert(str(src / "*.tif"), str(tmp_path / "out"), format="blockfs", n_cores=2, memory_limit=limit,
                levels=3)
    # The test process itself is bigger than a plain command's (pytest, tensorstore ...):
    # what counts is what the conversion added to it.
    assert peak.peak - baseline + memory.PROCESS_BYTES < limit, peak.peak / 2**20
    vol = open_volume(str(tmp_path / "out"))
    np.testing.assert_array_equal(vol.read("1_1_1")[17], np.roll(base, 17, axis=1))


def test_memory_plan():
    mib = 2**20
    n, block = memory.plan(2000 * mib, 4, 64 * mib, 2 * mib)
    assert n == 4 and block == 64 * mib
    n, block = memory.plan(600 * mib, 4, 64 * mib, 2 * mib)
    assert n == 4 and memory.PROCESS_BYTES * 5 + n * block * memory.BLOCK_FACTOR <= 600 * mib
    n, block = memory.plan(300 * mib, 4, 64 * mib, 2 * mib)
    assert n < 4 and memory.PROCESS_BYTES * (n + 1) + n * block * memory.BLOCK_FACTOR <= 300 * mib
    with pytest.raises(PrecomputedTifError, match="too small"):
        memory.plan(100 * mib, 2, 64 * mib, 64 * mib)
    assert memory.parse_size("8G") == 8 * 2**30 and memory.parse_size("512M") == 512 * mib
    assert memory.parse_size("1.5GiB") == int(1.5 * 2**30)
    with pytest.raises(PrecomputedTifError, match="^memory_limit must be a size"):
        memory.parse_size("lots")


def test_memory_limit_errors_on_the_command_line(tmp_path, capsys):
    glob = write_planes(tmp_path / "src", make_volume((10, 20, 30), "uint16", seed=45))
    for value, words in (("lots", "like 8G"), ("10M", "too small")):
        code = main(["--source", glob, "--dest", str(tmp_path / "out"), "--memory-limit", value, "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and words in err and "Traceback" not in err, err
    assert not os.path.exists(tmp_path / "out" / "info")


@pytest.mark.slow
def test_dask_cluster_gives_the_same_result(tmp_path):
    distributed = pytest.importorskip("distributed")
    volume = make_volume(SHAPE, "uint16", seed=46)
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "local"), format="zarr", chunk_size=CHUNK, n_cores=2, block_bytes=BLOCK)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_port=0) as cluster:
        code = main(["--source", glob, "--dest", str(tmp_path / "dask"), "--format", "zarr", "--chunk-size", "8,8,8",
                     "--dask-scheduler", cluster.scheduler_address, "--no-progress"])
        assert code == 0
    assert files_of(tmp_path / "local") == files_of(tmp_path / "dask")  # byte for byte


@pytest.mark.slow
def test_unreachable_dask_scheduler(tmp_path, capsys):
    glob = write_planes(tmp_path / "src", make_volume((10, 20, 30), "uint16", seed=47))
    code = main(["--source", glob, "--dest", str(tmp_path / "out"), "--dask-scheduler", "tcp://127.0.0.1:9",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler" in err and "Traceback" not in err, err
