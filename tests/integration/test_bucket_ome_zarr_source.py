"""OME-Zarr written by other tools, read from a bucket (``--source s3://BUCKET/PREFIX/image.zarr``,
gs://) on real object-store servers: ome-zarr-py and ngff-zarr (NGFF 0.4 and 0.5) and sharded
Zarr v3 written locally, uploaded object by object with boto3 (or the GCS JSON API), converted
from the bucket's URL; the dataset equals the one the local copy gives, file for file, and
zarr-python's own read of the local copy voxel for voxel, with the voxel size and channel names
of the local case. bioformats2raw's layout with ``--series`` and ``--inspect``; a region read
fetches its chunks only; a missing prefix, a Zarr that is no OME-Zarr, an endpoint with nothing
listening, refused credentials and an object that cannot be decoded are one line each; a shard
replaced between its index and its chunk, and a truncated shard, are errors, never other voxels;
a signal while the server stops answering ends the command at once."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from precomputed_tif import convert
from precomputed_tif.cli.convert import main
from precomputed_tif.errors import PrecomputedTifError
from precomputed_tif.geometry import Box
from precomputed_tif.pipeline.progress import DoneLog
from precomputed_tif.sources import OmeZarrSource, open_source
from precomputed_tif.storage import ObjectStorage
from precomputed_tif.storage.base import media_type
from precomputed_tif.storage.zarr_store import StorageZarrStore
from tests.helpers.object_servers import SECRET_KEY
from tests.helpers.tcp_proxy import Proxy
from tests.integration.test_bucket_sources import same_conversion
from tests.integration.test_ome_zarr_source import (
    CASES,
    NAMES,
    VOXEL,
    _data,
    _write,
    bioformats2raw,
    ome_zarr_py,
    read_precomputed,
)


def upload_tree(server, bucket: str, folder, prefix: str) -> int:
    """Every file below ``folder`` as the object ``prefix/RELATIVE/PATH`` (the way ``aws s3 sync``
    would put it); the number of bytes uploaded."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            key = "/".join([prefix, *os.path.relpath(path, folder).split(os.sep)])
            with open(path, "rb") as f:
                data = f.read()
            server.put_object(bucket, key, data, content_type=media_type(key))
            total += len(data)
    return total


