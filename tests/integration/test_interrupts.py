"""Interrupted conversions, as users interrupt them: ``kill PID``, a batch scheduler's TERM, a
closed SSH session (HUP), Ctrl-C in a terminal (INT to the whole process group), ``timeout``.

Each must end within seconds with one line and status 128 + the signal, leave no process of the
run behind (so ``... | tee log`` and ``subprocess.run(capture_output=True)`` return), present
nothing as finished, and be finished by running the same command again, byte for byte as a run
that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from precomputed_tif.cli.convert import main
from precomputed_tif.pipeline.progress import DoneLog
from tests.helpers.readback import assert_same_contents, dataset_contents, files_of
from tests.helpers.stacks import make_volume, write_planes

BIN = os.path.dirname(sys.executable)
SHAPE = (45, 131, 117)
# Small chunks and a tight memory limit: dozens of tasks, so the run is still going when signalled.
OPTIONS = ["--chunk-size", "8,8,8", "--n-cores", "2", "--memory-limit", "280M", "--no-progress"]
RESUME = "; run the same command again to resume"

pytestmark = pytest.mark.slow  # real conversions, each stopped and then run again


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(glob of the planes, a dataset converted from them without interruption)."""
    root = tmp_path_factory.mktemp("interrupts")
    glob = write_planes(root / "src", make_volume(SHAPE, "uint16", seed=61))
    assert main(["--source", glob, "--dest", str(root / "clean"), *OPTIONS]) == 0
    return glob, str(root / "clean")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Planes of a megapixel: tasks take long enough that some are still queued when the run is
    stopped (the pool must fail them quietly)."""
    root = tmp_path_factory.mktemp("wide")
    return write_planes(root / "src", make_volume((32, 1024, 1024), "uint16", seed=62))


def session_processes(sid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                out.append(p)
        except (ProcessLookupError, PermissionError):
            pass
    return out


def start(args, dest):
    """The command in a session of its own (as a terminal or scheduler starts it), its output
    captured; returns once the workers have finished a task (writing is under way)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not DoneLog(dest).load():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no task finished in time"
        time.sleep(0.01)
    return proc


def assert_stopped_cleanly(proc, status: int, name: str, dest: str) -> None:
    # communicate() returns only when no process holds the pipes: not a worker, not multiprocessing's
    # resource tracker.
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status, (proc.returncode, err)
    assert err == f"precomputed-tif: interrupted ({name}){RESUME}\n", err
    assert out == ""
    deadline = time.monotonic() + 5
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not session_processes(proc.pid), [p.cmdline() for p in session_processes(proc.pid)]
    assert not os.path.exists(os.path.join(dest, "info"))  # nothing presented as finished


@pytest.mark.parametrize("name, status, to_group, fmt", [
    ("SIGTERM", 143, False, "tiff"),  # kill PID; a batch scheduler
    ("SIGHUP", 129, False, "zarr"),  # the terminal or SSH session closed
    ("SIGINT", 130, True, "blockfs"),  # Ctrl-C: the terminal signals every process of the foreground group
])
def test_a_signal_stops_every_process_and_the_same_command_finishes(stack, tmp_path, name, status, to_group, fmt):
    glob, _ = stack
    dest = str(tmp_path / "out")
    args = [os.path.join(BIN, "precomputed-tif"), "--source", glob, "--dest", dest, *OPTIONS, "--format", fmt]
    proc = start(args, dest)
    sig = getattr(signal, name)
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    assert_stopped_cleanly(proc, status, name, dest)
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    clean = str(tmp_path / "clean")
    assert main(["--source", glob, "--dest", clean, *OPTIONS, "--format", fmt]) == 0
    assert_same_contents(dataset_contents(dest, fmt), dataset_contents(clean, fmt))


