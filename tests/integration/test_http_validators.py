"""HTTP validators and conditional requests, in both front doors, with nginx as the reference.

Real servers on 127.0.0.1 answer real requests: ``precomputed-webserver`` (the http.server
door), the WSGI app under gunicorn and under Apache httpd with mod_wsgi (the WSGI door), and
a plain nginx serving the same directory as static files. Files passed through (an OME-TIFF,
an OME-Zarr shard) must answer every conditional request with the status nginx gives; chunks
the servers translate (tiff, zarr, blockfs, OME-Zarr) carry validators too; a rewritten file
or chunk gets new ones.

What each layer does with an HTTP/1.1 request that has no ``Host``: nginx and Apache httpd
answer 400 themselves (Apache's own page, without CORS: the app is never called); gunicorn
passes it to the app, which answers 400 with CORS; ``precomputed-webserver`` answers 400 with
CORS. A duplicated ``Host``: nginx, Apache and gunicorn refuse it themselves (400),
``precomputed-webserver`` too.

Which code the WSGI door runs: gunicorn and mod_wsgi-express's Apache daemon processes put
their working directory (the checkout pytest runs in) first on ``sys.path`` and inherit
PYTHONPATH, so both import the checkout's ``precomputed_tif``, as ``precomputed-webserver``
does through PYTHONPATH or the editable install; no ``--python-path`` is needed.
"""

import email.utils
import json
import os
import shutil
import socket
import stat
import tempfile
import time

import numpy as np
import pytest

from precomputed_tif import convert
from precomputed_tif.formats.volume import Volume
from precomputed_tif.geometry import Box
from tests.helpers.servers import (
    apache_problem,
    require_nginx,
    start_apache,
    start_gunicorn,
    start_static_nginx,
    start_webserver,
)
from tests.helpers.stacks import make_volume, write_planes

SHAPE = (19, 37, 45)  # z, y, x
CHUNK = (16, 16, 16)
TRANSLATED = ["tiff", "zarr", "blockfs", "ome-zarr"]
DOORS = ["webserver", "gunicorn", "apache"]
# The same as test parameters: the Apache door needs Apache httpd (marked apache).
DOOR_PARAMS = [pytest.param(d, marks=pytest.mark.apache) if d == "apache" else d for d in DOORS]
AGE = 3600  # seconds: files are made to look this old, so a second's granularity cannot blur a rewrite
DAY = 86400

pytestmark = pytest.mark.nginx  # every test compares with, or talks to, the nginx the site starts


@pytest.fixture(scope="module")
def site():
    require_nginx()  # the reference every answer is compared with
    root = tempfile.mkdtemp(prefix="pt-validators-")
    os.chmod(root, 0o755)  # Apache's workers run as nobody
    servers = {}
    try:
        volume = make_volume(SHAPE, "uint16", seed=17)
        glob = write_planes(os.path.join(root, "planes"), volume)
        for fmt in TRANSLATED:
            convert(glob, os.path.join(root, fmt), format=fmt, chunk_size=CHUNK, n_cores=1)
        convert(glob, os.path.join(root, "tif"), format="ome-tiff", tile_size=32, n_cores=1)
        ome_tiff = next(n for n in os.listdir(os.path.join(root, "tif")) if n.endswith(".ome.tif"))
        for front in DOORS + ["nginx"]:  # a file per front that its test rewrites
            with open(os.path.join(root, "tif", f"rewrite-{front}.bin"), "wb") as f:
                f.write(os.urandom(5000))
        os.makedirs(os.path.join(root, "apache-site"))
        config = os.path.join(root, "sources.json")
        with open(config, "w") as f:
            json.dump([{"name": n, "directory": os.path.join(root, n), "gzip": n == "zarr"}
                       for n in TRANSLATED + ["tif"]], f)
        old = time.time() - AGE
        for base, dirs, files in os.walk(root):
            for n in dirs + files:
                p = os.path.join(base, n)
                os.chmod(p, os.stat(p).st_mode | stat.S_IROTH | (stat.S_IXOTH if os.path.isdir(p) else 0))
                os.utime(p, (old, old))
        servers["webserver"] = start_webserver("--config", config, "--workers", "1")
        servers["gunicorn"] = start_gunicorn(root, config, workers=1)
        servers["nginx"] = start_static_nginx(root, root)
        yield {"root": root, "volume": volume, "servers": servers, "config": config,
               "files": [f"/tif/{ome_tiff}", "/ome-zarr/1/c/0/0/0"]}
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(root, ignore_errors=True)


