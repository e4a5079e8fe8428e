"""The object-store servers the storage tests run against: they start, make buckets that read
anonymously or not, answer browsers by the bucket's CORS rules, and end with the test process."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import object_servers
from tests.helpers.object_servers import ObjectServer

PREFLIGHT = {"Origin": "http://viewer.example", "Access-Control-Request-Method": "GET",
             "Access-Control-Request-Headers": "range"}
DATA = bytes(range(256)) * 3 + b"odd"  # 771 bytes


@pytest.fixture(params=["seaweedfs", "moto_s3", "fake_gcs"])
def server(request) -> ObjectServer:
    return request.getfixturevalue(request.param)


def test_bucket_holds_what_is_put(server, bucket):
    name = bucket(server)
    server.put_object(name, "a/b.bin", DATA)
    if server.kind == "s3":
        got = server.client.get_object(Bucket=name, Key="a/b.bin")["Body"].read()
        keys = [o["Key"] for o in server.client.list_objects_v2(Bucket=name)["Contents"]]
    else:
        got = server.request("GET", f"/storage/v1/b/{name}/o/a%2Fb.bin?alt=media")[2]
        keys = [o["name"] for o in server._json("GET", f"/storage/v1/b/{name}/o")["items"]]
    assert got == DATA
    assert keys == ["a/b.bin"]


def test_public_bucket_reads_anonymously_with_ranges(server, bucket):
    name = bucket(server, public_read=True)
    server.put_object(name, "x/y.bin", DATA)
    assert server.object_url(name, "x/y.bin") == f"{server.endpoint}/{name}/x/y.bin"
    status, _, body = server.request("GET", f"/{name}/x/y.bin")
    assert (status, body) == (200, DATA)
    status, headers, body = server.request("GET", f"/{name}/x/y.bin", {"Range": "bytes=700-770"})
    assert (status, headers["content-range"], body) == (206, "bytes 700-770/771", DATA[700:771])


def test_private_bucket_refuses_anonymous_reads(s3_server, bucket):
    # S3 servers only: fake-gcs-server has no authentication: every bucket reads anonymously.
    server = s3_server
    name = bucket(server)
    server.put_object(name, "k", DATA)
    status, _, body = server.request("GET", f"/{name}/k")
    assert status == 403 and DATA not in body


def test_cors_preflight_answered_while_the_bucket_has_a_rule(s3_server, bucket):
    # S3 servers only: fake-gcs-server ignores bucket CORS settings: it answers every origin itself.
    server = s3_server
    name = bucket(server, public_read=True, cors=True)
    server.put_object(name, "k", DATA)
    status, headers, _ = server.request("OPTIONS", f"/{name}/k", PREFLIGHT)
    assert status == 200
    assert headers["access-control-allow-origin"] in ("*", PREFLIGHT["Origin"])
    assert "GET" in headers["access-control-allow-methods"]
    # SeaweedFS names the requested header; moto repeats the rule's "*", which browsers take too.
    assert headers["access-control-allow-headers"].lower() in ("range", "*")
    status, headers, body = server.request("GET", f"/{name}/k", {"Origin": PREFLIGHT["Origin"], "Range": "bytes=1-2"})
    assert (status, body) == (206, DATA[1:3])
    assert headers["access-control-allow-origin"] in ("*", PREFLIGHT["Origin"])
    assert "Content-Range" in headers["access-control-expose-headers"]

    server.remove_cors(name)
    status, headers, _ = server.request("OPTIONS", f"/{name}/k", PREFLIGHT)
    assert "access-control-allow-origin" not in headers
    status, headers, body = server.request("GET", f"/{name}/k", {"Origin": PREFLIGHT["Origin"]})
    assert (status, body) == (200, DATA)
    assert "access-control-allow-origin" not in headers


def test_fake_gcs_answers_every_origin(fake_gcs, bucket):
    name = bucket(fake_gcs)
    fake_gcs.put_object(name, "k", DATA)
    status, headers, _ = fake_gcs.request("OPTIONS", f"/{name}/k", PREFLIGHT)
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    assert "range" in headers["access-control-allow-headers"].lower()


def test_env_reaches_the_server_from_another_process(server, bucket):
    """What ``env()`` gives a client process is enough: obstore there reads what was put here."""
    pytest.importorskip("obstore")
    name = bucket(server)
    server.put_object(name, "dir/obj", DATA)
    scheme = "s3" if server.kind == "s3" else "gs"
    code = ("import sys, obstore; from obstore.store import from_url; "
            f"sys.stdout.buffer.write(bytes(obstore.get(from_url('{scheme}://{name}'), 'dir/obj').bytes()))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "STORAGE_", "TENSORSTORE_"))}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **server.env()}, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    assert result.stdout == DATA


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie is gone too: its parent (init, here) has not reaped it yet.
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_servers_die_with_the_process_that_started_them(tmp_path):
    """A test process killed with SIGKILL leaves no server running (the kernel ends them)."""
    try:
        object_servers.fake_gcs_binary()
    except object_servers.ObjectServerUnavailable as e:
        if os.environ.get("REQUIRE_OBJECT_SERVERS"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    code = ("import sys, time; from tests.helpers import object_servers as o; "
            "s = o.start_fake_gcs(sys.argv[1]); print(s.proc.pid, flush=True); time.sleep(60)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=root, env={**os.environ, "PYTHONPATH": root})
    server_pid = None
    try:
        server_pid = int(parent.stdout.readline())
        assert not _gone(server_pid, timeout=0.2)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert _gone(server_pid), "fake-gcs-server outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if server_pid is not None and not _gone(server_pid, timeout=0):
            os.kill(server_pid, signal.SIGKILL)


def test_seaweedfs_leaves_nothing_outside_its_directory(tmp_path):
    """weed puts its gRPC sockets in /tmp whatever it is told; stopping it removes them."""
    server = object_servers._start_or_skip(object_servers.start_seaweedfs, tmp_path)
    try:
        ours = [f"/tmp/seaweedfs-{kind}-grpc-{port}.sock" for port in server.grpc_ports
                for kind in ("master", "volume", "filer", "s3", "admin")]
        assert any(os.path.exists(p) for p in ours)  # what is checked below is really made
    finally:
        server.stop()
    assert [p for p in ours if os.path.exists(p)] == []
