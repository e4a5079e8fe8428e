"""ObjectStorage against real object-store servers on 127.0.0.1: the storage contract every
backend keeps (tests/helpers/storage_contract.py), on SeaweedFS and moto (S3) and, for reading,
fake-gcs-server (GCS); and what only a bucket does: gzip at rest, media types, multipart
streams that leave no upload behind."""

from __future__ import annotations

import gzip
import os
import uuid

import pytest

from precomputed_tif.storage import ObjectStorage, open_storage
from tests.helpers.storage_contract import StorageContract


@pytest.fixture
def env_of(monkeypatch):
    """Point this process's object-store clients at ``server`` (its environment variables)."""
    def use(server):
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
    return use


class TestSeaweedFS(StorageContract):
    @pytest.fixture
    def storage(self, seaweedfs, bucket, env_of):
        env_of(seaweedfs)
        return open_storage(f"s3://{bucket(seaweedfs)}/some/prefix")


class TestMoto(StorageContract):
    @pytest.fixture
    def storage(self, moto_s3, bucket, env_of):
        env_of(moto_s3)
        return open_storage(f"s3://{bucket(moto_s3)}/p")


def test_compressible_objects_are_gzip_at_rest_and_read_back_plain(s3_server, bucket, env_of):
    env_of(s3_server)
    name = bucket(s3_server, public_read=True)
    storage = open_storage(f"s3://{name}/d")
    raw = bytes(range(256)) * 64
    storage.put("1_1_1/0-64_0-64_0-64", raw, compressible=True)
    storage.put("info", b'{"type": "image"}')
    storage.put("1_1_1/0-64_0-64_0-64.png", raw[:1000])
    assert storage.get("1_1_1/0-64_0-64_0-64") == raw
    status, headers, body = s3_server.request("GET", f"/{name}/d/1_1_1/0-64_0-64_0-64")
    assert status == 200 and headers["content-encoding"] == "gzip" and gzip.decompress(body) == raw
    assert headers["content-type"] == "application/octet-stream"
    status, headers, body = s3_server.request("GET", f"/{name}/d/info")
    assert status == 200 and headers["content-type"] == "application/json" and "content-encoding" not in headers
    assert body == b'{"type": "image"}'
    # The same content gives the same object: a rerun rewrites identical bytes.
    first = storage.stat("1_1_1/0-64_0-64_0-64")
    storage.put("1_1_1/0-64_0-64_0-64", raw, compressible=True)
    assert storage.stat("1_1_1/0-64_0-64_0-64").size == first.size
    assert storage.stat("1_1_1/0-64_0-64_0-64").version[0] == first.version[0]  # the ETag: same bytes


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br"])
def test_objects_other_tools_stored_encoded_read_back_decoded(s3_server, bucket, env_of, encoding):
    """cloud-volume stores chunks with Content-Encoding gzip, br or zstd: each reads back as its
    content, never as the encoded bytes (which a raw chunk's size check might even accept)."""
    import brotli
    import zstandard

    env_of(s3_server)
    name = bucket(s3_server)
    raw = bytes(range(256)) * 16
    encode = {"br": brotli.compress, "zstd": zstandard.ZstdCompressor().compress,
              "gzip": lambda d: gzip.compress(d, mtime=0)}
    data = raw
    for step in encoding.split(", "):
        data = encode[step](data)
    s3_server.put_object(name, "d/1/0-8_0-8_0-8", data, content_encoding=encoding)
    assert open_storage(f"s3://{name}/d").get("1/0-8_0-8_0-8") == raw


def test_an_encoding_that_cannot_be_undone_is_one_line(s3_server, bucket, env_of):
    from precomputed_tif.errors import PrecomputedTifError

    env_of(s3_server)
    name = bucket(s3_server)
    s3_server.put_object(name, "d/1/x", b"\x1f\x9d" + bytes(100), content_encoding="compress")
    s3_server.put_object(name, "d/1/y", b"not brotli at all", content_encoding="br")
    storage = open_storage(f"s3://{name}/d")
    with pytest.raises(PrecomputedTifError, match=r"^s3://.*/d/1/x: stored with Content-Encoding compress, "):
        storage.get("1/x")
    with pytest.raises(PrecomputedTifError, match=r"/d/1/y: says Content-Encoding br but is not br \(") as caught:
        storage.get("1/y")
    assert "\n" not in str(caught.value)


