"""Serving speed: N keep-alive clients fetch random full-resolution chunks for a fixed time.

    python benchmarks/serve.py                   # 8 clients, 10 s per case, every format and front door
    python benchmarks/serve.py --clients 16 --seconds 5 --cases webserver:blockfs,static

Cases are FRONT:FORMAT. Front doors: ``webserver`` (precomputed-webserver) and
``gunicorn`` (the WSGI app, one worker per core). ``static`` is the baseline:
the same chunk bytes as plain files (a "raw" precomputed directory) behind
precomputed-webserver. Each client is its own process with one persistent
connection. Prints requests/s, MB/s, p50/p99 latency and errors per case.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import sys
import time

import numpy as np

# Run as a script (python benchmarks/NAME.py): the repository root on sys.path, for tests.helpers.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from precomputed_tif import convert, open_volume
from precomputed_tif.geometry import Box
from precomputed_tif.sources.synthetic import write_synthetic_planes
from tests.helpers.servers import start_gunicorn, start_webserver

FORMATS = ("tiff", "zarr", "blockfs")


def prepare(data_dir: str, shape) -> dict[str, str]:
    """Datasets of every format plus a raw copy, made once and kept in ``data_dir``."""
    root = os.path.join(data_dir, "serve-" + "x".join(map(str, shape)))
    dirs = {fmt: os.path.join(root, fmt) for fmt in FORMATS}
    dirs["static"] = os.path.join(root, "static")
    if all(os.path.exists(os.path.join(d, "info")) for d in dirs.values()):
        return dirs
    shutil.rmtree(root, ignore_errors=True)
    pattern = write_synthetic_planes(os.path.join(root, "planes"), shape)
    for fmt in FORMATS:
        convert(pattern, dirs[fmt], format=fmt, levels=1)
    vol = open_volume(dirs["blockfs"])
    key = vol.keys[0]
    os.makedirs(os.path.join(dirs["static"], key))
    for name in chunk_names(vol.info):
        box = Box.parse(name)
        data = vol.store.read_chunk(key, box)
        with open(os.path.join(dirs["static"], key, name), "wb") as f:
            f.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    with open(os.path.join(dirs["static"], "info"), "w") as f:
        json.dump(vol.info, f)
    return dirs


def chunk_names(info) -> list[str]:
    s = info["scales"][0]
    (sx, sy, sz), (cx, cy, cz) = s["size"], s["chunk_sizes"][0]
    return [Box(x, min(x + cx, sx), y, min(y + cy, sy), z, min(z + cz, sz)).name
            for z in range(0, sz, cz) for y in range(0, sy, cy) for x in range(0, sx, cx)]


def client(port, paths, seconds, seed, queue):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, nbytes, errors = [], 0, 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        path = rng.choice(paths)
        t = time.perf_counter()
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                errors += 1
            nbytes += len(body)
        except Exception:
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.perf_counter() - t)
    conn.close()
    queue.put((latencies, nbytes, errors))


def load(port, paths, clients, seconds):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=client, args=(port, paths, seconds, i, queue)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    lat = np.concatenate([np.array(r[0]) for r in results])
    return len(lat) / seconds, sum(r[1] for r in results) / seconds / 1e6, \
        np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3, sum(r[2] for r in results)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--shape", default="256,512,512", help="Z,Y,X of the generated uint16 stack")
    p.add_argument("--data", default="bench-data")
    p.add_argument("--cases", default=",".join([f"webserver:{f}" for f in FORMATS] + ["static"] +
                                               [f"gunicorn:{f}" for f in FORMATS]))
    args = p.parse_args(argv)
    dirs = prepare(args.data, tuple(int(v) for v in args.shape.split(",")))
    with open(os.path.join(dirs["blockfs"], "info")) as f:
        info = json.load(f)
    names = chunk_names(info)
    key = info["scales"][0]["key"]
    chunk = info["scales"][0]["chunk_sizes"][0]
    print(f"{args.clients} clients, {args.seconds:g} s per case, {len(names)} random {chunk[0]}x{chunk[1]}x"
          f"{chunk[2]} uint16 chunks, {os.cpu_count()} cores")
    print(f"{'case':18} {'req/s':>8} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    config = os.path.join(args.data, "serve-sources.json")
    with open(config, "w") as f:
        json.dump([{"name": fmt, "directory": os.path.abspath(dirs[fmt]), "format": fmt} for fmt in FORMATS], f)
    for case in args.cases.split(","):
        front, _, fmt = case.partition(":")
        if front == "static":
            server, prefix = start_webserver("--directory", dirs["static"], "--format", "raw"), ""
        elif front == "webserver":
            server, prefix = start_webserver("--directory", dirs[fmt]), ""
        elif front == "gunicorn":
            server, prefix = start_gunicorn(os.path.abspath(args.data), os.path.abspath(config),
                                            workers=os.cpu_count()), f"/{fmt}"
        else:
            raise SystemExit(f"unknown case {case}")
        try:
            paths = [f"{prefix}/{key}/{n}" for n in names]
            rps, mbs, p50, p99, errors = load(server.port, paths, args.clients, args.seconds)
        finally:
            server.stop()
        print(f"{case:18} {rps:8.0f} {mbs:8.0f} {p50:8.1f} {p99:8.1f} {errors:7d}", flush=True)


if __name__ == "__main__":
    main()
