"""Conversion speed and memory, per format, on a generated stack.

    python benchmarks/convert.py                       # 256 x 1024 x 1024 uint16, all formats
    python benchmarks/convert.py --shape 64,2048,2048 --formats zarr

Prints, per format: wall seconds, input MB/s, peak RSS of all processes
together (sampled every 10 ms), output size; and an I/O floor measured in the
same run: the time to read every input plane plus the time to write the same
bytes as plain files. Input planes are generated once into --data (uncompressed
TIFF, a bright-blob pattern with camera-like noise) and read once before timing,
so figures are for a warm page cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

# Run as a script (python benchmarks/NAME.py): the repository root on sys.path, for tests.helpers.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from precomputed_tif import convert, formats
from precomputed_tif.geometry import Geometry
from precomputed_tif.sources.synthetic import kept_synthetic_planes
from tests.helpers.peak_rss import PeakRSS


def du(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def io_floor(files, workdir):
    """Seconds to read every plane file and to write the same bytes as new files."""
    t = time.perf_counter()
    blobs = []
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        total += len(data)
        blobs.append(data) if len(blobs) < 1 else None
    read_s = time.perf_counter() - t
    out = os.path.join(workdir, "floor")
    os.makedirs(out)
    t = time.perf_counter()
    data = open(files[0], "rb").read()
    for i in range(len(files)):
        with open(os.path.join(out, f"{i}.bin"), "wb") as fh:
            fh.write(data)
    write_s = time.perf_counter() - t
    shutil.rmtree(out)
    return read_s, write_s, total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="256,1024,1024", help="Z,Y,X of the generated uint16 stack")
    p.add_argument("--formats", default=",".join(formats.names(chunked=True)), help="formats to time, comma separated")
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--n-cores", type=int, default=None)
    p.add_argument("--data", default="bench-data", help="where generated planes are kept between runs")
    p.add_argument("--repeat", type=int, default=1, help="runs per format; the fastest is reported")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    files = kept_synthetic_planes(args.data, shape)
    levels = min(args.levels, Geometry((shape[2], shape[1], shape[0])).max_levels())
    workdir = tempfile.mkdtemp(prefix="pt-bench-", dir=args.data)
    try:
        read_s, write_s, nbytes = io_floor(files, workdir)
        read_s, write_s, nbytes = io_floor(files, workdir)  # second time: warm cache
        mb = nbytes / 1e6
        print(f"stack {shape[2]}x{shape[1]}x{shape[0]} uint16 ({mb:.0f} MB), {levels} levels, "
              f"64^3 chunks, {args.n_cores or os.cpu_count()} cores")
        print(f"I/O floor: read planes {read_s:.2f} s + write same bytes {write_s:.2f} s = {read_s + write_s:.2f} s")
        print(f"{'format':8} {'wall s':>7} {'MB/s':>7} {'peak RSS MiB':>13} {'output MB':>10}")
        for fmt in args.formats.split(","):
            best = None
            for _ in range(args.repeat):
                dest = os.path.join(workdir, fmt)
                shutil.rmtree(dest, ignore_errors=True)
                with PeakRSS() as rss:
                    t = time.perf_counter()
                    convert(files, dest, levels=levels, format=fmt, n_cores=args.n_cores)
                    wall = time.perf_counter() - t
                if best is None or wall < best[0]:
                    best = (wall, rss.peak, du(dest))
            wall, peak, size = best
            print(f"{fmt:8} {wall:7.2f} {mb / wall:7.0f} {peak / 2**20:13.0f} {size / 1e6:10.0f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