def test_a_large_stream_is_a_multipart_upload_without_encoding(s3_server, bucket, env_of):
    env_of(s3_server)
    name = bucket(s3_server)
    storage = open_storage(f"s3://{name}/d", cache_control="public, max-age=60")
    part = os.urandom(1 << 20)
    with storage.open_stream("0/shard.shard") as w:
        for _ in range(19):  # 19 MiB: three parts
            w.write(part)
    assert storage.size("0/shard.shard") == 19 << 20
    assert storage.get_range("0/shard.shard", (18 << 20) + 5, 10) == part[5:15]
    head = s3_server.client.head_object(Bucket=name, Key="d/0/shard.shard")
    assert "ContentEncoding" not in head and head["ContentType"] == "application/octet-stream"
    assert head["CacheControl"] == "public, max-age=60"
    assert "-" in head["ETag"]  # a multipart upload's ETag: md5-of-parts "-" count
    # An aborted one leaves neither an object nor an upload in progress.
    w = storage.open_stream("0/other.shard")
    for _ in range(10):
        w.write(part)
    w.abort()
    assert storage.stat("0/other.shard") is None
    assert s3_server.multipart_uploads(name) == []


def test_a_stream_whose_parts_never_get_through_is_one_line(seaweedfs, bucket, env_of, monkeypatch):
    """Every connection reset after 4 MB, inside the first part: the stream's write fails as
    one StorageError saying the connection broke (not the client library's own error), and
    leaves neither an object nor an upload in progress."""
    from precomputed_tif.storage import StorageError
    from tests.helpers.tcp_proxy import Proxy

    env_of(seaweedfs)
    name = bucket(seaweedfs)
    monkeypatch.setenv("PRECOMPUTED_TIF_STORAGE_TIMEOUT", "3")
    part = os.urandom(1 << 20)
    with Proxy(seaweedfs.port, cut_after=4_000_000, cuts=-1) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        storage = open_storage(f"s3://{name}/d")
        with pytest.raises(StorageError) as caught, storage.open_stream("0/shard") as w:
            for _ in range(20):
                w.write(part)
    message = str(caught.value)
    assert message.startswith(f"s3://{name}/d/0/shard: the connection to {proxy.endpoint} broke ("), message
    assert "\n" not in message and "uploadId" not in message
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.endpoint)
    assert open_storage(f"s3://{name}/d").stat("0/shard") is None
    assert seaweedfs.multipart_uploads(name) == []


def test_a_gcs_emulator_is_read(fake_gcs, bucket, env_of):
    """Reading gs:// (a dataset source): objects, ranges, listings, and a gzip-encoded object
    the server decodes on the way (as Google's own does) read as its content."""
    env_of(fake_gcs)
    name = bucket(fake_gcs)
    raw = b"chunk " * 500
    fake_gcs.put_object(name, "d/info", b'{"a": 1}', content_type="application/json")
    fake_gcs.put_object(name, "d/1/0-8_0-8_0-8", gzip.compress(raw), content_encoding="gzip")
    fake_gcs.put_object(name, "d/1/9-16_0-8_0-8", b"0123456789")
    fake_gcs.put_object(name, "elsewhere", b"x")
    storage = open_storage(f"gs://{name}/d")
    assert isinstance(storage, ObjectStorage)
    storage.check_reachable(writing=False)
    assert storage.get("info") == b'{"a": 1}'
    assert storage.get("1/0-8_0-8_0-8") == raw
    assert storage.get_range("1/9-16_0-8_0-8", 2, 3) == b"234"
    assert list(storage.list()) == ["1/0-8_0-8_0-8", "1/9-16_0-8_0-8", "info"]
    assert storage.get("nothing") is None and storage.stat("nothing") is None
    assert storage.public_url("info") == f"{fake_gcs.endpoint}/{name}/d/info"


def test_a_missing_bucket_is_one_line(s3_server, env_of):
    env_of(s3_server)
    storage = open_storage(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/d")
    from precomputed_tif.errors import PrecomputedTifError

    for call in (lambda: storage.check_reachable(writing=True), lambda: storage.put("info", b"{}"),
                 lambda: storage.get("info")):
        with pytest.raises(PrecomputedTifError, match="does not exist") as caught:
            call()
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("unsigned", ["true", "false"])
def test_payloads_signed_or_not_are_accepted(s3_server, bucket, env_of, monkeypatch, unsigned):
    """An http:// endpoint's payloads are hashed into the signature unless AWS_UNSIGNED_PAYLOAD
    says not to; the server takes both, whole objects and multipart streams alike."""
    env_of(s3_server)
    monkeypatch.setenv("AWS_UNSIGNED_PAYLOAD", unsigned)
    storage = open_storage(f"s3://{bucket(s3_server)}/d")
    storage.put("info", b"{}")
    part = os.urandom(1 << 20)
    with storage.open_stream("s.shard") as w:
        for _ in range(9):
            w.write(part)
    assert storage.get("info") == b"{}" and storage.get_range("s.shard", 8 << 20, 4) == part[:4]
    assert str(storage.store.config["unsigned_payload"]).lower() == unsigned