def front_server(site, front):
    """The running server ``front``; Apache is started on first use (or skipped without it)."""
    servers = site["servers"]
    if front == "apache" and "apache" not in servers:
        problem = apache_problem()
        if problem:
            # CI sets REQUIRE_APACHE: there a missing Apache is a failure, not a skip.
            (pytest.fail if os.environ.get("REQUIRE_APACHE") else pytest.skip)(problem)
        servers["apache"] = start_apache(os.path.join(site["root"], "apache-site"), site["config"], processes=1)
    return servers[front]


def file_bytes(site, url_path) -> bytes:
    with open(os.path.join(site["root"], *url_path.strip("/").split("/")), "rb") as f:
        return f.read()


def shifted(http_date: str, seconds: int) -> str:
    return email.utils.formatdate(email.utils.parsedate_to_datetime(http_date).timestamp() + seconds, usegmt=True)


def conditional_statuses(server, path):
    """The status of each kind of conditional request for one file, each made with the
    validators that server itself gave; and the server's first answer."""
    status, headers, body = server.request(path)
    assert status == 200
    etag, modified = headers["etag"], headers["last-modified"]
    weak = etag if etag.startswith("W/") else "W/" + etag
    cases = {
        "plain": {},
        "if-none-match current": {"If-None-Match": etag},
        "if-none-match weak": {"If-None-Match": weak},
        "if-none-match list": {"If-None-Match": f'"other", {etag}'},
        "if-none-match *": {"If-None-Match": "*"},
        "if-none-match stale": {"If-None-Match": '"stale"'},
        "if-none-match stale beats if-modified-since": {"If-None-Match": '"stale"', "If-Modified-Since": modified},
        "if-modified-since last-modified": {"If-Modified-Since": modified},
        "if-modified-since a day before": {"If-Modified-Since": shifted(modified, -DAY)},
        "if-modified-since not a date": {"If-Modified-Since": "yesterday"},
        "if-none-match with range": {"If-None-Match": etag, "Range": "bytes=0-9"},
        "if-range current etag": {"If-Range": etag, "Range": "bytes=10-19"},
        "if-range stale etag": {"If-Range": '"stale"', "Range": "bytes=10-19"},
        "if-range weak etag": {"If-Range": weak, "Range": "bytes=10-19"},
        "if-range last-modified": {"If-Range": modified, "Range": "bytes=10-19"},
        "if-range a day before": {"If-Range": shifted(modified, -DAY), "Range": "bytes=10-19"},
        "if-range stale, range unsatisfiable": {"If-Range": '"stale"', "Range": "bytes=99999999-"},
        "if-match current": {"If-Match": etag},
        "if-match stale": {"If-Match": '"stale"'},
        "if-unmodified-since a day before": {"If-Unmodified-Since": shifted(modified, -DAY)},
    }
    out = {}
    for name, request_headers in cases.items():
        out[name] = server.request(path, headers=request_headers)
    out["head if-none-match current"] = server.request(path, "HEAD", {"If-None-Match": etag})
    return out, (headers, body)


EXPECTED = {"plain": 200, "if-none-match current": 304, "if-none-match weak": 304, "if-none-match list": 304,
            "if-none-match *": 304, "if-none-match stale": 200, "if-none-match stale beats if-modified-since": 200,
            "if-modified-since last-modified": 304, "if-modified-since a day before": 200,
            "if-modified-since not a date": 200, "if-none-match with range": 304, "if-range current etag": 206,
            "if-range stale etag": 200, "if-range weak etag": 200, "if-range last-modified": 206,
            "if-range a day before": 200, "if-range stale, range unsatisfiable": 200, "if-match current": 200,
            "if-match stale": 412, "if-unmodified-since a day before": 412, "head if-none-match current": 304}


