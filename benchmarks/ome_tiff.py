"""OME-TIFF output on the default benchmark stack: time, CPU, memory and file size.

    python benchmarks/ome_tiff.py                           # 256 x 1024 x 1024 uint16, deflate
    python benchmarks/ome_tiff.py --compression lzw --tile-size 256

Prints wall seconds, CPU seconds of all processes (this one and its finished
workers), peak RSS of all processes together (sampled every 10 ms), and the
size of the .ome.tif. The input planes are generated once into --data as
``benchmarks/convert.py`` makes them, and read once before timing (warm page
cache).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

# Run as a script (python benchmarks/NAME.py): the repository root on sys.path, for tests.helpers.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from precomputed_tif import convert
from precomputed_tif.sources.synthetic import kept_synthetic_planes
from tests.helpers.peak_rss import PeakRSS


def cpu_seconds() -> float:
    """User + system time of this process and of its children that have exited."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="256,1024,1024", help="Z,Y,X of the generated uint16 stack")
    p.add_argument("--compression", default="deflate")
    p.add_argument("--tile-size", type=int, default=512)
    p.add_argument("--n-cores", type=int, default=None)
    p.add_argument("--data", default="bench-data", help="where generated planes are kept between runs")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    files = kept_synthetic_planes(args.data, shape)
    nbytes = 0
    for f in files:  # warm the page cache
        with open(f, "rb") as fh:
            nbytes += len(fh.read())
    workdir = tempfile.mkdtemp(prefix="pt-bench-", dir=args.data)
    try:
        dest = os.path.join(workdir, "stack")
        cpu = cpu_seconds()
        with PeakRSS() as rss:
            t = time.perf_counter()
            result = convert(files, dest, format="ome-tiff", compression=args.compression,
                             tile_size=args.tile_size, n_cores=args.n_cores)
            wall = time.perf_counter() - t
        cpu = cpu_seconds() - cpu
        size = os.path.getsize(result["image"])
        print(f"stack {shape[2]}x{shape[1]}x{shape[0]} uint16 ({nbytes / 1e6:.0f} MB of planes), "
              f"{len(result['levels'])} levels, tiles {args.tile_size}, {args.compression}, "
              f"{args.n_cores or os.cpu_count()} cores")
        print(f"wall {wall:.2f} s ({nbytes / 1e6 / wall:.0f} MB/s), CPU {cpu:.2f} s, "
              f"peak RSS {rss.peak / 2**20:.0f} MiB, file {size / 1e6:.0f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
