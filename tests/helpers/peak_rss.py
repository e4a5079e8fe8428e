"""Peak memory of a process tree, for the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import threading

import psutil


class PeakRSS:
    """Peak of the summed RSS of this process and the children it starts within the block,
    sampled in a thread. Children already there when the block begins (a server or cluster an
    earlier test is still stopping) are not the block's, and are left out."""

    def __init__(self, interval=0.01):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._before: set[int] = set()

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me] + me.children(recursive=True):
                if p.pid in self._before:
                    continue
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._before = {p.pid for p in psutil.Process().children(recursive=True)}
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


_MEASURE = """
import resource, sys
from precomputed_tif import convert
if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2], n_cores=1, block_bytes=2**20, **{options})
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def conversion_peak_rss(tmp_path, n_planes: int, options: str) -> int:
    """Peak RSS in bytes of a one-process conversion, in a fresh interpreter, of ``n_planes``
    256 x 256 uint16 planes; ``options`` is the text of a dict of further ``convert`` arguments."""
    import subprocess
    import sys

    import numpy as np
    import tifffile

    src = tmp_path / f"src{n_planes}"
    src.mkdir()
    plane = (np.arange(256 * 256, dtype=np.uint32).reshape(256, 256) * 2654435761 % 4099).astype(np.uint16)
    for z in range(n_planes):
        tifffile.imwrite(src / f"p{z:05d}.tif", plane + z)
    out = subprocess.run([sys.executable, "-c", _MEASURE.format(options=options), str(src / "*.tif"),
                          str(tmp_path / f"out{n_planes}")], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])
