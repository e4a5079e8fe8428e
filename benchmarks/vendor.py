"""A Zeiss CZI file into sharded precomputed, against what it cannot beat: Zeiss's own reader
reading the file once, plus this project converting the same voxels from TIFF planes.

    python benchmarks/vendor.py                       # 2 channels x 256 x 1024 x 1024 uint16 (1 GiB)
    python benchmarks/vendor.py --shape 64,512,512    # a quick look

The CZI is written once by Zeiss's libCZI (pylibCZIrw, extra ``czi``) and kept under --data,
with the same voxels as one TIFF plane per (z, channel). Printed: wall seconds and peak memory
(summed RSS of the processes each step starts) of (a) pylibCZIrw reading every plane in turn,
(b) precomputed-tif converting the TIFF planes (two channels from two globs is not one source,
so the planes are two-channel ImageJ files), (c) precomputed-tif converting the CZI, and the
goal c <= 1.3 x (a + b). Peak memory of (c) stays that of a TIFF conversion whatever the
number of planes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from precomputed_tif import convert  # noqa: E402
from precomputed_tif.sources.synthetic import synthetic_planes  # noqa: E402
from tests.helpers.peak_rss import PeakRSS  # noqa: E402


def make_inputs(root: str, shape: tuple[int, int, int]) -> tuple[str, str]:
    """(the CZI, the glob of its planes as two-channel TIFFs), made on first use."""
    import tifffile
    from pylibCZIrw import czi

    folder = os.path.join(root, "czi-" + "x".join(map(str, shape)))
    path, planes = os.path.join(folder, "stack.czi"), os.path.join(folder, "planes")
    if os.path.exists(os.path.join(folder, "done")):
        return path, os.path.join(planes, "*.tif")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(planes)
    print(f"writing a {shape} x 2 channel CZI and its planes in {folder} ...", flush=True)
    with czi.create_czi(path, exist_ok=True) as w:
        for z, (a, b) in enumerate(zip(synthetic_planes(shape, seed=1), synthetic_planes(shape, seed=2))):
            for c, plane in enumerate((a, b)):
                w.write(plane[..., None], plane={"C": c, "Z": z})
            tifffile.imwrite(os.path.join(planes, f"img_{z:05d}.tif"), np.stack([a, b]), imagej=True,
                             metadata={"axes": "CYX"})
        w.write_metadata("bench", channel_names={0: "DAPI", 1: "GFP"}, scale_x=0.3e-6, scale_y=0.3e-6,
                         scale_z=1e-6)
    open(os.path.join(folder, "done"), "w").close()
    return path, os.path.join(planes, "*.tif")


def read_czi(path: str, n_z: int) -> int:
    """Every plane of the CZI read by pylibCZIrw, one after the other; returns the bytes read."""
    from pylibCZIrw import czi

    total = 0
    with czi.open_czi(path) as r:
        for z in range(n_z):
            for c in range(2):
                total += r.read(plane={"C": c, "Z": z}).nbytes
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="256,1024,1024", help="Z,Y,X of each of the two channels (uint16)")
    p.add_argument("--data", default="bench-data", help="where the generated inputs are kept between runs")
    p.add_argument("--n-cores", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    path, planes = make_inputs(args.data, shape)
    for f in [path] + [os.path.join(os.path.dirname(planes), n) for n in os.listdir(os.path.dirname(planes))]:
        with open(f, "rb") as fh:  # warm the page cache
            while fh.read(1 << 24):
                pass
    work = tempfile.mkdtemp(prefix="pt-bench-czi-", dir=args.data)
    walls = {}
    print(f"{2 * np.prod(shape) * 2 / 2**30:.2f} GiB: 2 channels of {shape[2]}x{shape[1]}x{shape[0]} uint16, "
          f"{args.n_cores} cores")
    print(f"{'step':40} {'wall s':>7} {'peak RSS MiB':>13}")
    try:
        for name, fn in (
                ("(a) pylibCZIrw reads every plane", lambda: read_czi(path, shape[0])),
                ("(b) precomputed-tif from TIFF planes", lambda: convert(planes, os.path.join(work, "tiff"),
                                                                         format="precomputed", sharded=True,
                                                                         n_cores=args.n_cores)),
                ("(c) precomputed-tif from the CZI", lambda: convert(path, os.path.join(work, "czi"),
                                                                     format="precomputed", sharded=True,
                                                                     n_cores=args.n_cores))):
            with PeakRSS() as rss:
                t = time.perf_counter()
                fn()
                walls[name[:3]] = time.perf_counter() - t
            # (a) runs in this process, which PeakRSS does not count: its peak is not shown.
            peak = "" if name.startswith("(a)") else f"{rss.peak / 2**20:.0f}"
            print(f"{name:40} {walls[name[:3]]:7.2f} {peak:>13}", flush=True)
        bound = walls["(a)"] + walls["(b)"]
        print(f"ratio (c) / ((a) + (b)): {walls['(c)'] / bound:.2f} (goal <= 1.3)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
