"""Both front doors, started for real and spoken to over HTTP."""

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from precomputed_tif import convert
from precomputed_tif.geometry import Geometry
from tests.helpers import DATA
from tests.helpers.servers import apache_problem, start_apache, start_gunicorn, start_webserver
from tests.helpers.stacks import make_volume, reference_pyramid, write_planes

FORMATS = ["tiff", "zarr", "blockfs"]
SHAPE = (45, 70, 100)
CHUNK = (32, 32, 32)
HOSTILE = [
    "/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/..%2f..%2f..%2fetc%2fpasswd", "//etc/passwd", "/%2Fetc%2Fpasswd", "/1_1_1/../../secret.txt",
    "/.precomputed-tif.json", "/%00/info", "/%ff%fe/info", "/1_1_1/..%5c..%5csecret.txt",
    "/%252e%252e/%252e%252e/etc/passwd",
]


class Data:
    """Datasets on disk, readable by any user (Apache's workers do not run as us)."""

    def __init__(self, root):
        self.root = root
        self.volume = make_volume(SHAPE, "uint16", seed=21)
        glob = write_planes(os.path.join(root, "planes"), self.volume)
        g = Geometry((SHAPE[2], SHAPE[1], SHAPE[0]), CHUNK)
        self.levels = reference_pyramid(self.volume, [lv.step for lv in g.levels], False)
        self.keys = [lv.key for lv in g.levels]
        self.dirs = {}
        for fmt in FORMATS:
            self.dirs[fmt] = os.path.join(root, fmt)
            convert(glob, self.dirs[fmt], format=fmt, chunk_size=CHUNK, n_cores=1)
        # Another dataset whose name shares a prefix with the first.
        self.other = make_volume(SHAPE, "uint16", seed=22)
        convert(write_planes(os.path.join(root, "planes2"), self.other), os.path.join(root, "other"),
                format="zarr", chunk_size=CHUNK, n_cores=1)
        # A static file, a file outside every dataset, and a symlink leading to it.
        os.makedirs(os.path.join(root, "tiff", "extra"))
        with open(os.path.join(root, "tiff", "extra", "blob.bin"), "wb") as f:
            f.write(bytes(range(256)) * 40)
        with open(os.path.join(root, "secret.txt"), "w") as f:
            f.write("do not serve me")
        os.symlink(os.path.join(root, "secret.txt"), os.path.join(root, "tiff", "extra", "leak.txt"))
        os.symlink(root, os.path.join(root, "tiff", "extra", "up"))
        # The original package's blockfs volume as level 1_1_1 of a dataset.
        self.fixture = os.path.join(root, "fixture")
        shutil.copytree(os.path.join(DATA, "blockfs-1.0.0"), os.path.join(self.fixture, "1_1_1"))
        with open(os.path.join(self.fixture, "info"), "w") as f:
            json.dump({"@type": "neuroglancer_multiscale_volume", "type": "image", "data_type": "uint16",
                       "num_channels": 1, "scales": [{
                           "key": "1_1_1", "size": [100, 70, 45], "resolution": [1800, 1800, 2000],
                           "voxel_offset": [0, 0, 0], "chunk_sizes": [[32, 32, 32]], "encoding": "raw"}]}, f)
        self.fixture_expected = np.load(os.path.join(self.fixture, "1_1_1", "expected_zyx.npy"))
        # A point annotation layer, served as plain files.
        from precomputed_tif.annotations import PointSet, write_points

        pts = np.random.default_rng(5).random((500, 3)) * [100, 70, 45]
        write_points(PointSet(pts, np.zeros(3), np.array([100.0, 70.0, 45.0])), os.path.join(root, "points"),
                     (1.8, 1.8, 2.0), sharded=True, limit=50)
        self.config = os.path.join(root, "sources.json")
        self.write_config()
        for base, dirs, files in os.walk(root):
            for n in dirs + files:
                p = os.path.join(base, n)
                if not os.path.islink(p):
                    os.chmod(p, os.stat(p).st_mode | stat.S_IROTH | (stat.S_IXOTH if os.path.isdir(p) else 0))

    def sources(self):
        return [{"name": "expt1", "directory": self.dirs["tiff"], "format": "tiff"},
                {"name": "expt1-dapi", "directory": os.path.join(self.root, "other"), "format": "zarr"},
                {"name": "blockfs", "directory": self.dirs["blockfs"]},
                {"name": "zarr", "directory": self.dirs["zarr"], "gzip": True},
                {"name": "fixture", "directory": self.fixture, "format": "blockfs"},
                {"name": "points", "directory": os.path.join(self.root, "points")}]

    def write_config(self, sources=None):
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.sources() if sources is None else sources, f)
        os.replace(tmp, self.config)

    def expected_chunk(self, level, x0, x1, y0, y1, z0, z1, volume=None):
        levels = self.levels if volume is None else volume
        return np.ascontiguousarray(levels[level][z0:z1, y0:y1, x0:x1]).astype("<u2").tobytes()

    def chunk_names(self, level):
        z, y, x = self.levels[level].shape
        for z0 in range(0, z, 32):
            for y0 in range(0, y, 32):
                for x0 in range(0, x, 32):
                    yield x0, min(x0 + 32, x), y0, min(y0 + 32, y), z0, min(z0 + 32, z)


