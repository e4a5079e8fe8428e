"""OME-Zarr 0.5 and 0.4 beside --format zarr, on the same generated stack, in one run.

    python benchmarks/ome_zarr.py                          # 256 x 1024 x 1024 uint16
    python benchmarks/ome_zarr.py --shape 64,2048,2048

Prints, per variant: wall seconds, CPU seconds of all processes, peak RSS of
all processes together (sampled every 10 ms), output size, and the files and
chunks of the full-resolution level (goal for 0.5: at most 1 file per 512
chunks, no slower than zarr, peak under 400 MiB).

Then, for the choice of shard writer: the full-resolution level written
block by block (256^3 voxels, as a conversion task does) into the same
512-chunk shards, once by zarr-python (which reads, merges and rewrites a shard
at every partial write) and once by this project's streaming shard writer;
one process, from memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

# Run as a script (python benchmarks/NAME.py): the repository root on sys.path, for tests.helpers.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from precomputed_tif import convert
from precomputed_tif.geometry import Box, Geometry
from precomputed_tif.sources.synthetic import kept_synthetic_planes
from tests.helpers.peak_rss import PeakRSS

VARIANTS = [("zarr", {"format": "zarr"}), ("ome-zarr 0.5", {"format": "ome-zarr"}),
            ("ome-zarr 0.4", {"format": "ome-zarr", "ngff_version": "0.4"})]


def du(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def level_files(dest: str, key: str) -> int:
    return sum(1 for _, _, fs in os.walk(os.path.join(dest, key)) for f in fs
               if not f.startswith(".") and f not in ("zarr.json",))


def shard_writers(volume: np.ndarray, workdir: str) -> None:
    """Level 0 written in 256^3 blocks into shards of 8x8x8 chunks: zarr-python, then ours."""
    import zarr
    from zarr.codecs import BloscCodec

    from precomputed_tif.formats.ome_zarr.store import OmeZarrStore
    from precomputed_tif.info import build_info

    z, y, x = volume.shape
    block, shard = 256, 512
    boxes = [Box(x0, min(x0 + block, x), y0, min(y0 + block, y), z0, min(z0 + block, z))
             for z0 in range(0, z, block) for y0 in range(0, y, block) for x0 in range(0, x, block)]
    # Blocks in the order a task meets them: shard by shard.
    boxes.sort(key=lambda b: (b.z0 // shard, b.y0 // shard, b.x0 // shard, b.z0, b.y0, b.x0))

    path = os.path.join(workdir, "zarr-python")
    arr = zarr.create_array(store=path, shape=volume.shape, chunks=(64, 64, 64), shards=(shard,) * 3,
                            dtype=volume.dtype, fill_value=0, zarr_format=3,
                            compressors=BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"))
    t = time.perf_counter()
    for b in boxes:
        arr[b.slices] = volume[b.slices]
    zp = time.perf_counter() - t

    g = Geometry((x, y, z), n_levels=1, numbered_keys=True)
    info = build_info(g, volume.dtype, False)
    info["precomputed_tif"] = {"zarr_shards": {"0": [shard] * 3}}
    dest = os.path.join(workdir, "ours")
    store = OmeZarrStore(dest, info)
    store.create()
    t = time.perf_counter()
    writers = {}
    for b in boxes:
        key = (b.z0 // shard, b.y0 // shard, b.x0 // shard)
        if key not in writers:
            for w in writers.values():
                w.finish()
            writers = {key: store.writer()}
        for c in g.chunk_boxes(1, b):
            writers[key].write_chunk("0", c, volume[c.slices])
    for w in writers.values():
        w.finish()
    store.finish()
    ours = time.perf_counter() - t
    np.testing.assert_array_equal(zarr.open_array(os.path.join(dest, "0"), mode="r")[:], volume)
    print(f"level 0 in 256^3 blocks into 512-chunk shards: zarr-python {zp:.2f} s, "
          f"streaming shard writer {ours:.2f} s (both one process)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="256,1024,1024", help="Z,Y,X of the generated uint16 stack")
    p.add_argument("--n-cores", type=int, default=None)
    p.add_argument("--data", default="bench-data", help="where generated planes are kept between runs")
    p.add_argument("--no-writer-comparison", action="store_true", help="skip the shard writer comparison")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    files = kept_synthetic_planes(args.data, shape)
    for f in files:  # warm the page cache, as for every variant
        with open(f, "rb") as fh:
            fh.read()
    workdir = tempfile.mkdtemp(prefix="pt-bench-", dir=args.data)
    try:
        g = Geometry((shape[2], shape[1], shape[0]))
        print(f"stack {shape[2]}x{shape[1]}x{shape[0]} uint16, {len(g.levels)} levels, 64^3 chunks, "
              f"{g.n_chunks(1)} chunks at full resolution, {args.n_cores or os.cpu_count()} cores")
        print(f"{'variant':13} {'wall s':>7} {'CPU s':>7} {'peak RSS MiB':>13} {'output MB':>10} "
              f"{'level-0 files':>14} {'chunks/file':>12}")
        for name, options in VARIANTS:
            dest = os.path.join(workdir, name.replace(" ", "-"))
            with PeakRSS() as rss:
                cpu, t = cpu_seconds(), time.perf_counter()
                info = convert(files, dest, n_cores=args.n_cores, **options)
                wall, cpu = time.perf_counter() - t, cpu_seconds() - cpu
            n = level_files(dest, info["scales"][0]["key"])
            print(f"{name:13} {wall:7.2f} {cpu:7.1f} {rss.peak / 2**20:13.0f} {du(dest) / 1e6:10.0f} "
                  f"{n:14} {g.n_chunks(1) / n:12.0f}", flush=True)
            shutil.rmtree(dest)
        if not args.no_writer_comparison:
            import tifffile

            shard_writers(np.stack([tifffile.imread(f) for f in files]), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
