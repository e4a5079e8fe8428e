"""The servers under clients that misbehave: slow, many, smuggling bodies, leaving early.

Each test is one probe an attacker or a flaky lab network would make, against
real servers on 127.0.0.1: ``precomputed-webserver`` (several workers) and the
WSGI app where the README deploys it, gunicorn behind nginx.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import threading
import time

import psutil
import pytest

from precomputed_tif import convert
from tests.helpers.servers import start_gunicorn_behind_nginx, start_webserver
from tests.helpers.stacks import make_volume, write_planes

SHAPE = (40, 64, 64)
CHUNK = "0-32_0-32_0-32"

# The front doors: precomputed-webserver, and gunicorn behind nginx (marked nginx).
FRONTS = ["web", pytest.param("proxied", marks=pytest.mark.nginx)]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    volume = make_volume(SHAPE, "uint16", seed=3)
    glob = write_planes(root / "planes", volume)
    dirs = {}
    for fmt in ("zarr", "blockfs", "tiff"):
        dirs[fmt] = str(root / fmt)
        convert(glob, dirs[fmt], format=fmt, chunk_size=(32, 32, 32), n_cores=1)
    with open(root / "zarr" / "big.bin", "wb") as f:
        f.write(os.urandom(8 << 20))
    config = root / "sources.json"
    config.write_text(json.dumps([{"name": f, "directory": d} for f, d in dirs.items()]))
    return {"root": root, "dirs": dirs, "config": str(config), "volume": volume}


@pytest.fixture(scope="module")
def web(site):
    server = start_webserver("--config", site["config"], "--workers", "2", "--header-timeout", "1",
                             "--idle-timeout", "2")
    server.collect_log()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxied(site):
    """gunicorn 2x4 behind nginx, as the README deploys it."""
    front = start_gunicorn_behind_nginx(site["root"], site["config"])
    yield front
    front.stop()


@pytest.fixture(params=FRONTS)
def server(request):
    return request.getfixturevalue(request.param)


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                block = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not block:
                break
            out += block
        return out


def timed_get(port: int, path: str, connected: list | None = None) -> float:
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        if connected is not None:
            connected.append(time.perf_counter() - t)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            block = s.recv(1 << 20)
            if not block:
                break
            data += block
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    return time.perf_counter() - t


def test_slow_clients_do_not_starve_others(server):
    """50 clients trickling their headers and 200 idle connections; a normal client is still quick."""
    idle, slow = [], []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(b"GET /zarr/info HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        times = []
        for i in range(40):
            for s in slow[i % 5::5]:
                with contextlib.suppress(OSError):
                    s.send(b"X")  # one more byte of a header that never ends
            times.append(timed_get(server.port, f"/zarr/1_1_1/{CHUNK}"))
        times.sort()
        assert times[-2] < 1.0, times[-5:]  # a starved client waited for its timeout (10 s and more)
    finally:
        for s in idle + slow:
            s.close()


def test_a_trickling_client_is_cut_off(web):
    """Headers that take longer than --header-timeout (1 s here) end the connection."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:
        s.sendall(b"GET /zarr/info HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 6:
            try:
                s.sendall(b"X-a: b\r\n")
                s.settimeout(0.2)
                if s.recv(100) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed and time.monotonic() - started < 4


def test_idle_connection_is_closed(web):
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:
        started = time.monotonic()
        assert s.recv(100) == b""
        assert 1.5 < time.monotonic() - started < 6


def test_a_burst_of_connections_is_queued_not_dropped(server):
    """200 clients connect at once: every connection is queued at once (with a short listen
    backlog the kernel drops SYNs and the client retries after 1 s), and every one is answered."""
    results, errors, connected = [], [], []

    def one():
        try:
            results.append(timed_get(server.port, "/zarr/info", connected))
        except Exception as exc:  # noqa: BLE001 - counted
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 200
    assert max(connected) < 0.9, sorted(connected)[-5:]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_body_is_never_read_as_a_request(server, method):
    smuggled = b"GET /zarr/info HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (f"{method} /zarr/info HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n").encode()
    reply = raw_exchange(server.port, request + smuggled, timeout=3)
    assert reply.count(b"HTTP/1.1 ") == 1, reply[:300]
    chunked = (f"{method} /zarr/info HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               f"{len(smuggled):x}\r\n").encode() + smuggled + b"\r\n0\r\n\r\n"
    reply = raw_exchange(server.port, chunked, timeout=3)
    assert reply.count(b"HTTP/1.1 ") <= 1, reply[:300]


def test_small_responses_on_a_keep_alive_connection_are_not_delayed(server):
    """50 requests for info on one connection: no 40 ms delayed-ACK stall per answer."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/zarr/info")
        r = conn.getresponse()
        r.read()
        assert [k.lower() for k, _ in r.getheaders()].count("access-control-allow-origin") == 1
        started = time.perf_counter()
        for _ in range(50):
            conn.request("GET", "/zarr/info")
            r = conn.getresponse()
            assert r.status == 200
            r.read()
        assert time.perf_counter() - started < 1.0
    finally:
        conn.close()


def test_a_client_leaving_mid_response_leaves_no_traceback(server, web):
    log = web.log if server is web else server.app.log
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(b"GET /zarr/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # reset, not close
        s.close()
    time.sleep(0.5)
    assert timed_get(server.port, "/zarr/info") < 1
    assert not [line for line in log if "Traceback" in line or "Error" in line], log[-20:]


@pytest.mark.parametrize("request_bytes, status", [
    (b"BREW /zarr/info HTTP/1.1\r\nHost: x\r\n\r\n", (405, 501)),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (414,)),
    (b"GET /zarr/info HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 70000 + b"\r\n\r\n", (400, 431)),
])
def test_http_errors_carry_cors(server, request_bytes, status):
    reply = raw_exchange(server.port, request_bytes, timeout=3)
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    allowed = status + (400,) if hasattr(server, "app") else status  # nginx answers most with 400
    assert int(head.split()[1]) in allowed, head
    assert head.lower().count("access-control-allow-origin: *") == 1, head


def test_a_folded_header_is_not_echoed(server):
    reply = raw_exchange(server.port, b"OPTIONS /zarr/info HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\n"
                                      b"Access-Control-Request-Method: GET\r\n"
                                      b"Access-Control-Request-Headers: range,\r\n evil: yes\r\n"
                                      b"Connection: close\r\n\r\n", timeout=3)
    head = reply.split(b"\r\n\r\n", 1)[0]
    assert b"evil" not in head


def fds(pids) -> int:
    return sum(psutil.Process(p).num_fds() for p in pids)


def start_front(kind, root, config):
    """A front door on its own sources.json, with one worker process so its descriptors can be
    counted: (server to talk to, pid of the process answering)."""
    if kind == "web":
        server = start_webserver("--config", str(config), "--workers", "1")
        server.collect_log()
        server.stops = [server]
        return server, server.proc.pid
    front = start_gunicorn_behind_nginx(root, config, workers=1)
    front.stops = [front]
    return front, children_of(front.app.proc.pid, 1)[0].pid


@pytest.mark.parametrize("kind", FRONTS)
def test_rewritten_info_and_config_edits_leak_no_descriptors(site, tmp_path, kind):
    """A store replaced while requests are in flight: no error, and its files get closed."""
    config = tmp_path / "sources.json"
    one = [{"name": "blockfs", "directory": site["dirs"]["blockfs"]}]
    two = one + [{"name": "blockfs-x", "directory": site["dirs"]["blockfs"]}]
    config.write_text(json.dumps(one))
    server, pid = start_front(kind, tmp_path, config)
    try:
        for _ in range(3):
            assert server.request(f"/blockfs/1_1_1/{CHUNK}")[0] == 200
        def data_files():  # descriptors of files (sockets to clients and proxies come and go)
            return len(psutil.Process(pid).open_files())

        before = data_files()
        info = os.path.join(site["dirs"]["blockfs"], "info")
        original = open(info, "rb").read()
        statuses, stop = [], threading.Event()

        def fetch(path):
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            while not stop.is_set():
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                statuses.append(r.status)
            conn.close()

        threads = [threading.Thread(target=fetch, args=(f"/blockfs/1_1_1/{CHUNK}",)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(150):  # info rewritten under load (a new inode every time)
                tmp = info + ".new"
                with open(tmp, "wb") as f:
                    f.write(original)
                os.replace(tmp, info)
                if i % 5 == 0:  # and a second blockfs source added to sources.json and dropped again
                    tmp = str(config) + ".new"
                    with open(tmp, "w") as f:
                        json.dump(two if i % 10 else one, f)
                    os.replace(tmp, config)
                    server.request("/blockfs-x/1_1_1/" + CHUNK)
                time.sleep(0.01)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        config.write_text(json.dumps(one))
        time.sleep(0.05)
        for _ in range(3):
            assert server.request(f"/blockfs/1_1_1/{CHUNK}")[0] == 200
        assert len(statuses) > 100 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
        assert data_files() <= before
    finally:
        for s in server.stops:
            s.stop()


def children_of(pid, n, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [c for c in psutil.Process(pid).children() if c.status() != psutil.STATUS_ZOMBIE]
        if len(kids) == n:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"{len(kids)} live workers, expected {n}")


def test_a_dead_worker_is_replaced_and_workers_die_with_the_supervisor(site):
    server = start_webserver("--directory", site["dirs"]["zarr"], "--workers", "2")
    try:
        first = children_of(server.proc.pid, 2)
        os.kill(first[0].pid, signal.SIGSEGV)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = children_of(server.proc.pid, 2)
            if first[0].pid not in [k.pid for k in kids]:
                break
            time.sleep(0.05)
        kids = children_of(server.proc.pid, 2)
        assert first[0].pid not in [k.pid for k in kids]
        assert not [c for c in psutil.Process(server.proc.pid).children() if c.status() == psutil.STATUS_ZOMBIE]
        for _ in range(10):
            assert server.request("/info")[0] == 200
        server.proc.kill()  # SIGKILL: the supervisor cannot clean up
        server.proc.wait()
        gone, alive = psutil.wait_procs(kids, timeout=10)
        assert not alive
        with socket.socket() as s:  # nobody holds the port any more
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", server.port))
    finally:
        server.stop()


@pytest.mark.parametrize("kind", FRONTS)
def test_fifos_and_symlinks_out_are_refused(site, tmp_path, kind):
    dest = tmp_path / "ds"
    shutil.copytree(site["dirs"]["tiff"], dest)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"not yours" * 100)
    os.mkfifo(dest / "pipe.bin")
    chunk = dest / "1_1_1" / f"{CHUNK}.tiff"
    shutil.copy(chunk, outside / chunk.name)
    chunk.unlink()
    os.symlink(outside / chunk.name, chunk)  # a chunk leading out of the dataset
    os.unlink(dest / "1_1_1" / "0-32_0-32_32-40.tiff")
    os.mkfifo(dest / "1_1_1" / "0-32_0-32_32-40.tiff")  # a FIFO where a chunk should be
    shutil.move(dest / "2_2_2", outside / "2_2_2")
    os.symlink(outside / "2_2_2", dest / "2_2_2")  # a level directory leading out
    os.symlink(outside / "secret.bin", dest / "secret.bin")
    config = tmp_path / "sources.json"
    config.write_text(json.dumps([{"name": "ds", "directory": str(dest)}]))
    server, _ = start_front(kind, tmp_path, config)
    try:
        started = time.monotonic()
        for path in ("/pipe.bin", "/secret.bin", f"/1_1_1/{CHUNK}", "/1_1_1/0-32_0-32_32-40",
                     "/2_2_2/0-32_0-32_0-20", "/2_2_2/info"):
            status, _, body = server.request("/ds" + path)
            assert status in (404, 500), (path, status)
            assert b"not yours" not in body and str(tmp_path).encode() not in body
        assert time.monotonic() - started < 5
        assert server.request("/ds/1_1_1/32-64_0-32_0-32")[0] == 200
    finally:
        for s in server.stops:
            s.stop()


def test_names_are_encoded_in_links(site, tmp_path):
    config = tmp_path / "sources.json"
    config.write_text(json.dumps([{"name": "expt 1#a?b", "directory": site["dirs"]["zarr"]}]))
    server = start_webserver("--config", str(config), "--workers", "1")
    try:
        assert "/expt%201%23a%3Fb\n" in "".join(server.printed)
        status, _, body = server.request("/")
        assert b'href="expt%201%23a%3Fb/info"' in body
        assert server.request("/expt%201%23a%3Fb/info")[0] == 200
    finally:
        server.stop()


@pytest.mark.parametrize("kind", FRONTS)
def test_a_deeply_nested_config_keeps_the_last_good_one(site, tmp_path, kind):
    config = tmp_path / "sources.json"
    good = json.dumps([{"name": "zarr", "directory": site["dirs"]["zarr"]}])
    config.write_text(good)
    server, _ = start_front(kind, tmp_path, config)
    try:
        assert server.request("/zarr/info")[0] == 200
        config.write_text("[" * 100000 + "]" * 100000)
        time.sleep(0.05)
        assert server.request("/zarr/info")[0] == 200
        assert server.request("/")[0] == 200
        nested = tmp_path / "nested"
        nested.mkdir()
        (nested / "info").write_text("[" * 100000 + "]" * 100000)
        config.write_text(json.dumps([{"name": "zarr", "directory": site["dirs"]["zarr"]},
                                      {"name": "nested", "directory": str(nested)}]))
        time.sleep(0.05)
        assert server.request("/nested/info")[0] == 404
        assert server.request("/zarr/info")[0] == 200
        assert "Traceback" not in "\n".join(server.log)
    finally:
        for s in server.stops:
            s.stop()