def test_timeout_command_stops_the_whole_run(stack, tmp_path):
    """``timeout 3600 precomputed-tif ...``: TERM when the time is up; timeout's own status 124."""
    glob, clean = stack
    dest = str(tmp_path / "out")
    exe = os.path.join(BIN, "precomputed-tif")
    started = time.monotonic()
    done = subprocess.run(["timeout", "-s", "TERM", "4", exe, "--source", glob, "--dest", dest, *OPTIONS,
                           "--chunk-size", "4,4,4"], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 20
    assert done.returncode == 124, done.stderr
    assert done.stderr == f"precomputed-tif: interrupted (SIGTERM){RESUME}\n"
    assert not os.path.exists(os.path.join(dest, "info"))


@pytest.mark.parametrize("name, to_group", [("SIGINT", True), ("SIGTERM", False)])
def test_a_signal_while_starting_is_one_line(wide, tmp_path, name, to_group):
    """Ctrl-C or kill at any moment of the start -- the imports, the workers being started and
    importing, the first tasks -- is one line and status 128 + the signal."""
    glob = wide
    exe = os.path.join(BIN, "precomputed-tif")
    begun = time.monotonic()
    subprocess.run([exe, "-h"], capture_output=True, check=True)
    startup = time.monotonic() - begun
    sig = getattr(signal, name)
    for fraction in (0.3, 0.6, 0.9, 1.2, 1.6, 2.0, 2.5, 3.0, 3.5):
        dest = tmp_path / f"out{fraction}"
        proc = subprocess.Popen([exe, "--source", glob, "--dest", str(dest), "--n-cores", "2", "--memory-limit", "300M",
                                 "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(startup * fraction)
        if os.path.exists(dest / "info"):
            break  # finished already: later moments are not the start
        (os.killpg if to_group else os.kill)(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
        if proc.returncode == 0:
            break
        if proc.returncode == -sig:  # before Python installed any handler: the signal's own action, silent
            assert err == "", (fraction, err)
            continue
        assert proc.returncode == 128 + sig, (fraction, err)
        assert len(err.splitlines()) == 1 and err.startswith("precomputed-tif: interrupted"), (fraction, err)


# The console script's own first lines, with a pause where the command's modules load.
LOADING = """
import sys, time
sys.argv[0] = sys.argv[1]
import precomputed_tif
print("loading", flush=True)
time.sleep(30)  # as when a cold disk makes the command's modules load slowly
from precomputed_tif.cli.convert import main
"""


@pytest.mark.parametrize("prog, one_line", [(os.path.join(BIN, "precomputed-tif"), True), ("my-script.py", False)])
def test_ctrl_c_while_the_modules_load_is_one_line(prog, one_line):
    """Ctrl-C after the package has loaded but before the command's module has: the command's
    one line and 130; a program of the user's that imports the package gets its
    KeyboardInterrupt as ever."""
    proc = subprocess.Popen([sys.executable, "-c", LOADING, prog], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "loading\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    if one_line:
        assert (proc.returncode, err) == (130, "precomputed-tif: interrupted (SIGINT)\n")
    else:
        assert proc.returncode == -signal.SIGINT and err.rstrip().endswith("KeyboardInterrupt"), err


def test_the_resource_tracker_of_a_command_adds_no_lines(stack, tmp_path):
    """multiprocessing's resource tracker, started by the command, would report a semaphore a
    stopped worker made as leaked, in warnings around the command's one line (seen when a disk
    filled): it runs with those warnings off."""
    glob, _ = stack
    proc = subprocess.Popen([os.path.join(BIN, "precomputed-tif"), "--source", glob, "--dest", str(tmp_path / "out"),
                             *OPTIONS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tracker = None
    deadline = time.monotonic() + 60
    while tracker is None and proc.poll() is None and time.monotonic() < deadline:
        for child in psutil.Process(proc.pid).children():
            try:
                if "resource_tracker" in " ".join(child.cmdline()):
                    tracker = child.cmdline()
            except psutil.Error:
                pass
        time.sleep(0.01)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert tracker is not None and "-Wignore::UserWarning:multiprocessing.resource_tracker" in tracker, tracker


def test_dask_run_interrupted_leaves_the_cluster_idle(stack, tmp_path):
    distributed = pytest.importorskip("distributed")
    glob, clean = stack
    dest = str(tmp_path / "out")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None,
                                  scheduler_port=0) as cluster, distributed.Client(cluster) as client:
        args = [os.path.join(BIN, "precomputed-tif"), "--source", glob, "--dest", dest, *OPTIONS[:2],
                "--no-progress", "--dask-scheduler", cluster.scheduler_address]
        proc = start(args, dest)
        proc.send_signal(signal.SIGTERM)
        assert_stopped_cleanly(proc, 143, "SIGTERM", dest)
        # The run's futures were cancelled: the cluster holds no task of it for long.
        deadline = time.monotonic() + 10
        while any(client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(client.processing().values())
        again = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
    assert files_of(dest) == files_of(clean)
