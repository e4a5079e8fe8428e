"""What checking the source on a rerun costs: identifying 10,000 planes.

    python benchmarks/fingerprint.py                 # 10,000 planes: open them, then identify them
    python benchmarks/fingerprint.py --open-only     # the same opening alone, for an A/B of whole runs

Every run opens the planes (reads each file's headers, as planning a conversion
does); without ``--open-only`` it then computes the fingerprint a rerun compares
(a stat of each file and a hash of the planes' layout) and prints both times.
The planes (64 x 64 uint16, one file each) are generated once into --data and kept.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import tifffile

from precomputed_tif.sources.fingerprint import identify
from precomputed_tif.sources.tiff import open_stack


def make_planes(directory: str, n: int) -> str:
    if not os.path.isdir(directory) or len(os.listdir(directory)) != n:
        os.makedirs(directory, exist_ok=True)
        plane = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
        for z in range(n):
            tifffile.imwrite(os.path.join(directory, f"img_{z:05d}.tif"), plane, photometric="minisblack")
    return os.path.join(directory, "img_*.tif")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--planes", type=int, default=10_000)
    p.add_argument("--data", default="bench-data/fingerprint")
    p.add_argument("--open-only", action="store_true", help="open the planes, do not identify them")
    args = p.parse_args()
    glob = make_planes(os.path.join(args.data, str(args.planes)), args.planes)
    started = time.perf_counter()
    stack = open_stack(glob)
    opened = time.perf_counter()
    if args.open_only:
        print(f"opened {stack.n_planes} planes in {opened - started:.2f} s")
        return
    identity = identify(stack)
    done = time.perf_counter()
    print(f"opened {stack.n_planes} planes in {opened - started:.2f} s; identified them in "
          f"{(done - opened) * 1000:.0f} ms ({len(identity.files)} files)")


if __name__ == "__main__":
    main()
