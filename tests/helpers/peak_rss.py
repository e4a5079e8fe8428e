"""Peak memory of a process tree, for the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import os
import threading

import psutil


class PeakRSS:
    """Peak of the summed RSS of one process tree, sampled in a thread.

    By default the tree is this process and the children it starts within the block; with
    ``pid`` it is that process (a command the block started) and its descendants only.
    Processes already there when the block begins, and whatever they start later (a server,
    cluster or browser an earlier test left running spawns helpers at any time), are not the
    block's and are left out. ``at_peak`` holds ``(pid, name, rss)`` of each process counted at
    the peak, for a failure message: ``describe()``."""

    def __init__(self, interval=0.01, pid: int | None = None):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.pid = pid
        self.at_peak: list[tuple[int, str, int]] = []
        self._before: set[int] = set()

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid) if self.pid else psutil.Process()
        skip: set[int] = set()
        for pid in self._before:  # descendants of what was already running are not ours
            with contextlib.suppress(psutil.Error):
                skip.update(p.pid for p in psutil.Process(pid).children(recursive=True))
        return [p for p in [root] + root.children(recursive=True)
                if p.pid not in self._before and p.pid not in skip]

    def _sample(self):
        while not self._stop.is_set():
            total, seen = 0, []
            with contextlib.suppress(psutil.Error):
                for p in self._tree():
                    with contextlib.suppress(psutil.Error):
                        rss = p.memory_info().rss
                        total += rss
                        seen.append((p.pid, p.name(), rss))
            if total > self.peak:
                self.peak, self.at_peak = total, seen
            self._stop.wait(self.interval)

    def describe(self) -> str:
        """The peak and the processes that made it, e.g. ``612 MiB: python 301, python 311``."""
        parts = ", ".join(f"{name}[{pid}] {rss / 2**20:.0f}" for pid, name, rss in self.at_peak)
        return f"{self.peak / 2**20:.0f} MiB: {parts}"

    def __enter__(self):
        if self.pid is None:
            self._before = {p.pid for p in psutil.Process().children(recursive=True)}
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# The peak is the process's own high-water mark (VmHWM): ru_maxrss would start from the RSS of
# the process that started it (Linux carries it across fork and exec), here the test's.
_MEASURE = """
import sys
from precomputed_tif import convert
if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2], **{{"n_cores": 1, **{options}}})
    with open("/proc/self/status") as f:
        print(next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")))
"""


def source_conversion_peak_rss(source: str, dest: str, options: str = "{}") -> int:
    """Peak RSS in bytes of a conversion of ``source`` into ``dest`` (``dest`` may be a bucket
    URL) in a fresh interpreter, one process unless ``options`` (the text of a dict of further
    ``convert`` arguments) says otherwise."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _MEASURE.format(options=options), source, dest],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def pattern_planes(directory, n_planes: int) -> str:
    """``n_planes`` 256 x 256 uint16 planes of a pattern that compresses poorly, as TIFF files in
    ``directory`` (made); their glob."""
    import numpy as np
    import tifffile

    os.makedirs(directory)
    plane = (np.arange(256 * 256, dtype=np.uint32).reshape(256, 256) * 2654435761 % 4099).astype(np.uint16)
    for z in range(n_planes):
        tifffile.imwrite(os.path.join(directory, f"p{z:05d}.tif"), plane + z)
    return os.path.join(str(directory), "*.tif")


def conversion_peak_rss(tmp_path, n_planes: int, options: str) -> int:
    """Peak RSS in bytes of a one-process conversion, in a fresh interpreter, of ``n_planes``
    planes of :func:`pattern_planes` in blocks of 1 MiB; ``options`` is the text of a dict of
    further ``convert`` arguments."""
    source = pattern_planes(tmp_path / f"src{n_planes}", n_planes)
    dest = str(tmp_path / f"out{n_planes}")
    return source_conversion_peak_rss(source, dest, f'{{"block_bytes": 2**20, **{options}}}')
