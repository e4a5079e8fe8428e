"""CPU cost of converting compressed multi-page TIFF files.

    python benchmarks/multipage.py            # 1,000 vs 4,000 LZW pages; 1 GiB LZW stack vs plain planes
    python benchmarks/multipage.py --quick    # smaller, for a first look

Two questions, answered in CPU seconds of all processes (this one and the
worker processes), so a loaded machine changes them little:

1. Does the cost grow linearly with the number of pages? The same 256 x 256
   uint16 planes as one LZW multi-page file of 1,000 and of 4,000 pages; the
   cost per 1,000 pages should stay the same.
2. What does compression cost? A 512 x 1024 x 1024 uint16 stack (1 GiB) as one
   LZW multi-page file, against the same data as uncompressed plane files plus
   the CPU time tifffile itself needs to decode every page of the LZW file.
   Goal: LZW conversion <= 1.5 x (plain conversion + decode).

Files are generated once into --data and kept; conversions write Zarr.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import tifffile

from precomputed_tif import convert
from precomputed_tif.sources.synthetic import synthetic_planes, write_synthetic_planes


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(fn) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of fn()."""
    c, t = cpu_seconds(), time.perf_counter()
    fn()
    return cpu_seconds() - c, time.perf_counter() - t


def lzw_stack(path: str, shape) -> str:
    if not os.path.exists(path):
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        tmp = path + ".part"
        with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
            for plane in synthetic_planes(shape):
                tif.write(plane, compression="lzw", photometric="minisblack", metadata=None)
        os.replace(tmp, path)
    return path


def plain_planes(directory: str, shape) -> str:
    pattern = os.path.join(directory, "img_*.tif")
    if not os.path.isdir(directory) or len(os.listdir(directory)) != shape[0]:
        print(f"generating {directory} ...", file=sys.stderr, flush=True)
        shutil.rmtree(directory, ignore_errors=True)
        write_synthetic_planes(directory, shape)
    return pattern


def decode_all(path: str) -> None:
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            page.asarray()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="250/1,000 pages and a 128 MiB stack")
    p.add_argument("--data", default="bench-data", help="where generated files are kept between runs")
    p.add_argument("--n-cores", type=int, default=None)
    args = p.parse_args(argv)
    os.makedirs(args.data, exist_ok=True)
    counts = (250, 1000) if args.quick else (1000, 4000)
    big = (128, 512, 1024) if args.quick else (512, 1024, 1024)
    work = tempfile.mkdtemp(prefix="pt-bench-mp-", dir=args.data)
    try:
        print("1. pages: LZW multi-page files of 256x256 uint16 planes")
        print(f"{'pages':>6} {'CPU s':>7} {'wall s':>7} {'CPU s / 1000 pages':>19}")
        per = []
        for n in counts:
            path = lzw_stack(os.path.join(args.data, f"lzw-{n}x256x256.tif"), (n, 256, 256))
            dest = os.path.join(work, f"pages-{n}")
            cpu, wall = measure(lambda path=path, dest=dest: convert(path, dest, format="zarr", n_cores=args.n_cores))
            per.append(cpu / n * 1000)
            print(f"{n:6d} {cpu:7.2f} {wall:7.2f} {per[-1]:19.2f}", flush=True)
        print(f"cost per page, {counts[1]} vs {counts[0]} pages: x{per[1] / per[0]:.2f} (linear: x1.00)")

        z, y, x = big
        print(f"\n2. compression: {x}x{y}x{z} uint16 ({z * y * x * 2 / 2**30:.2f} GiB)")
        lzw = lzw_stack(os.path.join(args.data, f"lzw-{z}x{y}x{x}.tif"), big)
        plain = plain_planes(os.path.join(args.data, f"planes-{z}x{y}x{x}"), big)
        decode_all(lzw)  # warm the page cache for both inputs
        decode_cpu, _ = measure(lambda: decode_all(lzw))
        plain_cpu, plain_wall = measure(lambda: convert(plain, os.path.join(work, "plain"), format="zarr",
                                                        n_cores=args.n_cores))
        lzw_cpu, lzw_wall = measure(lambda: convert(lzw, os.path.join(work, "lzw"), format="zarr",
                                                    n_cores=args.n_cores))
        print(f"{'input':34} {'CPU s':>7} {'wall s':>7}")
        print(f"{'uncompressed plane files':34} {plain_cpu:7.2f} {plain_wall:7.2f}")
        print(f"{'tifffile decoding every LZW page':34} {decode_cpu:7.2f}")
        print(f"{'LZW multi-page file':34} {lzw_cpu:7.2f} {lzw_wall:7.2f}")
        ratio = lzw_cpu / (plain_cpu + decode_cpu)
        print(f"LZW / (uncompressed + decode) = {ratio:.2f} (goal <= 1.5)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
