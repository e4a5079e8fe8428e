"""Publishing to a bucket as a user meets it: the commands write to a real S3 server (SeaweedFS),
print the link that opens the dataset from the bucket, ask the bucket as a browser would and
print what to run when a browser could not read it; every object carries the headers a browser
needs, and independent readers (tensorstore's s3 and http kvstores, zarr-python, ome-zarr-py)
read every level back equal to the source."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
import tifffile

from precomputed_tif.storage import ObjectStorage
from precomputed_tif.viewer import publish
from tests.helpers.label_cells import cell_volume
from tests.helpers.object_servers import unique_bucket_name
from tests.helpers.servers import free_port
from tests.helpers.stacks import make_volume, reference_pyramid, write_planes

BIN = os.path.dirname(sys.executable)
ORIGIN = publish.VIEWER_ORIGIN
JSON_NAMES = {"info", "zarr.json", ".zattrs", ".zgroup", ".zarray"}


def run(server, prog: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    """A command of the project as a process, with the server's environment (and nothing of a
    developer's own AWS settings)."""
    env = {**os.environ, **server.env()}
    return subprocess.run([os.path.join(BIN, prog), *args, "--no-progress"] if prog != "precomputed-write-points"
                          else [os.path.join(BIN, prog), *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def state_of(link: str) -> dict:
    """The viewer state in a Neuroglancer link."""
    return json.loads(urllib.parse.unquote(link.split("#!", 1)[1]))


def printed_link(stdout: str) -> str:
    found = re.findall(r"^open in Neuroglancer: (\S+)$", stdout, re.M)
    assert len(found) == 1, stdout
    return found[0]


@pytest.fixture
def server_env(seaweedfs, monkeypatch):
    """This process reaches SeaweedFS as the commands do (for in-process readers)."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    return seaweedfs


# ---------------------------------------------------------------------------------------------
# Everything a user publishes, converted once into one public bucket with a CORS rule


IMAGE = make_volume((13, 70, 90), "uint16", seed=4)
GREY8 = make_volume((11, 45, 61), "uint8", seed=5)
LABELS = cell_volume()
POINTS = [[3.5, 4.25, 1], [60, 20.5, 7], [88, 69, 12], [10, 60, 3], [45, 35, 6]]

# name -> (command line after --source/--dest, the volume converted, segmentation)
CONVERSIONS = {
    "raw-unsharded": (["--format", "precomputed", "--unsharded", "--chunk-size", "32,32,8"], IMAGE, False),
    "raw-sharded": (["--format", "precomputed", "--sharded", "--chunk-size", "32,32,8"], IMAGE, False),
    "jpeg": (["--format", "precomputed", "--unsharded", "--encoding", "jpeg", "--chunk-size", "32,32,8"], GREY8,
             False),
    "cseg-meshes": (["--format", "precomputed", "--unsharded", "--segmentation", "--mesh", "--mesh-sharded", "no",
                     "--chunk-size", "32,32,16"], LABELS, True),
    "cseg-sharded-meshes": (["--format", "precomputed", "--sharded", "--segmentation", "--mesh", "--mesh-sharded",
                             "yes", "--chunk-size", "32,32,16"], LABELS, True),
    "zarr": (["--format", "zarr", "--chunk-size", "32,32,8"], IMAGE, False),
    "ome-zarr-0.4": (["--format", "ome-zarr", "--ngff-version", "0.4", "--chunk-size", "32,32,8"], IMAGE, False),
    "ome-zarr-0.5": (["--format", "ome-zarr", "--chunk-size", "32,32,8"], IMAGE, False),
}


@pytest.fixture(scope="module")
def published(seaweedfs, tmp_path_factory):
    """Every kind of dataset written by the commands into a public bucket with CORS:
    (bucket, {name: completed process}); points at ``points`` and ``points-sharded``."""
    tmp = tmp_path_factory.mktemp("publish")
    bucket = seaweedfs.make_bucket(unique_bucket_name("pub"), public_read=True, cors=True)
    sources = {}
    for name, volume in (("image", IMAGE), ("grey8", GREY8)):
        sources[id(volume)] = write_planes(tmp / name, volume)
    tifffile.imwrite(tmp / "labels.tif", LABELS)
    sources[id(LABELS)] = str(tmp / "labels.tif")
    done = {}
    for name, (args, volume, _) in CONVERSIONS.items():
        done[name] = run(seaweedfs, "precomputed-tif", "--source", sources[id(volume)], "--dest",
                         f"s3://{bucket}/data/{name}", "--n-cores", "1", *args)
    with open(tmp / "cells.json", "w") as f:
        json.dump(POINTS, f)
    for name, flag in (("points", "--unsharded"), ("points-sharded", "--sharded")):
        done[name] = run(seaweedfs, "precomputed-write-points", "--input", str(tmp / "cells.json"), "--dataset",
                         f"s3://{bucket}/data/raw-unsharded", "--output-directory", f"s3://{bucket}/data/{name}",
                         flag)
    return bucket, done


def test_every_command_prints_the_link_from_the_bucket_and_no_warning(published, seaweedfs):
    bucket, done = published
    for name, proc in done.items():
        assert proc.returncode == 0 and "warning" not in proc.stderr, (name, proc.stderr)
        base = f"{seaweedfs.endpoint}/{bucket}/data/{name}"
        if name.startswith("points"):
            assert f"add it to Neuroglancer as a layer: precomputed://{base}\n" in proc.stdout, proc.stdout
            continue
        scheme = {"zarr": "zarr2", "ome-zarr-0.4": "zarr2", "ome-zarr-0.5": "zarr3"}.get(name, "precomputed")
        source = f"{scheme}://{base}"
        assert f"(as a layer source: {source})" in proc.stdout
        state = state_of(printed_link(proc.stdout))
        assert printed_link(proc.stdout).startswith(publish.NEUROGLANCER_APP + "/#!")
        assert {layer["source"] for layer in state["layers"]} == {source}
        want = "segmentation" if CONVERSIONS[name][2] else "image"
        assert {layer["type"] for layer in state["layers"]} == {want}, state


def objects(server, bucket: str, prefix: str) -> list[str]:
    keys, token = [], {}
    while True:
        page = server.client.list_objects_v2(Bucket=bucket, Prefix=prefix, **token)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = {"ContinuationToken": page["NextContinuationToken"]}


def read_by_range(name: str, key: str) -> bool:
    """Whether a viewer reads the object by byte ranges: shards, Zarr v3 shards (an OME-Zarr
    0.5 level's chunk keys), multi-resolution mesh fragments (a segment's data file)."""
    rel = key.split(f"data/{name}/", 1)[1]
    return (rel.endswith(".shard") or (name == "ome-zarr-0.5" and "/c/" in rel)
            or (rel.startswith("mesh/") and re.fullmatch(r"mesh/\d+", rel) is not None))


def whole_read_chunk(name: str, key: str) -> bool:
    """An unsharded raw or compressed_segmentation chunk of a precomputed scale."""
    rel = key.split(f"data/{name}/", 1)[1]
    return name in ("raw-unsharded", "cseg-meshes") and re.fullmatch(r"[\d_]+/\d+-\d+_\d+-\d+_\d+-\d+", rel) is not None


def test_every_object_has_the_headers_a_browser_needs(published, seaweedfs):
    bucket, _ = published
    seen = {"json": 0, "gzip chunk": 0, "ranged": 0}
    for name in [*CONVERSIONS, "points", "points-sharded"]:
        keys = objects(seaweedfs, bucket, f"data/{name}/")
        assert keys and not any("/.mesh-work/" in k for k in keys), keys
        for key in keys:
            status, headers, _ = seaweedfs.request("HEAD", f"/{bucket}/{urllib.parse.quote(key)}")
            assert status == 200, key
            encoding = headers.get("content-encoding", "")
            base = key.rsplit("/", 1)[-1]
            assert "aws-chunked" not in encoding, (key, headers)
            assert headers.get("content-type"), (key, headers)
            if base in JSON_NAMES or base.endswith(".json"):
                assert headers["content-type"] == "application/json", (key, headers)
                seen["json"] += 1
            else:
                assert headers["content-type"] == "application/octet-stream", (key, headers)
            if read_by_range(name, key):
                assert encoding == "", (key, headers)
                seen["ranged"] += 1
            if whole_read_chunk(name, key):
                # Stored gzipped, unless gzip would not make it smaller (noise); the stored bytes
                # really are gzip (no Accept-Encoding asked: served as stored).
                _, _, body = seaweedfs.request("GET", f"/{bucket}/{urllib.parse.quote(key)}")
                if encoding == "gzip":
                    assert body[:2] == b"\x1f\x8b" and gzip.decompress(body)
                    seen["gzip chunk"] += 1
                else:
                    assert encoding == "" and len(gzip.compress(body, 6, mtime=0)) >= len(body), (key, headers)
            if encoding == "gzip":
                _, _, body = seaweedfs.request("GET", f"/{bucket}/{urllib.parse.quote(key)}")
                gzip.decompress(body)  # whatever says gzip is gzip
    # Every kind was met: the test looked at what it meant to.
    assert seen["json"] >= 30 and seen["gzip chunk"] >= 10 and seen["ranged"] >= 10, seen


def scale_steps(info: dict) -> list[tuple[int, int, int]]:
    res = [s["resolution"] for s in info["scales"]]
    return [(1, 1, 1)] + [tuple(round(b / a) for a, b in zip(r0, r1)) for r0, r1 in zip(res, res[1:])]


def check_level(name: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, (name, got.shape, want.shape)
    if name == "jpeg":  # lossy: close to the source, never equal
        assert np.abs(got.astype(float) - want).mean() < 12, name
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


def s3_kvstore(server, bucket: str, path: str) -> dict:
    return {"driver": "s3", "bucket": bucket, "path": path, "endpoint": server.endpoint, "aws_region": "us-east-1"}


def http_kvstore(server, bucket: str, path: str) -> dict:
    return {"driver": "http", "base_url": f"{server.endpoint}/{bucket}/{path}"}


@pytest.mark.parametrize("kvstore", [s3_kvstore, http_kvstore])
def test_tensorstore_reads_every_level_back_equal_to_the_source(published, server_env, kvstore):
    import tensorstore as ts

    bucket, _ = published
    server = server_env
    for name, (_, volume, segmentation) in CONVERSIONS.items():
        info = json.loads(server.client.get_object(Bucket=bucket, Key=f"data/{name}/info")["Body"].read())
        want = reference_pyramid(volume, scale_steps(info), segmentation)
        for i, scale in enumerate(info["scales"]):
            if name.startswith("ome-zarr"):
                driver = "zarr3" if name.endswith("0.5") else "zarr"
                spec = {"driver": driver, "kvstore": kvstore(server, bucket, f"data/{name}/{i}/")}
                got = ts.open(spec, read=True).result().read().result()
            elif name == "zarr":
                spec = {"driver": "zarr", "kvstore": kvstore(server, bucket, f"data/{name}/{scale['key']}/")}
                got = ts.open(spec, read=True).result().read().result()
            else:
                spec = {"driver": "neuroglancer_precomputed", "kvstore": kvstore(server, bucket, f"data/{name}/"),
                        "scale_index": i}
                got = np.asarray(ts.open(spec, read=True).result().read().result())[..., 0].transpose(2, 1, 0)
            check_level(name, np.asarray(got), want[i])


def test_zarr_python_and_ome_zarr_py_read_the_zarr_outputs(published, server_env):
    import obstore.store
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    bucket, _ = published
    server = server_env
    for name in ("zarr", "ome-zarr-0.4", "ome-zarr-0.5"):
        _, volume, segmentation = CONVERSIONS[name]
        info = json.loads(server.client.get_object(Bucket=bucket, Key=f"data/{name}/info")["Body"].read())
        want = reference_pyramid(volume, scale_steps(info), segmentation)
        store = zarr.storage.ObjectStore(obstore.store.S3Store(
            bucket, prefix=f"data/{name}", endpoint=server.endpoint, region="us-east-1", access_key_id=server.env()[
                "AWS_ACCESS_KEY_ID"], secret_access_key=server.env()["AWS_SECRET_ACCESS_KEY"],
            client_options={"allow_http": True}), read_only=True)
        group = zarr.open_group(store, mode="r")
        multiscale = (group.attrs.get("ome") or group.attrs.asdict())["multiscales"][0]
        for i, dataset in enumerate(multiscale["datasets"]):
            check_level(name, group[dataset["path"]][:], want[i])
        # ome-zarr-py over plain HTTP, as from any public bucket.
        nodes = list(Reader(parse_url(f"{server.endpoint}/{bucket}/data/{name}"))())
        levels = nodes[0].data
        assert len(levels) == len(want), name
        for got, expected in zip(levels, want):
            check_level(name, np.asarray(got), expected)


def test_point_layers_read_back_from_the_bucket_as_a_browser_gets_them(published, seaweedfs, tmp_path):
    import requests

    from tests.helpers.annotation_reader import read_layer

    bucket, _ = published
    for name in ("points", "points-sharded"):
        # Each object fetched anonymously over HTTP, Content-Encoding undone as a browser does.
        local = tmp_path / name
        gzipped = 0
        for key in objects(seaweedfs, bucket, f"data/{name}/"):
            r = requests.get(seaweedfs.object_url(bucket, key), timeout=30)
            assert r.status_code == 200, key
            gzipped += r.headers.get("Content-Encoding") == "gzip"
            path = local / key.split(f"data/{name}/", 1)[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(r.content)
        info, levels, by_id, _ = read_layer(str(local))
        got = sorted(tuple(round(v, 3) for v in point) for point, _ in by_id.values())
        assert got == sorted(tuple(float(v) for v in p) for p in POINTS), name
        assert sum(len(entries) for cells in levels for entries in cells.values()) >= len(POINTS)
        if name == "points":
            assert gzipped, "unsharded cells that compress are stored gzipped"


# ---------------------------------------------------------------------------------------------
# A bucket a browser cannot read: what is said, and the commands said really fix it


def aws_cli() -> str:
    path = shutil.which("aws")
    if path is None:
        message = "the AWS CLI (aws) is not installed (pip install awscli)"
        if os.environ.get("REQUIRE_TOOLS"):
            pytest.fail(message + " and REQUIRE_TOOLS is set", pytrace=False)
        pytest.skip(message)
    return path


def fixes(stderr: str) -> list[str]:
    """The shell blocks of a warning: each writes its JSON file and runs the provider's CLI."""
    return re.findall(r"^(cat > \S+ <<'EOF'\n.*?^EOF\n(?:aws|gcloud) [^\n]*\n(?:aws [^\n]*\n)?)", stderr, re.S | re.M)


@pytest.fixture(scope="module")
def planes(tmp_path_factory):
    return write_planes(tmp_path_factory.mktemp("planes"), IMAGE[:5, :40, :50])


def test_private_bucket_warns_once_and_the_printed_commands_make_it_readable(seaweedfs, planes, tmp_path):
    aws_cli()
    bucket = seaweedfs.make_bucket(unique_bucket_name("priv"))
    argv = ["--source", planes, "--dest", f"s3://{bucket}/brain", "--format", "precomputed", "--n-cores", "1"]
    proc = run(seaweedfs, "precomputed-tif", *argv)
    assert proc.returncode == 0, proc.stderr
    printed_link(proc.stdout)
    lines = proc.stderr.splitlines()
    assert lines[0] == (f"precomputed-tif: warning: the data is complete, but a browser cannot read "
                        f"s3://{bucket}/brain yet:"), proc.stderr
    assert "not publicly readable" in proc.stderr and "no CORS rule" in proc.stderr and "Traceback" not in proc.stderr
    blocks = fixes(proc.stderr)
    assert len(blocks) == 2, proc.stderr
    assert f"aws s3api put-bucket-policy --bucket {bucket} --policy file://policy.json --endpoint-url " \
           f"{seaweedfs.endpoint}\n" in blocks[0]
    assert f"aws s3api put-bucket-cors --bucket {bucket} --cors-configuration file://cors.json --endpoint-url " \
           f"{seaweedfs.endpoint}\n" in blocks[1]
    # A browser really is refused before (anonymous, cross-origin).
    info_path = f"/{bucket}/brain/info"
    assert seaweedfs.request("GET", info_path, {"Origin": ORIGIN})[0] == 403
    env = {**os.environ, **seaweedfs.env()}
    for block in blocks:  # as the user pastes them into a shell
        done = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, (block, done.stdout, done.stderr)
    status, headers, body = seaweedfs.request("GET", info_path, {"Origin": ORIGIN})
    assert status == 200 and headers.get("access-control-allow-origin") in ("*", ORIGIN)
    assert json.loads(body)["type"] == "image"
    status, headers, _ = seaweedfs.request("OPTIONS", info_path, {
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"})
    assert status == 200 and "range" in headers.get("access-control-allow-headers", "").lower(), headers
    # The policy opens the dataset's prefix, not the bucket.
    seaweedfs.put_object(bucket, "elsewhere/secret", b"x")
    assert seaweedfs.request("GET", f"/{bucket}/elsewhere/secret")[0] == 403
    # The same command again: the finished dataset as it was, the link, and no warning.
    again = run(seaweedfs, "precomputed-tif", *argv)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert printed_link(again.stdout) == printed_link(proc.stdout)


def test_public_bucket_without_cors_is_told_only_about_cors(seaweedfs, server_env):
    bucket = seaweedfs.make_bucket(unique_bucket_name("nocors"), public_read=True)
    seaweedfs.put_object(bucket, "brain/info", b"{}", "application/json")
    storage = ObjectStorage(f"s3://{bucket}/brain")
    access = publish.check_access(storage, "info")
    assert access.kinds() == {"cors"} and access.unchecked is None, access
    text = publish.advice(storage, access)
    assert "put-bucket-cors" in text and "policy" not in text
    seaweedfs.client.put_bucket_cors(Bucket=bucket, CORSConfiguration=publish.s3_cors_rules())
    assert publish.check_access(storage, "info").readable


def test_a_bucket_the_network_does_not_reach_is_one_line(monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    storage = ObjectStorage("s3://some-bucket/brain")
    out, err = io.StringIO(), io.StringIO()
    info = {"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [
        {"key": "1_1_1", "size": [10, 10, 10], "resolution": [1, 1, 1], "voxel_offset": [0, 0, 0],
         "chunk_sizes": [[10, 10, 10]], "encoding": "raw"}]}
    from precomputed_tif import formats

    access = publish.announce(storage, info, formats.get("precomputed"), "precomputed-tif", out, err)
    assert access is not None and access.unchecked and not access.problems
    assert f"precomputed://http://127.0.0.1:{port}/some-bucket/brain" in out.getvalue()
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("precomputed-tif: warning: could not ask "
                                                   f"http://127.0.0.1:{port}/some-bucket/brain/info"), lines


def test_an_emulated_gcs_bucket_is_asked_at_its_own_address(fake_gcs, monkeypatch):
    for name, value in fake_gcs.env().items():
        monkeypatch.setenv(name, value)
    bucket = fake_gcs.make_bucket(unique_bucket_name("gcs"))
    fake_gcs.put_object(bucket, "brain/info", b"{}", "application/json")
    storage = ObjectStorage(f"gs://{bucket}/brain")
    assert storage.http_url("info") == f"{fake_gcs.endpoint}/{bucket}/brain/info"
    assert publish.check_access(storage, "info").readable  # it answers every origin
    # What Google Cloud Storage itself would be told to run.
    text = publish.advice(storage, publish.Access("u", [("public", "p"), ("cors", "c")]))
    assert f"gcloud storage buckets add-iam-policy-binding gs://{bucket} --member=allUsers " in text
    cors = fixes(text)[0]
    doc = json.loads(cors.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0])
    assert doc[0]["origin"] == ["*"] and "Range" in doc[0]["responseHeader"]
    assert cors.endswith(f"gcloud storage buckets update gs://{bucket} --cors-file=cors.json\n")


# ---------------------------------------------------------------------------------------------
# --cache-control, and the commands that add to a dataset in a bucket


def test_cache_control_reaches_every_object_of_every_command(seaweedfs, tmp_path):
    bucket = seaweedfs.make_bucket(unique_bucket_name("cache"), public_read=True, cors=True)
    tifffile.imwrite(tmp_path / "labels.tif", LABELS[:20, :30, :40])
    value = "public, max-age=600"
    proc = run(seaweedfs, "precomputed-tif", "--source", str(tmp_path / "labels.tif"), "--dest",
               f"s3://{bucket}/labels", "--format", "precomputed", "--segmentation", "--n-cores", "1",
               "--cache-control", value)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = run(seaweedfs, "precomputed-mesh", "--dataset", f"s3://{bucket}/labels", "--n-cores", "1",
               "--cache-control", "no-cache")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert f"to s3://{bucket}/labels/mesh and s3://{bucket}/labels/segment_properties" in proc.stdout
    state = state_of(printed_link(proc.stdout))
    assert state["layers"][0]["type"] == "segmentation"
    with open(tmp_path / "cells.json", "w") as f:
        json.dump(POINTS[:2], f)
    proc = run(seaweedfs, "precomputed-write-points", "--input", str(tmp_path / "cells.json"), "--voxel-size",
               "1,1,1", "--output-directory", f"s3://{bucket}/cells", "--cache-control", "max-age=60")
    assert proc.returncode == 0, proc.stderr
    meshed = {"mesh", "segment_properties"}
    for key in objects(seaweedfs, bucket, ""):
        _, headers, _ = seaweedfs.request("HEAD", f"/{bucket}/{urllib.parse.quote(key)}")
        parts = key.split("/")
        want = "max-age=60" if parts[0] == "cells" else "no-cache" if parts[1] in meshed or key == "labels/info" \
            else value
        assert headers.get("cache-control") == want, (key, headers)
    # A viewer gets the header too (anonymous GET).
    chunk = objects(seaweedfs, bucket, "labels/1_1_1/")[0]
    status, headers, _ = seaweedfs.request("GET", f"/{bucket}/{chunk}")
    assert status == 200 and headers.get("cache-control") == value


def test_cache_control_for_a_local_directory_is_one_line(tmp_path, planes):
    proc = subprocess.run([os.path.join(BIN, "precomputed-tif"), "--source", planes, "--dest", str(tmp_path / "out"),
                           "--cache-control", "max-age=60"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("precomputed-tif: error: --cache-control sets a header of objects in a bucket")
    assert not (tmp_path / "out").exists()
    proc = subprocess.run([os.path.join(BIN, "precomputed-tif"), "--source", planes, "--dest", "s3://bkt/x",
                           "--cache-control", "max-age=1\r\nX-Evil: 1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("precomputed-tif: error: --cache-control 'max-age=1\\r\\nX-Evil: 1': give a")


def test_the_readmes_bucket_commands_run_as_written(seaweedfs, tmp_path):
    """Every command of the README's "Publish to a bucket" block, run against a real S3 server
    (the bucket's name and the input paths put in)."""
    from tests.helpers import CHECKOUT

    with open(os.path.join(CHECKOUT, "README.md"), encoding="utf-8") as f:
        section = f.read().split("### Publish to a bucket\n", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert len(commands) >= 4 and {c[0] for c in commands} == {"precomputed-tif", "precomputed-write-points"}
    bucket = seaweedfs.make_bucket(unique_bucket_name("readme"), public_read=True, cors=True)
    planes = write_planes(tmp_path / "planes", IMAGE[:6, :33, :41])
    (tmp_path / "labels").mkdir()
    for z, plane in enumerate(LABELS[:10, :24, :30]):
        tifffile.imwrite(tmp_path / "labels" / f"l_{z:03d}.tiff", plane)
    (tmp_path / "cells.csv").write_text("x,y,z\n3,4,1\n20,10,5\n")
    for argv in commands:
        argv = [planes if a == "/data/img_*.tif" else a.replace("my-bucket", bucket) for a in argv]
        proc = run(seaweedfs, argv[0], *argv[1:], "--n-cores", "1", cwd=tmp_path) if argv[0] == "precomputed-tif" \
            else run(seaweedfs, argv[0], *argv[1:], cwd=tmp_path)
        assert proc.returncode == 0 and proc.stderr == "", (argv, proc.stderr)
        assert "Neuroglancer" in proc.stdout and f"{seaweedfs.endpoint}/{bucket}/" in proc.stdout, proc.stdout
