"""precomputed-write-points on 10^5 and 10^6 random cell centres: wall time and peak RSS.

    python benchmarks/points.py                 # 100000 and 1000000 points
    python benchmarks/points.py --counts 5000000

Points are clustered like cells in tissue (half uniform, half in dense blobs) in a
2000 x 1500 x 800 voxel volume, written as JSON, then converted by the real
command in a child process; the time includes reading the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

# Run as a script (python benchmarks/NAME.py): the repository root on sys.path, for tests.helpers.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.helpers.peak_rss import PeakRSS


def make_points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = np.array([2000, 1500, 800])
    uniform = rng.random((n // 2, 3)) * shape
    centres = rng.random((50, 3)) * shape
    blobs = centres[rng.integers(0, 50, n - n // 2)] + rng.normal(0, 40, (n - n // 2, 3))
    return np.clip(np.concatenate([uniform, blobs]), 0, shape - 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="100000,1000000")
    args = p.parse_args(argv)
    exe = os.path.join(os.path.dirname(sys.executable), "precomputed-write-points")
    work = tempfile.mkdtemp(prefix="pt-points-")
    try:
        print(f"{'points':>10} {'layout':>10} {'wall s':>8} {'peak RSS MiB':>13} {'files':>8} {'levels':>7}")
        for n in (int(c) for c in args.counts.split(",")):
            src = os.path.join(work, f"{n}.json")
            with open(src, "w") as f:
                json.dump(make_points(n).tolist(), f)
            for layout in ("--sharded", "--unsharded") if n <= 100_000 else ("--sharded",):
                out = os.path.join(work, f"out{n}{layout}")
                with PeakRSS() as rss:
                    t = time.perf_counter()
                    subprocess.run([exe, "--input", src, "--output-directory", out, layout], check=True,
                                   stdout=subprocess.DEVNULL)
                    wall = time.perf_counter() - t
                files = sum(len(fs) for _, _, fs in os.walk(out))
                with open(os.path.join(out, "info")) as f:
                    levels = len(json.load(f)["spatial"])
                print(f"{n:>10,} {layout[2:]:>10} {wall:8.2f} {rss.peak / 2**20:13.0f} {files:>8,} {levels:>7}",
                      flush=True)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
