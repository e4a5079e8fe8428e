"""Meshing speed and memory: this project against igneous, on the same label volume, in one run.

    python benchmarks/mesh.py                     # 256 x 512 x 512 uint32, about 2,000 cells
    python benchmarks/mesh.py --shape 128,256,256 --cells 250 --skip-igneous

The volume is made of cells: ellipsoids of random size and orientation at
random places, later ones over earlier ones where they meet, so many cells touch.
It is written once into --data as a TIFF and converted (not timed) into a tiff-format
segmentation for this project, and into a raw precomputed layer written with
CloudVolume for igneous.

Timed: ``precomputed-mesh --dataset D`` (multi-resolution, sharded, every level of
detail); and igneous's documented two steps, ``igneous mesh forge --sharded`` then
``igneous mesh merge-sharded`` (its defaults: simplified meshes, one level of detail),
each queue executed by as many ``igneous execute`` processes as --n-cores. For
each: wall seconds, CPU seconds of all processes, and the peak of the summed
proportional set size (PSS, shared pages counted once) of all processes,
sampled every 50 ms. igneous (GPL) is not a dependency of this project, and it pins
DracoPy below 2 (which encodes 1.5x slower): it is installed into a virtual
environment of its own, ``--igneous-venv`` (made on first use with ``pip install
igneous-pipeline``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

BIN = os.path.dirname(sys.executable)


class PeakPSS:
    """Peak of the summed PSS of this process's children (recursively), sampled in a thread."""

    def __init__(self, interval=0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _sample(self):
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += p.memory_full_info().pss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cells(shape, n, seed=0):
    """A (z, y, x) uint32 label volume of ``n`` ellipsoidal cells, labels 1..n."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint32)
    mean_r = (np.prod(shape) * 0.35 / n / (4 / 3 * np.pi)) ** (1 / 3)
    for label in range(1, n + 1):
        radii = mean_r * rng.uniform(0.6, 1.4, 3)
        centre = rng.uniform(0, 1, 3) * shape
        rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        r = int(np.ceil(radii.max()))
        lo = np.maximum(0, np.floor(centre - r).astype(int))
        hi = np.minimum(shape, np.ceil(centre + r + 1).astype(int))
        grid = np.stack(np.meshgrid(*[np.arange(a, b) + 0.5 for a, b in zip(lo, hi)], indexing="ij"), -1) - centre
        local = grid @ rot
        inside = ((local / radii) ** 2).sum(-1) <= 1
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside] = label
    return out


def timed(commands, parallel=1):
    """Run each command (a list of argv, or a list of lists run ``parallel`` times at once) in turn;
    (wall s, CPU s of all children, peak PSS MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with PeakPSS() as peak:
        for argv, copies in commands:
            procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for _ in range(copies)]
            for p in procs:
                _, err = p.communicate()
                if p.returncode:
                    raise SystemExit(f"{' '.join(argv)} failed:\n{err[-2000:]}")
            print(f"  {' '.join(os.path.basename(a) for a in argv[:3])} (x{copies}): "
                  f"{time.perf_counter() - t:.1f} s so far", flush=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peak.peak / 2**20


def du(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="256,512,512", help="z,y,x (default 256,512,512)")
    p.add_argument("--cells", type=int, default=2000)
    p.add_argument("--n-cores", type=int, default=2)
    p.add_argument("--data", default="bench-data/mesh")
    p.add_argument("--skip-igneous", action="store_true")
    p.add_argument("--igneous-venv", default="bench-data/igneous-venv",
                   help="virtual environment with igneous-pipeline (made if missing)")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    os.makedirs(args.data, exist_ok=True)
    tif = os.path.join(args.data, f"cells_{'x'.join(map(str, shape))}_{args.cells}.tif")
    import tifffile

    if not os.path.exists(tif):
        print(f"making {shape[2]}x{shape[1]}x{shape[0]} labels with {args.cells} cells ...", flush=True)
        tifffile.imwrite(tif, cells(shape, args.cells))
    labels = tifffile.imread(tif)
    n_labels = len(np.unique(labels)) - 1
    print(f"volume {shape[2]}x{shape[1]}x{shape[0]} uint32, {n_labels} cells, "
          f"{(labels > 0).mean():.0%} of voxels in cells; {args.n_cores} processes; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)

    ours = os.path.join(args.data, "ours")
    from precomputed_tif import convert

    shutil.rmtree(ours, ignore_errors=True)
    convert(tif, ours, segmentation=True, voxel_size=(1, 1, 1), n_cores=args.n_cores)
    wall, cpu, pss = timed([([os.path.join(BIN, "precomputed-mesh"), "--dataset", ours, "--n-cores",
                              str(args.n_cores), "--no-progress"], 1)])
    print(f"precomputed-mesh: {wall:.1f} s wall, {cpu:.1f} s CPU, peak {pss:.0f} MiB PSS, "
          f"{du(os.path.join(ours, 'mesh')) / 2**20:.1f} MiB of meshes", flush=True)

    if args.skip_igneous:
        return
    from cloudvolume import CloudVolume

    layer = os.path.join(args.data, "igneous")
    queue = os.path.join(args.data, "igneous-queue")
    shutil.rmtree(layer, ignore_errors=True)
    shutil.rmtree(queue, ignore_errors=True)
    info = CloudVolume.create_new_info(num_channels=1, layer_type="segmentation", data_type="uint32",
                                       encoding="raw", resolution=[1000, 1000, 1000], voxel_offset=[0, 0, 0],
                                       chunk_size=[64, 64, 64], volume_size=list(shape[::-1]))
    cv = CloudVolume(f"file://{os.path.abspath(layer)}", info=info, progress=False)
    cv.commit_info()
    cv[:, :, :] = labels.T[..., np.newaxis]
    del labels
    url = f"file://{os.path.abspath(layer)}"
    ign = os.path.join(args.igneous_venv, "bin", "igneous")
    if not os.path.exists(ign):
        print(f"installing igneous-pipeline into {args.igneous_venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", args.igneous_venv], check=True)
        # zfpy 1.0.1.post0 has a version string that numcodecs cannot parse.
        subprocess.run([os.path.join(args.igneous_venv, "bin", "pip"), "install", "-q", "igneous-pipeline",
                        "zfpy!=1.0.1.post0"], check=True)
    execute = ([ign, "execute", "-x", "-q", queue], args.n_cores)
    wall, cpu, pss = timed([
        ([ign, "mesh", "forge", url, "--queue", queue, "--sharded"], 1), execute,
        ([ign, "mesh", "merge-sharded", url, "--queue", queue], 1), execute,
    ])
    mesh_dir = [d for d in os.listdir(layer) if d.startswith("mesh")]
    size = sum(du(os.path.join(layer, d)) for d in mesh_dir)
    print(f"igneous (forge --sharded, merge-sharded): {wall:.1f} s wall, {cpu:.1f} s CPU, peak {pss:.0f} MiB PSS, "
          f"{size / 2**20:.1f} MiB of meshes", flush=True)


if __name__ == "__main__":
    main()