@pytest.mark.parametrize("index", [0, 1], ids=["ome-tiff", "ome-zarr-shard"])
@pytest.mark.parametrize("door", DOOR_PARAMS)
def test_passed_through_files_answer_conditional_requests_as_nginx_does(site, door, index):
    path = site["files"][index]
    whole = file_bytes(site, path)
    server = front_server(site, door)
    ours, (headers, body) = conditional_statuses(server, path)
    theirs, _ = conditional_statuses(site["servers"]["nginx"], path)
    assert {k: r[0] for k, r in theirs.items()} == EXPECTED  # nginx, the reference
    assert {k: r[0] for k, r in ours.items()} == EXPECTED
    assert body == whole
    assert headers["etag"].startswith('"') and headers["access-control-allow-origin"] == "*"
    assert email.utils.parsedate_to_datetime(headers["last-modified"]).timestamp() == int(os.stat(
        os.path.join(site["root"], *path.strip("/").split("/"))).st_mtime)
    assert "ETag" in headers["access-control-expose-headers"]
    for name, (status, h, b) in ours.items():
        assert h["access-control-allow-origin"] == "*", name
        if status == 304:
            assert b == b"" and h["etag"] == headers["etag"] and h["last-modified"] == headers["last-modified"]
            assert "content-range" not in h, name
        elif status == 206:
            assert b == whole[10:20] and h["content-range"] == f"bytes 10-19/{len(whole)}", name
        elif status == 200:
            assert b == whole and "content-range" not in h, name
    # RFC 9110: not modified since a later date is also a 304 (nginx by default wants the exact date).
    later = shifted(headers["last-modified"], DAY)
    assert server.request(path, headers={"If-Modified-Since": later})[0] == 304


def chunk_boxes():
    z, y, x = SHAPE
    return [Box(x0, min(x0 + 16, x), y0, min(y0 + 16, y), z0, min(z0 + 16, z))
            for z0 in range(0, z, 16) for y0 in range(0, y, 16) for x0 in range(0, x, 16)]


def chunk_url(fmt, box):
    return f"/{fmt}/{'0' if fmt == 'ome-zarr' else '1_1_1'}/{box.name}"


@pytest.mark.parametrize("fmt", TRANSLATED)
@pytest.mark.parametrize("door", DOOR_PARAMS)
def test_translated_chunks_carry_validators(site, door, fmt):
    server = front_server(site, door)
    box = chunk_boxes()[-1]  # the far corner: an edge chunk of every axis
    url = chunk_url(fmt, box)
    status, headers, body = server.request(url)
    assert status == 200
    assert body == np.ascontiguousarray(site["volume"][box.slices]).astype("<u2").tobytes()
    etag, modified = headers["etag"], headers["last-modified"]
    assert headers["cache-control"] == "no-cache"
    for request_headers in ({"If-None-Match": etag}, {"If-None-Match": "W/" + etag},
                            {"If-Modified-Since": modified}):
        status, h, b = server.request(url, headers=request_headers)
        assert status == 304 and b == b"", request_headers
        assert h["etag"] == etag and h["last-modified"] == modified and h["access-control-allow-origin"] == "*"
    assert server.request(url, "HEAD", {"If-None-Match": etag})[0] == 304
    status, _, b = server.request(url, headers={"If-None-Match": '"stale"'})
    assert status == 200 and b == body
    assert server.request(url, headers={"If-Match": '"stale"'})[0] == 412
    # Every chunk has its own tag; the info too.
    tags = {server.request(chunk_url(fmt, b))[1]["etag"] for b in chunk_boxes()}
    assert len(tags) == len(chunk_boxes())
    status, h, _ = server.request(f"/{fmt}/info")
    assert status == 200 and h["etag"] not in tags
    assert server.request(f"/{fmt}/info", headers={"If-None-Match": h["etag"]})[0] == 304


