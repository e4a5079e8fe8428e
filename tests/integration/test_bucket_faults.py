"""Mistakes and faults around a bucket destination, against real S3 servers (SeaweedFS, and
moto): each ends in one line and status 2, leaves nothing that looks finished (no ``info``),
and once the fault is gone the same command writes exactly the objects a clean run writes.

The faults are real: wrong credentials and missing buckets on the server itself, a port with
nothing listening, a socket that accepts and never answers, kill -9 of the command (inside a
multipart upload too), kill -9 and restart of the server, and connections reset by a TCP proxy
in front of the server."""

from __future__ import annotations

import concurrent.futures
import functools
import os
import pickle
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import object_servers
from tests.helpers.stacks import make_volume, write_planes
from tests.helpers.tcp_proxy import Proxy

BIN = os.path.dirname(sys.executable)
CLI = os.path.join(BIN, "precomputed-tif")
SMALL = (21, 45, 39)  # z, y, x: odd sizes
# One level-0 shard of OME-Zarr larger than a part (8 MiB): it goes up as a multipart upload.
BIG = (40, 301, 389)
OPTIONS = ["--format", "precomputed", "--unsharded", "--chunk-size", "16,16,8", "--n-cores", "2", "--no-progress"]
BIG_OPTIONS = ["--format", "ome-zarr", "--n-cores", "2", "--no-progress"]
BUCKET = "faults"
DONE_OBJECTS = ".precomputed-tif-done.d/"


def _start(start, *args):
    try:
        return start(*args)
    except object_servers.ObjectServerUnavailable as exc:
        if os.environ.get("REQUIRE_TOOLS"):
            pytest.fail(f"{exc} and REQUIRE_TOOLS is set", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    server = _start(object_servers.start_seaweedfs, tmp_path_factory.mktemp("seaweedfs"))
    server.make_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto():
    server = _start(object_servers.start_moto)
    server.make_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_planes(str(tmp_path_factory.mktemp("small")), make_volume(SMALL, "uint16", seed=11))


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    return write_planes(str(tmp_path_factory.mktemp("big")), make_volume(BIG, "uint16", seed=12))


def environment(server=None, **changes) -> dict[str, str]:
    """This process's environment without any AWS setting, plus ``server``'s and ``changes``
    (a value None removes the variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(server.env() if server else {})
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def convert(source, url, env, *options, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "--source", source, "--dest", url, *(options or OPTIONS)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def start(source, url, env, *options) -> subprocess.Popen:
    return subprocess.Popen([CLI, "--source", source, "--dest", url, *(options or OPTIONS)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def assert_one_line(proc, *fragments: str) -> str:
    """The command failed as a user error: status 2, one line on stderr with every fragment, nothing on stdout."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and err.startswith("precomputed-tif: error: "), err
    assert "Traceback" not in err and not proc.stdout, (err, proc.stdout)
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def listing(server, prefix: str, bucket: str = BUCKET) -> dict[str, bytes]:
    """Every object under ``prefix/`` (keys relative to it) and its stored bytes, read with
    boto3, an independent client."""
    keys = [item["Key"] for page in server.client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix + "/") for item in page.get("Contents", [])]

    def read(key: str) -> bytes:
        return server.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return {key[len(prefix) + 1:]: body for key, body in zip(keys, pool.map(read, keys))}


def dataset(server, prefix: str) -> dict[str, bytes]:
    """The objects under ``prefix`` but the done records (one per task, whichever tasks a run
    happened to finish before it was stopped)."""
    return {k: v for k, v in listing(server, prefix).items() if not k.startswith(DONE_OBJECTS)}


def some_chunk_written(server, prefix: str) -> bool:
    """Whether the run into ``prefix`` wrote a chunk of its first level (one listing request)."""
    found = server.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/1_1_1/", MaxKeys=1)
    return bool(found.get("Contents"))


def unfinished(server, prefix: str) -> bool:
    return "info" not in listing(server, prefix)


@pytest.fixture(scope="module")
def clean(seaweed, small):
    """What a clean run of OPTIONS writes."""
    proc = convert(small, f"s3://{BUCKET}/clean", environment(seaweed))
    assert proc.returncode == 0, proc.stderr
    objects = dataset(seaweed, "clean")
    assert "info" in objects and any(k.startswith("1_1_1/") for k in objects)
    return objects


