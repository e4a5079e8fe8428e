"""``python -m precomputed_tif.demo``: make a sample stack, convert it, say what to do next.

The sample is a synthetic light-sheet-like stack (bright blobs on a dim,
smoothly varying background, with camera noise) written as one TIFF per plane,
exactly the input the converter is for.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .cli_support import add_log_argument, run_main, setup_logging
from .convert import convert
from .synthetic import write_synthetic_planes

SHAPE = (160, 448, 512)  # z, y, x
VOXEL_SIZE = (1.8, 1.8, 2.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="precomputed-tif-demo", description=__doc__)
    p.add_argument("--dir", default="demo", help="where the sample planes and the dataset go (default: demo)")
    p.add_argument("--format", default="tiff", help="chunk format of the dataset (default: tiff)")
    add_log_argument(p)
    args = p.parse_args(argv)
    setup_logging(args.log)

    def body():
        planes = os.path.join(args.dir, "planes")
        dest = os.path.join(args.dir, "precomputed")
        pattern = os.path.join(planes, "img_*.tif")
        if not os.path.isdir(planes):
            print(f"writing a {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} uint16 sample stack to {planes}/ ...")
            write_synthetic_planes(planes, SHAPE)
        print(f"converting: precomputed-tif --source \"{pattern}\" --dest {dest} --format {args.format}")
        t = time.perf_counter()
        info = convert(pattern, dest, format=args.format, voxel_size=VOXEL_SIZE, overwrite=True,
                       progress=sys.stderr.isatty())
        keys = ", ".join(s["key"] for s in info["scales"])
        print(f"done in {time.perf_counter() - t:.1f} s: {len(info['scales'])} levels ({keys}) in {dest}/")
        print()
        print("Next, serve it to Neuroglancer:")
        print(f"  {sys.prefix}/bin/precomputed-webserver --directory {dest} --port 9000")
        print("and open this source in Neuroglancer (https://neuroglancer-demo.appspot.com, or any other):")
        print("  precomputed://http://127.0.0.1:9000")

    return run_main("demo", body)


if __name__ == "__main__":
    sys.exit(main())