def zarr_read(path) -> np.ndarray:
    """The full-resolution level of the OME-Zarr image at the local ``path``, read by zarr-python."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    return np.asarray(group[ome["multiscales"][0]["datasets"][0]["path"]][:])


@pytest.mark.parametrize("kind, version", CASES)
def test_an_ome_zarr_in_a_bucket_converts_as_the_local_copy(tmp_path, s3, kind, version):
    server, bucket = s3
    data = _data()
    local = tmp_path / "in.ome.zarr"
    _write(kind, version, local, data)
    upload_tree(server, bucket, local, "lab/in.ome.zarr")
    url = f"s3://{bucket}/lab/in.ome.zarr"

    source = open_source(url)
    assert isinstance(source, OmeZarrSource)
    assert source.voxel_size == pytest.approx(VOXEL)
    assert source.voxel_size_origin == f"OME-Zarr metadata of {url}"
    assert SECRET_KEY.encode() not in pickle.dumps(source)  # workers reopen it by URL, with their own keys

    # The dataset is the local copy's, file for file (workers reopening by URL: the series test).
    same_conversion(tmp_path, url, str(local), format="precomputed", n_cores=1)
    np.testing.assert_array_equal(read_precomputed(tmp_path / "from-bucket" / "out"), zarr_read(local))
    info = convert(url, str(tmp_path / "from-bucket" / "out"), chunk_size=(16, 16, 8), n_cores=1,
                   block_bytes=1, format="precomputed")  # the same command again: the same source, finished
    assert info["precomputed_tif"]["voxel_size_from"] == f"OME-Zarr metadata of {url}"
    assert [r / 1000 for r in info["scales"][0]["resolution"]] == pytest.approx(VOXEL)
    if kind != "ngff-zarr":  # ngff-zarr writes no omero unless given one
        assert info["precomputed_tif"]["channel_names"] == NAMES

    # An object of the full-resolution level uploaded again: the same command names the change.
    level = f"lab/in.ome.zarr/{source.array}/"
    key = next(o["Key"] for o in server.client.list_objects_v2(Bucket=bucket, Prefix=level)["Contents"]
               if not o["Key"].endswith(("zarr.json", ".zarray", ".zattrs")))
    server.put_object(bucket, key, server.client.get_object(Bucket=bucket, Key=key)["Body"].read() + b"\0")
    with pytest.raises(PrecomputedTifError, match="source changed since") as refused:
        convert(url, str(tmp_path / "from-bucket" / "out"), chunk_size=(16, 16, 8), n_cores=1, block_bytes=1,
                format="precomputed")
    # (not a metadata file of the other Zarr version, absent then as now, named as the change)
    assert "is missing" not in str(refused.value) and "full-resolution files" in str(refused.value), refused.value


def test_a_sharded_ome_zarr_in_a_gcs_bucket_and_on_moto(tmp_path, fake_gcs, moto_s3, bucket, monkeypatch):
    data = _data(seed=8)
    local = tmp_path / "in.ome.zarr"
    _write("zarr-sharded", "0.5", local, data)
    for server, scheme in ((fake_gcs, "gs"), (moto_s3, "s3")):
        with monkeypatch.context() as env:
            for name, value in server.env().items():
                env.setenv(name, value)
            name = bucket(server)
            upload_tree(server, name, local, "in.ome.zarr")
            out = tmp_path / scheme
            convert(f"{scheme}://{name}/in.ome.zarr", str(out), format="precomputed", chunk_size=(16, 16, 8),
                    n_cores=1)
            np.testing.assert_array_equal(read_precomputed(out), zarr_read(local))


def test_a_region_fetches_its_chunks_not_the_image(tmp_path, s3, monkeypatch):
    # 4 MiB of noise in shards of 32 x 128 x 128 holding chunks of 8 x 32 x 32: a 20 x 20 x 5 corner
    # needs one chunk of one shard (and that shard's index).
    import zarr

    server, bucket = s3
    data = np.random.default_rng(9).integers(0, 65535, (32, 256, 256), dtype=np.uint16)
    local = tmp_path / "big.ome.zarr"
    group = zarr.open_group(str(local), mode="w", zarr_format=3)
    group.create_array("0", shape=data.shape, chunks=(8, 32, 32), shards=(32, 128, 128), dtype=data.dtype,
                       compressors=None)[:] = data
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]}
    total = upload_tree(server, bucket, local, "big.ome.zarr")

    source = open_source(f"s3://{bucket}/big.ome.zarr")
    fetched: list[int] = []
    ranged, whole = ObjectStorage._ranged, ObjectStorage.get

    def counting_ranged(self, key, start, end, etag=None):
        got = ranged(self, key, start, end, etag)
        fetched.append(len(got))
        return got

    def counting_get(self, key):
        got = whole(self, key)
        fetched.append(len(got or b""))
        return got

    monkeypatch.setattr(ObjectStorage, "_ranged", counting_ranged)
    monkeypatch.setattr(ObjectStorage, "get", counting_get)
    np.testing.assert_array_equal(source.read(Box(3, 23, 5, 25, 1, 6)), data[1:6, 5:25, 3:23])
    assert fetched and sum(fetched) < 8 * 32 * 32 * 2 + 4096, (fetched, total)  # one chunk, index, metadata


def test_bioformats2raw_series_and_inspect_from_a_bucket(tmp_path, s3, capsys):
    server, bucket = s3
    first, second = _data(seed=5), _data((2, 7, 33, 29), seed=6)
    local = tmp_path / "plate.zarr"
    bioformats2raw(str(local), [first, second], listed=False)
    upload_tree(server, bucket, local, "plate.zarr")
    url = f"s3://{bucket}/plate.zarr"

    code = main(["--no-progress", "--source", url, "--dest", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "2 images" in err and "--series N" in err and "29x33x7" in err, err

    assert main(["--source", url, "--inspect"]) == 0
    out = capsys.readouterr().out
    assert "2 images; convert one with --series N" in out, out
    assert "image 0 '0' (C 2, Z 13, Y 45, X 71):" in out and "size x, y, z: 71, 45, 13" in out, out
    assert "image 1 '1' (C 2, Z 7, Y 33, X 29):" in out and "size x, y, z: 29, 33, 7" in out, out
    assert main(["--source", url, "--series", "1", "--inspect"]) == 0
    out = capsys.readouterr().out
    assert "size x, y, z: 29, 33, 7; uint16" in out and "71, 45, 13" not in out, out
    assert f"0.4, 0.5, 2 µm, from the OME-Zarr metadata of {url} (image 1)" in out, out
    assert "'DAPI'" in out and "'GFP'" in out, out

    dest = tmp_path / "s1"  # two worker processes, each opening the image again by its URL
    code = main(["--no-progress", "--n-cores", "2", "--chunk-size", "16,16,8", "--source", url, "--dest", str(dest),
                 "--format", "precomputed", "--series", "1"])
    assert code == 0, capsys.readouterr().err
    np.testing.assert_array_equal(read_precomputed(dest), zarr_read(local / "1"))
    np.testing.assert_array_equal(zarr_read(local / "1"), second)  # (the layout holds what was written)


# --- mistakes and faults -----------------------------------------------------------------------


def _one_line(capsys, args) -> str:
    code = main(["--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_missing_prefix_and_a_zarr_that_is_no_ome_zarr_are_one_line(tmp_path, s3, capsys):
    import zarr

    server, bucket = s3
    out = str(tmp_path / "out")
    err = _one_line(capsys, ["--source", f"s3://{bucket}/nothing/here.zarr", "--dest", out])
    assert f"s3://{bucket}/nothing/here.zarr: no object of that name" in err and "no OME-Zarr" in err, err

    zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(3, 9, 11), dtype="uint8", zarr_format=3)[:] = 1
    upload_tree(server, bucket, tmp_path / "plain.zarr", "plain.zarr")
    err = _one_line(capsys, ["--source", f"s3://{bucket}/plain.zarr", "--dest", out])
    assert f"s3://{bucket}/plain.zarr is a Zarr group or array but not an OME-Zarr image" in err, err
    assert not os.path.exists(out)


def test_an_unreachable_endpoint_and_refused_credentials_are_one_line(tmp_path, s3, capsys, monkeypatch):
    from tests.helpers.object_servers import free_port

    server, bucket = s3
    ome_zarr_py(tmp_path / "in.ome.zarr", "0.4", _data((2, 3, 9, 11)))
    upload_tree(server, bucket, tmp_path / "in.ome.zarr", "in.ome.zarr")
    args = ["--source", f"s3://{bucket}/in.ome.zarr", "--dest", str(tmp_path / "out")]

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    err = _one_line(capsys, args)
    assert "access denied" in err and "AWS_ACCESS_KEY_ID" in err, err

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    err = _one_line(capsys, args)
    assert "cannot connect" in err and "AWS_ENDPOINT_URL" in err, err
    assert not os.path.exists(tmp_path / "out")


def test_a_chunk_the_bucket_cannot_give_is_one_line_naming_it(tmp_path, s3, capsys):
    # A chunk stored with a Content-Encoding nothing here decodes: the storage's own error comes
    # through zarr-python's reading, as one line naming the object.
    server, bucket = s3
    local = tmp_path / "in.ome.zarr"
    ome_zarr_py(local, "0.5", _data((2, 3, 9, 11)))
    upload_tree(server, bucket, local, "in.ome.zarr")
    chunk = "in.ome.zarr/s0/c/0/0/0/0"  # the full-resolution level's one chunk (ome-zarr-py names it s0)
    assert (local / "s0" / "c" / "0" / "0" / "0" / "0").is_file()
    server.put_object(bucket, chunk, b"\x00" * 64, content_encoding="compress")
    err = _one_line(capsys, ["--source", f"s3://{bucket}/in.ome.zarr", "--dest", str(tmp_path / "out"),
                             "--n-cores", "1"])
    assert f"s3://{bucket}/{chunk}: stored with Content-Encoding compress" in err, err


def _sharded(root, data, index_location="end", compressors=None):
    """A Zarr v3 OME-Zarr image of ``data`` (z, y, x) written by zarr-python: shards of 8 x 32 x 32
    holding chunks of 4 x 16 x 16, the shard index where ``index_location`` says."""
    import zarr
    from zarr.codecs import BytesCodec, ShardingCodec

    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    group.create_array("0", shape=data.shape, chunks=(8, 32, 32), dtype=data.dtype, serializer=ShardingCodec(
        chunk_shape=(4, 16, 16), codecs=[BytesCodec(), *(compressors or [])], index_location=index_location),
        compressors=None)[:] = data
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]}


def test_a_shard_replaced_between_its_index_and_its_chunk_is_one_line_not_a_mix(tmp_path, s3, capsys, monkeypatch):
    # The new shard lacks its first chunk (all zeros: zarr-python stores no chunk of fill values),
    # so every other chunk moved: the old index applied to the new bytes would read the wrong
    # chunk, and decode it without complaint (no compression).
    server, bucket = s3
    old = np.random.default_rng(11).integers(1, 60000, (8, 32, 32), dtype=np.uint16)
    new = old.copy()
    new[:4, :16, :16] = 0
    _sharded(tmp_path / "old.zarr", old)
    _sharded(tmp_path / "new.zarr", new)
    upload_tree(server, bucket, tmp_path / "old.zarr", "img.zarr")
    replacement = (tmp_path / "new.zarr" / "0" / "c" / "0" / "0" / "0").read_bytes()
    url = f"s3://{bucket}/img.zarr"

    read, replaced = StorageZarrStore._read, []

    def replace_after_the_index(self, key, byte_range):
        got = read(self, key, byte_range)
        if key == "0/c/0/0/0" and byte_range is not None and not replaced:  # the shard's index
            server.put_object(bucket, "img.zarr/0/c/0/0/0", replacement)
            replaced.append(key)
        return got

    monkeypatch.setattr(StorageZarrStore, "_read", replace_after_the_index)
    source = open_source(url)
    with pytest.raises(PrecomputedTifError, match="was replaced while it was read") as changed:
        source.read(Box(20, 30, 3, 13, 1, 3))  # one chunk of the shard, not the whole shard
    assert replaced and f"{url}/0/c/0/0/0" in str(changed.value), changed.value
    # The next read takes the new version, whole: what zarr-python reads of it.
    np.testing.assert_array_equal(source.read(Box(20, 30, 3, 13, 1, 3)), new[1:3, 3:13, 20:30])


@pytest.mark.parametrize("where", ["folder", "bucket"])
def test_a_truncated_shard_is_an_error_not_chunks_of_fill_value(tmp_path, s3, where):
    # The index at the start survives the cut; the chunks it points past the end would come back
    # as no bytes, which zarr-python takes for chunks never written (its fill value, zeros).
    import tensorstore as ts

    server, bucket = s3
    data = np.random.default_rng(12).integers(1, 60000, (8, 32, 32), dtype=np.uint16)
    local = tmp_path / "img.zarr"
    _sharded(local, data, index_location="start")
    shard = local / "0" / "c" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:3000])
    with pytest.raises(ValueError, match="DATA_LOSS"):  # an independent reader says so too
        ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(local / "0")}}).result().read().result()
    source = str(local)
    if where == "bucket":
        upload_tree(server, bucket, local, "img.zarr")
        source = f"s3://{bucket}/img.zarr"
    with pytest.raises(PrecomputedTifError) as damaged:  # a chunk past the cut, read alone
        open_source(source).read(Box(20, 25, 20, 25, 5, 7))
    message = str(damaged.value)
    assert f"{source}/0/c/0/0/0 is 3000 bytes long" in message and "truncated or damaged" in message, message


def test_a_signal_while_the_bucket_stops_answering_ends_the_command_at_once(tmp_path, s3):
    # The reads of one process (--n-cores 1) wait on the server in threads of their own: a signal
    # ends the command at once, not when the hanging request gives up (a minute and retries).
    server, bucket = s3
    data = np.random.default_rng(13).integers(0, 60000, (33, 71, 59), dtype=np.uint16)
    _sharded(tmp_path / "img.zarr", data, compressors=None)
    upload_tree(server, bucket, tmp_path / "img.zarr", "img.zarr")
    dest = str(tmp_path / "out")
    with Proxy(server.port) as proxy:
        env = {**os.environ, **server.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
        proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "precomputed-tif"), "--source",
                                 f"s3://{bucket}/img.zarr", "--dest", dest, "--chunk-size", "8,8,8", "--n-cores", "1",
                                 "--no-progress", "--format", "precomputed"], env=env, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not DoneLog(dest).load() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            proxy.hold.set()  # the server stops answering
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(1)  # the next reads are waiting for it
            os.kill(proc.pid, signal.SIGTERM)
            start = time.monotonic()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                pytest.fail("the command did not end within 20 s of SIGTERM")
            err = proc.stderr.read().decode()
            assert proc.returncode == 143 and err.count("\n") == 1 and "interrupted (SIGTERM)" in err, err
            assert time.monotonic() - start < 10
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.stderr.close()
    assert not os.path.exists(os.path.join(dest, "info"))
