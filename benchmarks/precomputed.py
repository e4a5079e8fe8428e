"""Sharded native precomputed output, this project against tensorstore, in one run.

    python benchmarks/precomputed.py                      # 256 x 1024 x 1024 uint16
    python benchmarks/precomputed.py --shape 64,512,512   # a quick look

Both write the same pyramid (mean-downsampled, 64^3 chunks, raw encoding with
gzip inside the shards, the same sharding specification) from the same
uncompressed TIFF planes in a warm page cache. tensorstore reads the planes
with tifffile, writes the full-resolution scale, then each coarser scale from
its own ``downsample`` view of the scale before. Printed per writer: wall
seconds, peak memory of all processes together (summed RSS, sampled every
10 ms), and files per scale.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

# Run as a script (python benchmarks/NAME.py): the repository root on sys.path, for tests.helpers.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from precomputed_tif import convert
from precomputed_tif.sources.synthetic import kept_synthetic_planes
from tests.helpers.peak_rss import PeakRSS


def files_per_scale(dest: str, info: dict) -> list[int]:
    return [len(os.listdir(os.path.join(dest, s["key"]))) for s in info["scales"]]


def tensorstore_pyramid(files: list[str], dest: str, info: dict, threads: int, kvstore: dict | None = None) -> None:
    """The same info, written by tensorstore: scale 0 from the planes, then each scale from a
    mean-downsampled view of the one before; into the local directory ``dest``, or into
    ``kvstore`` (a tensorstore kvstore spec: a bucket) when given."""
    import tensorstore as ts
    import tifffile

    context = ts.Context({"data_copy_concurrency": {"limit": threads}, "file_io_concurrency": {"limit": threads}})
    base = {"driver": "neuroglancer_precomputed", "kvstore": kvstore or f"file://{os.path.abspath(dest)}"}
    scales = []
    for i, scale in enumerate(info["scales"]):
        spec = dict(base, create=True, open=True,
                    multiscale_metadata={"type": info["type"], "data_type": info["data_type"],
                                         "num_channels": info["num_channels"]} if i == 0 else None,
                    scale_metadata={k: scale[k] for k in ("key", "size", "resolution", "encoding", "sharding",
                                                          "voxel_offset") if k in scale}
                    | {"chunk_size": scale["chunk_sizes"][0]})
        spec = {k: v for k, v in spec.items() if v is not None}
        scales.append(ts.open(spec, context=context).result())
    top = scales[0]
    slab = info["scales"][0]["chunk_sizes"][0][2]
    for z0 in range(0, len(files), slab):
        planes = np.stack([tifffile.imread(f) for f in files[z0:z0 + slab]])  # z, y, x
        top[:, :, z0:z0 + len(planes), 0].write(planes.transpose(2, 1, 0)).result()
    for i in range(1, len(scales)):
        prev = scales[i - 1]
        factors = [2 if -(-p // 2) == s else 1 for p, s in zip(prev.shape[:3], scales[i].shape[:3])]
        view = ts.downsample(prev, factors + [1], "mean")
        scales[i].write(view).result()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="256,1024,1024", help="Z,Y,X of the generated uint16 stack")
    p.add_argument("--data", default="bench-data", help="where generated planes are kept between runs")
    p.add_argument("--n-cores", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    files = kept_synthetic_planes(args.data, shape)
    for f in files:  # warm the page cache
        with open(f, "rb") as fh:
            fh.read()
    work = tempfile.mkdtemp(prefix="pt-bench-ng-", dir=args.data)
    try:
        ours = os.path.join(work, "ours")
        with PeakRSS() as rss:
            t = time.perf_counter()
            info = convert(files, ours, format="precomputed", n_cores=args.n_cores)
            wall = time.perf_counter() - t
        mb = np.prod(shape) * 2 / 1e6
        print(f"stack {shape[2]}x{shape[1]}x{shape[0]} uint16 ({mb:.0f} MB), {len(info['scales'])} scales, "
              f"64^3 chunks, {args.n_cores} cores")
        print(f"{'writer':14} {'wall s':>7} {'peak RSS MiB':>13}  files per scale")
        print(f"{'precomputed-tif':14} {wall:7.2f} {rss.peak / 2**20:13.0f}  {files_per_scale(ours, info)}", flush=True)
        theirs = os.path.join(work, "tensorstore")
        os.makedirs(theirs)
        clean = {k: v for k, v in info.items() if k != "precomputed_tif"}
        with PeakRSS() as rss:
            t = time.perf_counter()
            tensorstore_pyramid(files, theirs, clean, args.n_cores)
            ts_wall = time.perf_counter() - t
        with open(os.path.join(theirs, "info")) as f:
            ts_info = json.load(f)
        print(f"{'tensorstore':14} {ts_wall:7.2f} {rss.peak / 2**20:13.0f}  {files_per_scale(theirs, ts_info)}")
        print(f"ratio precomputed-tif / tensorstore: {wall / ts_wall:.2f} (goal < 1.0)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