def test_every_front_door_tags_a_chunk_alike(site):
    """Validators come from the files, not from a process: every server process, of either
    door, gives the same ones (a cache behind a load balancer keeps its copies)."""
    for fmt in TRANSLATED:
        url = chunk_url(fmt, chunk_boxes()[3])
        answers = {door: front_server(site, door).request(url)[1] for door in ("webserver", "gunicorn")}
        assert len({(h["etag"], h["last-modified"]) for h in answers.values()}) == 1, fmt


@pytest.mark.parametrize("door", ["webserver", "gunicorn"])
def test_a_gzipped_chunk_has_its_own_tag(site, door):
    server = front_server(site, door)
    url = chunk_url("zarr", chunk_boxes()[0])
    _, plain, _ = server.request(url)
    _, zipped, _ = server.request(url, headers={"Accept-Encoding": "gzip"})
    assert zipped["content-encoding"] == "gzip" and zipped["etag"] != plain["etag"]
    status, h, _ = server.request(url, headers={"Accept-Encoding": "gzip", "If-None-Match": plain["etag"]})
    assert status == 200
    status, h, _ = server.request(url, headers={"Accept-Encoding": "gzip", "If-None-Match": zipped["etag"]})
    assert status == 304 and h["vary"] == "Accept-Encoding"


def rewrite_chunk(directory, key, box, array):
    """Store new data for one chunk with the format's own writer (an OME-Zarr shard is
    written whole: the other chunks of it keep their data)."""
    store = Volume(directory).store
    if store.format == "ome-zarr":
        (sx, sy, sz), (cx, cy, cz), (nx, ny, nz) = store.shard_size(key), store.chunk_size(key), store.size(key)
        ox, oy, oz = box.x0 // sx * sx, box.y0 // sy * sy, box.z0 // sz * sz
        chunks = [Box(x, min(x + cx, nx), y, min(y + cy, ny), z, min(z + cz, nz))
                  for z in range(oz, min(oz + sz, nz), cz) for y in range(oy, min(oy + sy, ny), cy)
                  for x in range(ox, min(ox + sx, nx), cx)]
        data = {b: array if b == box else store.read_chunk(key, b) for b in chunks}
        with store.task() as writer:
            for b, a in data.items():
                writer.write_chunk(key, b, a)
    else:
        store.write_chunk(key, box, array)
        store.finish()


@pytest.mark.parametrize("fmt", TRANSLATED)
@pytest.mark.parametrize("door", DOOR_PARAMS)
def test_a_rewritten_chunk_gets_new_validators(site, door, fmt):
    server = front_server(site, door)
    box = chunk_boxes()[DOORS.index(door)]  # each door rewrites its own chunk
    url = chunk_url(fmt, box)
    status, before, _ = server.request(url)
    assert status == 200
    new = np.random.default_rng(DOORS.index(door)).integers(0, 65535, box.shape, dtype=np.uint16, endpoint=True)
    key = "0" if fmt == "ome-zarr" else "1_1_1"
    rewrite_chunk(os.path.join(site["root"], fmt), key, box, new)
    status, after, body = server.request(url, headers={"If-None-Match": before["etag"]})
    assert status == 200 and body == new.astype("<u2").tobytes() and after["etag"] != before["etag"]
    # A date is sent once a second has passed since the files changed: a chunk whose blockfs
    # directory or OME-Zarr shard another test has just written may have none yet.
    if fmt in ("tiff", "zarr"):
        assert "last-modified" in before  # its own file, written an hour "ago"
    if "last-modified" in before:
        status, _, body = server.request(url, headers={"If-Modified-Since": before["last-modified"]})
        assert status == 200 and body == new.astype("<u2").tobytes()
    assert "last-modified" not in after  # written just now
    assert server.request(url, headers={"If-None-Match": after["etag"]})[0] == 304


def rewrite(path, data, mtime_ns=None):
    """Replace a file the way converters do: a new file renamed over the old one."""
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.chmod(path + ".tmp", 0o644)
    if mtime_ns is not None:
        os.utime(path + ".tmp", ns=(mtime_ns, mtime_ns))
    os.replace(path + ".tmp", path)