@pytest.fixture(scope="module")
def clean_big(seaweed, big):
    # The same last name as the runs it is compared with: an NGFF image is named after its prefix.
    proc = convert(big, f"s3://{BUCKET}/clean/big", environment(seaweed), *BIG_OPTIONS)
    assert proc.returncode == 0, proc.stderr
    objects = dataset(seaweed, "clean/big")
    assert max(len(v) for v in objects.values()) > 8 << 20  # a multipart upload
    return objects


def hanging_socket():
    """A socket that accepts connections (the kernel does, from its backlog) and never answers."""
    s = socket.create_server(("127.0.0.1", 0), backlog=64)
    return s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Mistakes


@pytest.mark.parametrize("mistake", ["anonymous", "wrong-secret", "no-bucket", "refused", "hanging"])
def test_a_mistake_is_one_line_and_the_corrected_command_finishes(seaweed, small, clean, mistake):
    prefix = f"mistake-{mistake}"
    url, env = f"s3://{BUCKET}/{prefix}", environment(seaweed)
    listener = None
    if mistake == "anonymous":
        wrong = environment(seaweed, AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
        expect = [url, "access denied", "anonymous", "AWS_ACCESS_KEY_ID"]
    elif mistake == "wrong-secret":
        wrong = environment(seaweed, AWS_SECRET_ACCESS_KEY="not-the-secret")
        expect = [url, "access denied", "AWS_SECRET_ACCESS_KEY"]
    elif mistake == "no-bucket":
        url, wrong = f"s3://no-such-bucket/{prefix}", env
        expect = [url, "bucket no-such-bucket does not exist", seaweed.endpoint]
    elif mistake == "refused":
        endpoint = f"http://127.0.0.1:{free_port()}"
        wrong = environment(seaweed, AWS_ENDPOINT_URL=endpoint)
        expect = [url, f"cannot connect to {endpoint}", "AWS_ENDPOINT_URL"]
    else:
        listener = hanging_socket()
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        wrong = environment(seaweed, AWS_ENDPOINT_URL=endpoint, PRECOMPUTED_TIF_STORAGE_TIMEOUT="2")
        expect = [url, f"{endpoint} did not answer within 2 s", "PRECOMPUTED_TIF_STORAGE_TIMEOUT"]
    started = time.monotonic()
    try:
        failed = convert(small, url, wrong)
    finally:
        if listener is not None:
            listener.close()
    assert time.monotonic() - started < 15
    assert_one_line(failed, *expect)
    assert listing(seaweed, prefix) == {}
    fixed = convert(small, f"s3://{BUCKET}/{prefix}", env)
    assert fixed.returncode == 0, fixed.stderr
    assert dataset(seaweed, prefix) == clean


def test_anonymous_write_where_anonymous_reads_are_allowed(moto, small):
    """moto lists for anyone: without credentials the write is still refused first, with the hint."""
    failed = convert(small, f"s3://{BUCKET}/anonymous", environment(moto, AWS_ACCESS_KEY_ID=None,
                                                                     AWS_SECRET_ACCESS_KEY=None))
    assert_one_line(failed, f"s3://{BUCKET}/anonymous", "without credentials", "AWS_ACCESS_KEY_ID")
    assert listing(moto, "anonymous") == {}


@pytest.mark.parametrize("fmt", ["tiff", "blockfs"])
def test_local_only_formats_are_refused_suggesting_precomputed(seaweed, small, fmt):
    failed = convert(small, f"s3://{BUCKET}/{fmt}", environment(seaweed), "--format", fmt, "--no-progress")
    assert_one_line(failed, f"s3://{BUCKET}/{fmt}", f"the {fmt} format", "local directory", "precomputed")
    assert listing(seaweed, fmt) == {}


def test_a_prefix_holding_other_objects_is_refused(seaweed, small):
    client = seaweed.client
    client.put_object(Bucket=BUCKET, Key="theirs/notes.txt", Body=b"not a dataset")
    for extra in ([], ["--overwrite"]):
        failed = convert(small, f"s3://{BUCKET}/theirs", environment(seaweed), *OPTIONS, *extra)
        assert_one_line(failed, f"s3://{BUCKET}/theirs", "holds no precomputed dataset", "empty prefix")
    assert listing(seaweed, "theirs") == {"notes.txt": b"not a dataset"}


def test_a_destination_that_is_an_object_is_refused(seaweed, small):
    seaweed.client.put_object(Bucket=BUCKET, Key="an-object", Body=b"plain")
    failed = convert(small, f"s3://{BUCKET}/an-object", environment(seaweed))
    assert_one_line(failed, f"s3://{BUCKET}/an-object", "is an object")
    assert listing(seaweed, "an-object") == {}
    assert seaweed.client.get_object(Bucket=BUCKET, Key="an-object")["Body"].read() == b"plain"


def test_overwrite_deletes_only_the_datasets_own_objects(seaweed, small, clean):
    client, env = seaweed.client, environment(seaweed)
    url = f"s3://{BUCKET}/ow"
    older = convert(small, url, env, *OPTIONS[:3], "--chunk-size", "8,8,8", "--no-progress")
    assert older.returncode == 0, older.stderr
    beside = {"ow/notes.txt": b"inside the prefix", "ow-notes.txt": b"beside it", "ow2/info": b"{}",
              "ow/1_1_1-notes/a": b"not a scale"}
    for key, body in beside.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    refused = convert(small, url, env)
    assert_one_line(refused, url, "different precomputed dataset", "another prefix", "--overwrite")
    done = convert(small, url, env, *OPTIONS, "--overwrite")
    assert done.returncode == 0, done.stderr
    got = dataset(seaweed, "ow")
    assert {k: v for k, v in got.items() if not k.endswith("notes.txt") and "-notes/" not in k} == clean
    for key, body in beside.items():
        assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key


@pytest.mark.parametrize("dest", ["clean", "clean/inside", ""], ids=["same", "inside", "around"])
def test_a_destination_overlapping_the_source_dataset_is_refused(seaweed, clean, dest):
    """--overwrite would delete the dataset being read: refused before anything is touched."""
    url = f"s3://{BUCKET}/{dest}"
    failed = convert(f"s3://{BUCKET}/clean", url, environment(seaweed), *OPTIONS[:3], "--chunk-size", "8,8,8",
                     "--overwrite", "--no-progress")
    assert_one_line(failed, f"--source s3://{BUCKET}/clean", "overlap")
    assert dataset(seaweed, "clean") == clean


# --- Secrets


SECRET = "Zq7-distinctive-secret-4f1e9b"
TOKEN = "Tk9-distinctive-token-77a0c3"


def test_credentials_are_written_nowhere(moto, seaweed, small, monkeypatch):
    from precomputed_tif.storage import ObjectStorage

    env = environment(moto, AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=TOKEN)
    done = convert(small, f"s3://{BUCKET}/secrets", env, *OPTIONS, "--log", "DEBUG")
    assert done.returncode == 0, done.stderr
    refused = convert(small, f"s3://{BUCKET}/secrets", environment(seaweed, AWS_SECRET_ACCESS_KEY=SECRET))
    assert_one_line(refused, "access denied")
    stored = listing(moto, "secrets")
    assert "info" in stored and ".precomputed-tif.json" in stored and any(k.startswith(DONE_OBJECTS) for k in stored)
    for text in (SECRET, TOKEN):
        for output in (done.stdout, done.stderr, refused.stdout, refused.stderr):
            assert text not in output
        for key, body in stored.items():
            assert text.encode() not in body, key
    for name, value in env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    storage = ObjectStorage(f"s3://{BUCKET}/secrets")
    storage.check_reachable(writing=True)
    assert storage.get("info") == stored["info"]
    data = pickle.dumps(storage)
    assert SECRET.encode() not in data and TOKEN.encode() not in data
    assert pickle.loads(data).get("info") == stored["info"]


# --- Kills


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def wait_for(condition, proc, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the command ended before {what}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_kill_between_puts_then_the_same_command(seaweed, small, clean):
    prefix = "killed"
    url, env = f"s3://{BUCKET}/{prefix}", environment(seaweed)
    # Slowed down, so that the kill comes between the first and the last chunk.
    with Proxy(seaweed.port, rate=200_000) as proxy:
        proc = start(small, url, environment(seaweed, AWS_ENDPOINT_URL=proxy.endpoint))
        wait_for(lambda: some_chunk_written(seaweed, prefix), proc, "chunk")
        kill_group(proc)
    assert unfinished(seaweed, prefix)
    assert len(dataset(seaweed, prefix)) < len(clean)  # killed between the first chunk and the last
    again = convert(small, url, env)
    assert again.returncode == 0, again.stderr
    assert dataset(seaweed, prefix) == clean


@pytest.mark.slow
def test_kill_inside_a_multipart_upload_then_the_same_command(seaweed, big, clean_big):
    prefix = "killed-multipart/big"
    url, env = f"s3://{BUCKET}/{prefix}", environment(seaweed)
    with Proxy(seaweed.port, rate=4_000_000, watch=b"partNumber=") as proxy:
        proc = start(big, url, environment(seaweed, AWS_ENDPOINT_URL=proxy.endpoint), *BIG_OPTIONS)
        wait_for(proxy.seen.is_set, proc, "part of a multipart upload")
        time.sleep(0.3)  # well inside the part's upload
        kill_group(proc)
    assert unfinished(seaweed, prefix)
    left = [u for u in seaweed.multipart_uploads(BUCKET) if u["Key"].startswith(prefix + "/")]
    assert left, "the kill came inside a multipart upload, which nothing could abort"
    again = convert(big, url, env, *BIG_OPTIONS)
    assert again.returncode == 0, again.stderr
    assert dataset(seaweed, prefix) == clean_big
    # What the killed upload left: only a lifecycle rule (AbortIncompleteMultipartUpload) removes it.
    after = [u for u in seaweed.multipart_uploads(BUCKET) if u["Key"].startswith(prefix + "/")]
    assert {u["UploadId"] for u in after} <= {u["UploadId"] for u in left}


def assert_interrupted(proc: subprocess.Popen, sig: int, within: float) -> None:
    """Send ``sig`` to the command; it ends within ``within`` seconds, in one line, status 128 + sig."""
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=within + 30)
    finally:
        proc.kill()
    took = time.monotonic() - sent
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert err == f"precomputed-tif: interrupted ({signal.Signals(sig).name}); run the same command again to " \
                  "resume\n" and not out, err
    assert took < within, f"the command took {took:.1f} s to stop"


def test_ctrl_c_while_the_server_does_not_answer_stops_at_once(small):
    """A request to a server that never answers (the first check of the bucket) would hold a
    signal until its timeout; Ctrl-C and SIGTERM stop the command at once."""
    with hanging_socket() as listener:
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        for sig in (signal.SIGINT, signal.SIGTERM):
            proc = start(small, f"s3://{BUCKET}/hang", environment(
                AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_REGION="us-east-1"))
            time.sleep(2)  # well inside the request
            assert proc.poll() is None
            assert_interrupted(proc, sig, within=5)


@pytest.mark.slow
def test_ctrl_c_inside_a_multipart_upload_to_a_stopped_server_stops_soon(moto, big):
    """Writes in the command's own process (--n-cores 1): the server stops (SIGSTOP) inside a
    multipart upload, then Ctrl-C ends the command within seconds, not after the request's
    timeouts and retries, nor the abort of the upload's."""
    prefix = "stopped/big"
    proc = start(big, f"s3://{BUCKET}/{prefix}", environment(moto), *BIG_OPTIONS[:-3], "--n-cores", "1",
                 "--no-progress")
    try:
        wait_for(lambda: any(u["Key"].startswith(prefix + "/") for u in moto.multipart_uploads(BUCKET)), proc,
                 "multipart upload")
        os.kill(moto.proc.pid, signal.SIGSTOP)
        time.sleep(1)
        assert_interrupted(proc, signal.SIGINT, within=10)
    finally:
        os.kill(moto.proc.pid, signal.SIGCONT)


# --- The server stops


MEDIUM = (25, 97, 131)
# Fewer, larger chunks than OPTIONS: the run is short, yet made of many tasks.
MEDIUM_OPTIONS = ["--format", "precomputed", "--unsharded", "--chunk-size", "32,32,8", "--n-cores", "2",
                  "--no-progress"]


def restart(server):
    """Start ``server``'s program again as it was started: the same data directory and ports."""
    log = f"{server.log_path}.again"
    args = list(server.proc.args)
    data = next(a.split("=", 1)[1] for a in args if a.startswith("-dir="))
    proc = object_servers._spawn(args, log, cwd=data)
    again = type(server)(proc, server.port, log)
    again.grpc_ports = server.grpc_ports
    object_servers._wait_http(again, "/")
    # Answering HTTP is not serving data yet: SeaweedFS answers InternalError to reads until its
    # volumes are loaded again. Ready when an object written before the stop reads back.
    deadline = time.monotonic() + 30
    while True:
        try:
            first = again.client.list_objects_v2(Bucket=BUCKET, MaxKeys=1)["Contents"][0]["Key"]
            again.client.get_object(Bucket=BUCKET, Key=first)["Body"].read()
            return again
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_the_server_stops_during_a_run_then_the_same_command(tmp_path):
    """kill -9 of the server, then started again on its data; and SIGSTOP, then SIGCONT."""
    (tmp_path / "server").mkdir()
    server = _start(object_servers.start_seaweedfs, tmp_path / "server")
    try:
        server.make_bucket(BUCKET)
        source = write_planes(str(tmp_path / "planes"), make_volume(MEDIUM, "uint16", seed=13))
        env = environment(server, PRECOMPUTED_TIF_STORAGE_TIMEOUT="1")
        clean = convert(source, f"s3://{BUCKET}/clean", env, *MEDIUM_OPTIONS)
        assert clean.returncode == 0, clean.stderr
        want = dataset(server, "clean")
        for fault, expect in (("killed", "cannot connect"), ("stopped", "did not answer within 1 s")):
            prefix = f"server-{fault}"
            url = f"s3://{BUCKET}/{prefix}"
            proc = start(source, url, env, *MEDIUM_OPTIONS)
            wait_for(functools.partial(some_chunk_written, server, prefix), proc, "chunk")
            # The command paused while the server goes: it cannot finish before the fault.
            os.killpg(proc.pid, signal.SIGSTOP)
            assert len(dataset(server, prefix)) < len(want)
            os.kill(server.proc.pid, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
            os.killpg(proc.pid, signal.SIGCONT)
            started = time.monotonic()
            out, err = proc.communicate(timeout=60)
            took = time.monotonic() - started
            if fault == "killed":
                server.proc.wait()
                server = restart(server)
            else:
                os.kill(server.proc.pid, signal.SIGCONT)
            assert_one_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), url, expect,
                            "check AWS_ENDPOINT_URL", "run the same command again")
            assert took < 15, (fault, took)
            assert unfinished(server, prefix)
            again = convert(source, url, env, *MEDIUM_OPTIONS)
            assert again.returncode == 0, again.stderr
            assert dataset(server, prefix) == want, fault
    finally:
        server.proc.kill()  # its data is thrown away: no need to stop it gently
        server.stop()


