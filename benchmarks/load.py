"""Serving under load and under hostile clients, for each front door.

    python benchmarks/load.py                        # every front door, 10 s per phase
    python benchmarks/load.py --seconds 5 --fronts webserver

Front doors: ``webserver`` (precomputed-webserver, 2 workers), ``nginx+gunicorn`` (the WSGI
app under gunicorn 2 workers x 4 threads behind nginx, as the README deploys it), and for
comparison ``gunicorn`` alone. Phases:

* burst: 200 clients connect at once and fetch one chunk each (listen backlog, accept rate);
* hostile: 200 idle keep-alive connections and 50 slow clients (trickling their headers, and
  reconnecting when cut off) held open while 8 normal clients (own processes, keep-alive)
  fetch random 64^3 uint16 chunks: p50/p99 of the normal clients, errors;
* small: requests/s for a 10 KB file on keep-alive connections (1 and 8 clients), and the
  same file from ``python -m http.server`` for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time

# Run as a script (python benchmarks/NAME.py): the repository root on sys.path, for tests.helpers.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from precomputed_tif import convert
from precomputed_tif.sources.synthetic import write_synthetic_planes
from tests.helpers.servers import free_port, start_gunicorn, start_nginx, start_webserver, wait_for_port

SHAPE = (128, 512, 512)


def prepare(data_dir: str) -> str:
    root = os.path.join(data_dir, "load")
    if os.path.exists(os.path.join(root, "zarr", "info")):
        return root
    shutil.rmtree(root, ignore_errors=True)
    convert(write_synthetic_planes(os.path.join(root, "planes"), SHAPE), os.path.join(root, "zarr"),
            format="zarr", levels=1)
    with open(os.path.join(root, "zarr", "cell.bin"), "wb") as f:
        f.write(os.urandom(10 * 1024))
    with open(os.path.join(root, "sources.json"), "w") as f:
        json.dump([{"name": "zarr", "directory": os.path.join(root, "zarr")}], f)
    return root


def chunk_paths(prefix: str) -> list[str]:
    z, y, x = SHAPE
    return [f"{prefix}/1_1_1/{x0}-{x0 + 64}_{y0}-{y0 + 64}_{z0}-{z0 + 64}"
            for z0 in range(0, z, 64) for y0 in range(0, y, 64) for x0 in range(0, x, 64)]


def fetcher(port, paths, seconds, seed, queue):
    """One client process: one keep-alive connection, random paths, for ``seconds``."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, errors = [], 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        try:
            conn.request("GET", rng.choice(paths))
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            continue
        latencies.append(time.perf_counter() - t)
    conn.close()
    queue.put((latencies, errors))


def run_fetchers(port, paths, n, seconds):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=fetcher, args=(port, paths, seconds, i, queue)) for i in range(n)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    lat = sorted(x for r in results for x in r[0])
    return lat, sum(r[1] for r in results)


def burst(port, path, n=200):
    times, errors = [], []

    def one():
        t = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while True:
                    block = s.recv(1 << 20)
                    if not block:
                        break
                    data += block
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(data[:40])
            times.append(time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001 - counted
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(times), len(errors)


class Hostiles:
    """200 idle connections and 50 slow clients, kept open (reconnecting) until stopped."""

    def __init__(self, port, path, idle=200, slow=50):
        self.port, self.path, self.stop = port, path, threading.Event()
        self.idle = [self._connect() for _ in range(idle)]
        self.slow = [self._slow() for _ in range(slow)]
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def _slow(self):
        s = self._connect()
        s.sendall(f"GET {self.path} HTTP/1.1\r\nHost: x\r\n".encode())
        return s

    def _trickle(self):
        while not self.stop.wait(0.5):
            for i, s in enumerate(self.slow):
                try:
                    s.send(b"X")
                except OSError:
                    s.close()
                    with contextlib.suppress(OSError):
                        self.slow[i] = self._slow()
            for i, s in enumerate(self.idle):  # replace idle connections the server closed
                s.setblocking(False)
                try:
                    closed = s.recv(1) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                s.setblocking(True)
                if closed:
                    s.close()
                    with contextlib.suppress(OSError):
                        self.idle[i] = self._connect()

    def close(self):
        self.stop.set()
        self.thread.join()
        for s in self.idle + self.slow:
            s.close()


def ms(x):
    return f"{x * 1000:.1f} ms"


def report(name, lat, errors, seconds=None):
    if not lat:
        print(f"  {name}: no answers, {errors} errors")
        return
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    rate = f", {len(lat) / seconds:,.0f} req/s" if seconds else ""
    print(f"  {name}: n={len(lat)}{rate}, p50 {ms(p(0.5))}, p99 {ms(p(0.99))}, max {ms(lat[-1])}, "
          f"errors {errors}", flush=True)


def start(front, root):
    config = os.path.join(root, "sources.json")
    if front == "webserver":
        return [start_webserver("--config", config, "--workers", "2")]
    app = start_gunicorn(root, config, workers=2, threads=4)
    if front == "gunicorn":
        return [app]
    return [start_nginx(root, app.port), app]


def http_server(directory):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc)
    return proc, port


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--fronts", default="webserver,nginx+gunicorn,gunicorn")
    p.add_argument("--data", default="bench-data")
    args = p.parse_args(argv)
    root = prepare(args.data)
    for front in args.fronts.split(","):
        print(f"{front}:", flush=True)
        servers = start(front, root)
        port = servers[0].port
        try:
            paths = chunk_paths("/zarr")
            run_fetchers(port, paths, 2, 1)  # warm up every worker
            report("burst of 200 connections", *burst(port, paths[0]))
            hostiles = Hostiles(port, "/zarr/info")
            try:
                lat, errors = run_fetchers(port, paths, 8, args.seconds)
                report("8 clients with 200 idle + 50 slow connections", lat, errors, args.seconds)
            finally:
                hostiles.close()
            for n in (1, 8):
                lat, errors = run_fetchers(port, ["/zarr/cell.bin"], n, args.seconds)
                report(f"10 KB file, keep-alive, {n} client(s)", lat, errors, args.seconds)
        finally:
            for s in servers:
                s.stop()
    proc, port = http_server(os.path.join(root, "zarr"))
    try:
        print("python -m http.server:", flush=True)
        for n in (1, 8):
            lat, errors = run_fetchers(port, ["/cell.bin"], n, args.seconds)
            report(f"10 KB file, {n} client(s)", lat, errors, args.seconds)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