@pytest.mark.parametrize("front", DOOR_PARAMS + ["nginx"])
def test_a_rewritten_file_gets_new_validators(site, front):
    server = front_server(site, front)
    url = f"/tif/rewrite-{front}.bin"
    path = os.path.join(site["root"], "tif", f"rewrite-{front}.bin")
    _, before, old = server.request(url)
    new = os.urandom(7001)
    rewrite(path, new)
    status, after, body = server.request(url, headers={"If-None-Match": before["etag"]})
    assert status == 200 and body == new and after["etag"] != before["etag"]
    # A resumed download whose first part came from the old file gets the whole new one.
    for validator in (before["etag"], before["last-modified"]):
        status, h, body = server.request(url, headers={"Range": f"bytes={len(old) - 10}-", "If-Range": validator})
        assert status == 200 and body == new and "content-range" not in h
    status, _, body = server.request(url, headers={"Range": "bytes=7000-", "If-Range": after["etag"]})
    assert status == 206 and body == new[7000:]
    if front == "nginx":
        return
    # Same size, modification time set back to the nanosecond (rsync -t, cp -p): nginx's tag
    # ("<mtime>-<size>") would stay; ours changes.
    same_size = os.urandom(len(new))
    rewrite(path, same_size, os.stat(path).st_mtime_ns)
    status, h, body = server.request(url, headers={"If-None-Match": after["etag"]})
    assert status == 200 and body == same_size and h["etag"] != after["etag"]
    # Written with a modification time ahead of this clock (a file server whose clock runs
    # ahead): no date is sent or trusted until it is a second in the past (nginx sends and
    # trusts it, and would answer these with 304 and 206).
    future = time.time_ns() + 30 * 10**9
    rewrite(path, new, future)
    status, h, _ = server.request(url)
    assert status == 200 and "last-modified" not in h
    date = email.utils.formatdate(future // 10**9, usegmt=True)
    assert server.request(url, headers={"If-Modified-Since": date})[0] == 200
    status, _, body = server.request(url, headers={"Range": "bytes=0-9", "If-Range": date})
    assert status == 200 and body == new


def raw_exchange(server, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            block = s.recv(65536)
            if not block:
                return out
            out += block


HOST_CASES = {"no host": (b"GET %s HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
              "two hosts": (b"GET %s HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400),
              "HTTP/1.0, no host": (b"GET %s HTTP/1.0\r\n\r\n", 200),
              "one host": (b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200)}
# What the server in front refuses before the app is called (its own page, without CORS).
REFUSED_BEFORE_THE_APP = {"webserver": set(), "gunicorn": {"two hosts"}, "apache": {"no host", "two hosts"},
                          "nginx": {"no host", "two hosts"}}


@pytest.mark.parametrize("front", DOOR_PARAMS + ["nginx"])
def test_http11_without_host_is_refused(site, front):
    server = front_server(site, front)
    path = (server.prefix + site["files"][0]).encode()
    for case, (request, expected) in HOST_CASES.items():
        reply = raw_exchange(server, request % path)
        head, _, body = reply.partition(b"\r\n\r\n")
        head = head.decode("latin-1")
        assert int(head.split()[1]) == expected, (front, case, head)
        if front != "nginx" and case not in REFUSED_BEFORE_THE_APP[front]:
            assert "access-control-allow-origin: *" in head.lower(), (front, case, head)
            if expected == 400:
                assert body == b"400 Bad Request\n", (front, case, body)


@pytest.mark.parametrize("fmt", ["tiff", "zarr"])
def test_rewriting_the_same_info_keeps_the_chunks_tags(site, fmt):
    """A rerun of a finished conversion writes info again, byte for byte the same: clients must not
    fetch every chunk again for that."""
    server = front_server(site, "webserver")
    url = chunk_url(fmt, chunk_boxes()[-1])
    _, before, _ = server.request(url)
    info = os.path.join(site["root"], fmt, "info")
    with open(info, "rb") as f:
        rewrite(info, f.read())  # a new file (a new inode) with the same bytes
    status, after, _ = server.request(url, headers={"If-None-Match": before["etag"]})
    assert status == 304 and after["etag"] == before["etag"]