@pytest.fixture(scope="module")
def data():
    root = tempfile.mkdtemp(prefix="pt-serve-")
    os.chmod(root, 0o755)
    try:
        yield Data(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=FORMATS)
def webserver(request, data):
    server = start_webserver("--directory", data.dirs[request.param])
    server.format = request.param
    yield server
    server.stop()


def check_every_chunk(server, data, prefix=""):
    status, headers, body = server.request(prefix + "/info")
    assert status == 200 and headers["content-type"] == "application/json"
    info = json.loads(body)
    assert [s["key"] for s in info["scales"]] == data.keys
    for level, key in enumerate(data.keys):
        for box in data.chunk_names(level):
            name = "{}-{}_{}-{}_{}-{}".format(*box)
            status, headers, body = server.request(f"{prefix}/{key}/{name}")
            assert status == 200, (key, name, status)
            assert headers["access-control-allow-origin"] == "*"
            assert headers["content-type"] == "application/octet-stream"
            assert int(headers["content-length"]) == len(body)
            assert body == data.expected_chunk(level, *box), (key, name)


def read_with_tensorstore(url, scale_index):
    import tensorstore as ts

    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "http", "base_url": url},
                     "scale_index": scale_index}, read=True).result()
    return np.asarray(store.read().result())[..., 0].transpose(2, 1, 0)  # x,y,z,c -> z,y,x


def test_every_chunk_of_every_scale(webserver, data):
    check_every_chunk(webserver, data)


def test_tensorstore_reads_every_scale(webserver, data):
    for i, ref in enumerate(data.levels):
        np.testing.assert_array_equal(read_with_tensorstore(webserver.url + "/", i), ref)