# --- Connections cut


def test_connections_cut_a_few_times_are_retried(seaweed, small, clean):
    prefix = "cut-a-few"
    with Proxy(seaweed.port, cut_after=2000, cuts=3) as proxy:
        done = convert(small, f"s3://{BUCKET}/{prefix}", environment(seaweed, AWS_ENDPOINT_URL=proxy.endpoint))
    assert done.returncode == 0, done.stderr
    assert proxy.cut == 3
    assert dataset(seaweed, prefix) == clean


@pytest.mark.slow
def test_parts_of_a_multipart_upload_cut_are_retried(seaweed, big, clean_big):
    prefix = "cut-parts/big"
    with Proxy(seaweed.port, cut_after=3 << 20, cuts=2) as proxy:
        done = convert(big, f"s3://{BUCKET}/{prefix}", environment(seaweed, AWS_ENDPOINT_URL=proxy.endpoint),
                       *BIG_OPTIONS)
    assert done.returncode == 0, done.stderr
    assert proxy.cut == 2
    assert dataset(seaweed, prefix) == clean_big
    assert not [u for u in seaweed.multipart_uploads(BUCKET) if u["Key"].startswith(prefix + "/")]


def test_connections_cut_every_time_is_one_line_then_the_same_command(seaweed, small, clean):
    prefix = "cut-always"
    url = f"s3://{BUCKET}/{prefix}"
    with Proxy(seaweed.port, cut_after=2000, cuts=-1) as proxy:
        failed = convert(small, url, environment(seaweed, AWS_ENDPOINT_URL=proxy.endpoint,
                                                 PRECOMPUTED_TIF_STORAGE_TIMEOUT="2"))
    assert_one_line(failed, url, f"the connection to {proxy.endpoint} broke", "check AWS_ENDPOINT_URL")
    assert proxy.cut > 1
    assert unfinished(seaweed, prefix)
    done = convert(small, url, environment(seaweed))
    assert done.returncode == 0, done.stderr
    assert dataset(seaweed, prefix) == clean


# --- Dask


@pytest.mark.slow
def test_dask_workers_write_with_their_own_credentials(seaweed, small, clean, monkeypatch):
    distributed = pytest.importorskip("distributed")
    env = environment(seaweed)
    # The workers' processes start with this environment: their credentials are their own.
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_port=0) as cluster:
        done = convert(small, f"s3://{BUCKET}/dask", env, *OPTIONS, "--dask-scheduler", cluster.scheduler_address)
    assert done.returncode == 0, done.stderr
    assert dataset(seaweed, "dask") == clean