def test_cors_head_options(webserver, data):
    status, headers, body = webserver.request("/2_2_2/0-32_0-32_0-23", "HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(32 * 32 * 23 * 2)
    status, headers, body = webserver.request("/info", "OPTIONS", {
        "Origin": "http://example.org", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range"})
    assert status in (200, 204)
    assert headers["access-control-allow-origin"] == "*"
    assert "GET" in headers["access-control-allow-methods"] and "HEAD" in headers["access-control-allow-methods"]
    assert "range" in headers["access-control-allow-headers"].lower()
    status, headers, _ = webserver.request("/nothing/here")
    assert status == 404 and headers["access-control-allow-origin"] == "*"
    status, headers, _ = webserver.request("/info", "POST")
    assert status == 405 and headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("name", [
    "0-32_0-32_0-31", "1-33_0-32_0-32", "96-128_64-70_32-45", "128-160_0-32_0-32", "0-32_0-32",
    "a-b_c-d_e-f", "0-32_0-32_0-32.tiff", "-32-0_0-32_0-32", "0-32_0-32_0-32_0-32",
    "99999999999999999999-100000000000000000000_0-32_0-32"])
def test_not_a_chunk_is_404(webserver, name):
    status, headers, body = webserver.request(f"/1_1_1/{name}")
    assert status == 404, name
    assert headers["access-control-allow-origin"] == "*"


def test_hostile_paths_are_refused(webserver, data):
    for path in HOSTILE + ["/extra/leak.txt", "/extra/up/secret.txt", "/extra/up/zarr/info"]:
        status, _, body = webserver.request(path)
        assert status in (400, 404), path
        assert b"do not serve" not in body and b"root:" not in body
        assert data.root.encode() not in body and b"Traceback" not in body


def test_range_requests_on_static_files(data):
    server = start_webserver("--directory", data.dirs["tiff"], "--gzip")
    try:
        blob = bytes(range(256)) * 40
        status, headers, body = server.request("/extra/blob.bin")
        assert status == 200 and body == blob and headers["accept-ranges"] == "bytes"
        status, headers, body = server.request("/extra/blob.bin", headers={"Range": "bytes=10-19",
                                                                          "Accept-Encoding": "gzip"})
        assert status == 206 and body == blob[10:20]
        assert headers["content-range"] == f"bytes 10-19/{len(blob)}" and "content-encoding" not in headers
        status, headers, body = server.request("/extra/blob.bin", headers={"Range": "bytes=-5"})
        assert status == 206 and body == blob[-5:]
        status, headers, body = server.request("/extra/blob.bin", headers={"Range": "bytes=10000-"})
        assert status == 206 and body == blob[10000:]
        status, headers, body = server.request("/extra/blob.bin", headers={"Range": "bytes=20000-20001"})
        assert status == 416 and headers["content-range"] == f"bytes */{len(blob)}"
        status, headers, body = server.request("/extra/blob.bin", "HEAD", headers={"Range": "bytes=0-0"})
        assert status == 206 and body == b"" and headers["content-length"] == "1"
    finally:
        server.stop()


def test_gzip_when_enabled_and_accepted(data):
    server = start_webserver("--directory", data.dirs["zarr"], "--gzip")
    try:
        status, headers, body = server.request("/1_1_1/0-32_0-32_0-32", headers={"Accept-Encoding": "gzip"})
        assert status == 200 and headers["content-encoding"] == "gzip"
        assert int(headers["content-length"]) == len(body)
        assert gzip.decompress(body) == data.expected_chunk(0, 0, 32, 0, 32, 0, 32)
        status, headers, body = server.request("/1_1_1/0-32_0-32_0-32")
        assert status == 200 and "content-encoding" not in headers
        assert body == data.expected_chunk(0, 0, 32, 0, 32, 0, 32)
    finally:
        server.stop()


def test_original_blockfs_fixture_served_with_unwritten_block_as_zeros(data):
    server = start_webserver("--directory", data.fixture)
    try:
        status, _, body = server.request("/1_1_1/64-96_32-64_0-32")
        assert status == 200 and body == bytes(32 * 32 * 32 * 2)
        np.testing.assert_array_equal(read_with_tensorstore(server.url + "/", 0), data.fixture_expected)
    finally:
        server.stop()


def test_raw_format_serves_files_as_they_are(data, tmp_path):
    import tensorstore as ts

    raw = os.path.join(data.root, "raw")
    if not os.path.exists(raw):
        store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": raw},
                         "multiscale_metadata": {"data_type": "uint16", "num_channels": 1, "type": "image"},
                         "scale_metadata": {"size": [100, 70, 45], "resolution": [1, 1, 1], "encoding": "raw",
                                            "chunk_size": [32, 32, 32]}}, create=True).result()
        store[...] = data.volume.transpose(2, 1, 0)[..., None]
    server = start_webserver("--directory", raw, "--format", "raw")
    try:
        np.testing.assert_array_equal(read_with_tensorstore(server.url + "/", 0), data.volume)
    finally:
        server.stop()


def test_several_worker_processes_stop_together(data):
    import psutil

    server = start_webserver("--directory", data.dirs["zarr"], "--workers", "3")
    try:
        deadline = time.monotonic() + 10
        while len(psutil.Process(server.proc.pid).children()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        children = psutil.Process(server.proc.pid).children()
        assert len(children) == 3  # the first process supervises the three workers
        assert server.request("/info")[0] == 200
    finally:
        server.stop()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def test_config_mode_prefix_names_and_index(data):
    server = start_webserver("--config", data.config)
    try:
        printed = "".join(server.printed)
        assert f"precomputed://http://127.0.0.1:{server.port}/expt1\n" in printed
        assert f"precomputed://http://127.0.0.1:{server.port}/expt1-dapi\n" in printed
        check_config_catalog(server, data)
    finally:
        server.stop()


def check_config_catalog(server, data):
    status, headers, body = server.request("/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    for name in ("expt1", "expt1-dapi", "blockfs", "zarr", "fixture"):
        assert f'href="{name}/info"'.encode() in body
    _, _, a = server.request("/expt1/1_1_1/0-32_0-32_0-32")
    _, _, b = server.request("/expt1-dapi/1_1_1/0-32_0-32_0-32")
    assert a == data.expected_chunk(0, 0, 32, 0, 32, 0, 32)
    assert b == np.ascontiguousarray(data.other[0:32, 0:32, 0:32]).astype("<u2").tobytes()
    status, _, body = server.request("/fixture/1_1_1/64-96_32-64_0-32")
    assert status == 200 and body == bytes(32 * 32 * 32 * 2)
    status, headers, body = server.request("/zarr/2_2_2/32-50_0-32_0-23", headers={"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip"
    assert gzip.decompress(body) == data.expected_chunk(1, 32, 50, 0, 32, 0, 23)
    for name in ("expt1", "expt1-dapi", "blockfs"):
        for path in HOSTILE:
            status, _, body = server.request(f"/{name}{path}")
            assert status in (400, 404), (name, path)
            assert b"do not serve" not in body and data.root.encode() not in body
    status, headers, body = server.request("/points/info")
    assert status == 200 and json.loads(body)["@type"] == "neuroglancer_annotations_v1"
    shard = os.path.join(data.root, "points", "spatial1", "0.shard")
    status, headers, body = server.request("/points/spatial1/0.shard", headers={"Range": "bytes=16-31"})
    assert status == 206 and body == open(shard, "rb").read()[16:32]
    assert headers["access-control-allow-origin"] == "*"
    assert server.request("/expt2/info")[0] == 404
    assert server.request("/expt1-da/info")[0] == 404


def check_config_reload(server, data):
    try:
        sources = data.sources() + [{"name": "late", "directory": data.dirs["zarr"], "format": "zarr"}]
        data.write_config(sources)
        assert wait_for_status(server, "/late/info", 200)
        with open(data.config, "w") as f:
            f.write("[{broken json")
        time.sleep(0.05)
        assert server.request("/late/info")[0] == 200  # last good configuration keeps serving
        assert server.request("/expt1/info")[0] == 200
        data.write_config(data.sources())
        assert wait_for_status(server, "/late/info", 404)
    finally:
        data.write_config()


def wait_for_status(server, path, status, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.request(path)[0] == status:
            return True
        time.sleep(0.05)
    return False


def test_config_edits_take_effect_without_restart(data):
    server = start_webserver("--config", data.config, "--workers", "1")
    try:
        check_config_reload(server, data)
    finally:
        server.stop()


def test_wsgi_under_gunicorn(data):
    server = start_gunicorn(os.path.join(data.root), data.config, workers=2)
    try:
        check_config_catalog(server, data)
        check_every_chunk(server, data, "/blockfs")
        for i, ref in enumerate(data.levels):
            np.testing.assert_array_equal(read_with_tensorstore(server.url + "/zarr/", i), ref)
    finally:
        server.stop()


def test_wsgi_config_edits_take_effect_without_restart(data):
    # One worker process: "the last good configuration" is what that process last
    # loaded, and with several workers the test could not tell which one answers.
    server = start_gunicorn(os.path.join(data.root), data.config, workers=1)
    try:
        check_config_reload(server, data)
    finally:
        server.stop()


@pytest.mark.apache
def test_wsgi_under_apache_mod_wsgi(data):
    problem = apache_problem()
    if problem:
        # CI sets REQUIRE_APACHE: there a missing Apache is a failure, not a skip.
        (pytest.fail if os.environ.get("REQUIRE_APACHE") else pytest.skip)(problem)
    server = start_apache(data.root, data.config, processes=1)
    try:
        check_config_catalog(server, data)
        check_every_chunk(server, data, "/expt1")
        for i, ref in enumerate(data.levels):
            np.testing.assert_array_equal(read_with_tensorstore(server.url + "/blockfs/", i), ref)
        check_config_reload(server, data)
    finally:
        server.stop()


def run_cli(*args):
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "precomputed-webserver"), *args],
                          capture_output=True, text=True, timeout=30)


def test_cli_errors_are_one_line(tmp_path, data):
    for args, words in [
        (["--directory", str(tmp_path)], "no precomputed dataset"),
        (["--directory", data.dirs["tiff"], "--format", "zarr"], "holds tiff chunks, not zarr"),
        (["--config", str(tmp_path / "missing.json")], "does not exist"),
        ([], "--directory or --config"),
    ]:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("precomputed-webserver: error:") and words in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_warns_when_listening_beyond_loopback(data):
    server = start_webserver("--directory", data.dirs["zarr"], "--bind", "0.0.0.0")
    try:
        assert any("anyone who can reach" in line for line in server.printed)
    finally:
        server.stop()


def test_running_server_sees_a_rewritten_dataset(tmp_path):
    """Stores are kept open between requests, and reopened when the dataset is rewritten."""
    first, second = make_volume((20, 30, 40), "uint16", seed=31), make_volume((20, 30, 40), "uint16", seed=32)
    dest = str(tmp_path / "out")
    convert(write_planes(tmp_path / "a", first), dest, format="blockfs", chunk_size=(16, 16, 16), n_cores=1)
    server = start_webserver("--directory", dest, "--workers", "1")
    try:
        _, _, body = server.request("/1_1_1/0-16_0-16_0-16")
        assert body == first[:16, :16, :16].astype("<u2").tobytes()
        convert(write_planes(tmp_path / "b", second), dest, format="blockfs", chunk_size=(16, 16, 16),
                n_cores=1, overwrite=True)
        _, _, body = server.request("/1_1_1/0-16_0-16_0-16")
        assert body == second[:16, :16, :16].astype("<u2").tobytes()
    finally:
        server.stop()
