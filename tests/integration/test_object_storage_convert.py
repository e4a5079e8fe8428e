"""A whole conversion onto storage with an object store's limits (no path, no append, no
rename the writers may see): the formats a bucket can hold come out as they do in a local
directory, object for object; those that need a local directory are refused before anything
is written."""

from __future__ import annotations

import os
import re

import pytest

from precomputed_tif import PrecomputedTifError, convert
from precomputed_tif.formats.store import CHECKSUMS
from precomputed_tif.pipeline.progress import DONE_LOG, DONE_OBJECTS
from precomputed_tif.storage import LocalStorage, open_storage
from tests.helpers.object_storage import ObjectLikeStorage
from tests.helpers.stacks import make_volume, write_planes

SHAPE = (21, 45, 39)  # z, y, x: no axis a multiple of the chunk size
CHUNK = (16, 16, 8)


@pytest.fixture(scope="module")
def planes(tmp_path_factory):
    return write_planes(str(tmp_path_factory.mktemp("planes")), make_volume(SHAPE, "uint16", seed=4))


def objects(storage) -> dict[str, bytes]:
    """Every object but what differs by design: the done records (a line per task in a local
    file, an object per task elsewhere) and the chunks' checksum files, which a local directory
    keeps (they are updated in place) and an object store needs not (objects appear whole)."""
    return {k: storage.get(k) for k in storage.list()
            if not (k == DONE_LOG or k.startswith(DONE_OBJECTS + "/") or k.endswith("/" + CHECKSUMS))}


def converted_like_locally(tmp_path, planes, remote, format, options) -> dict[str, bytes]:
    """Convert ``planes`` into ``remote`` and into a local directory of the same last name (an
    NGFF image is named after its dataset), with two worker processes (the storage travels to
    them pickled, as to a Dask cluster); assert the objects are the local files; return them."""
    local = LocalStorage(tmp_path / "local" / "brain")
    for dest in (local, remote):
        convert(planes, dest, format=format, chunk_size=CHUNK, n_cores=2, **options)
    got, want = objects(remote), objects(local)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
    return got


@pytest.mark.parametrize("format, options", [
    ("precomputed", {"sharded": False}), ("precomputed", {"sharded": True}),
    ("precomputed", {"encoding": "png", "sharded": False}),
    ("zarr", {}), ("ome-zarr", {}), ("ome-zarr", {"ngff_version": "0.4"}),
], ids=["precomputed", "precomputed-sharded", "precomputed-png", "zarr", "ome-zarr-0.5", "ome-zarr-0.4"])
def test_a_conversion_on_object_storage_is_the_local_one(tmp_path, planes, format, options):
    remote = ObjectLikeStorage(tmp_path / "objects" / "brain")
    got = converted_like_locally(tmp_path, planes, remote, format, options)
    assert any(k.startswith(DONE_OBJECTS + "/") for k in remote.list())  # no append there
    # The same call again finds the finished dataset and changes nothing.
    convert(planes, remote, format=format, chunk_size=CHUNK, n_cores=1, **options)
    assert objects(remote) == got


@pytest.mark.parametrize("format, options", [
    ("precomputed", {"sharded": False}), ("precomputed", {"sharded": True}),
    ("precomputed", {"encoding": "png", "sharded": True}),
    ("zarr", {}), ("ome-zarr", {}), ("ome-zarr", {"ngff_version": "0.4"}),
], ids=["precomputed", "precomputed-sharded", "precomputed-png-sharded", "zarr", "ome-zarr-0.5", "ome-zarr-0.4"])
def test_a_conversion_into_a_real_bucket_is_the_local_one(tmp_path, planes, seaweedfs, bucket, monkeypatch,
                                                           format, options):
    """The same on a real S3 server (SeaweedFS), through obstore: every object reads back as
    the local file's bytes (gzip at rest removed), and a rerun changes nothing."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    remote = open_storage(f"s3://{bucket(seaweedfs)}/lab/brain")
    converted_like_locally(tmp_path, planes, remote, format, options)
    versions = {k: st.version for k, st in remote.list_stats()}
    convert(planes, remote, format=format, chunk_size=CHUNK, n_cores=1, **options)
    again = {k: st.version for k, st in remote.list_stats()}
    assert again == versions, [k for k in again if again[k] != versions.get(k)]


def test_an_ome_tiff_on_object_storage_is_the_local_one(tmp_path, planes):
    # Assembled in the temporary directory and streamed in: the same file, but for the UUID in its
    # OME-XML, which is derived from the destination's name (a path here, a URL there).
    local, remote = LocalStorage(tmp_path / "local" / "brain"), ObjectLikeStorage(tmp_path / "objects" / "brain")
    for dest in (local, remote):
        convert(planes, dest, format="ome-tiff", tile_size=16, n_cores=2, block_bytes=1)
    got, want = objects(remote), objects(local)
    assert sorted(got) == sorted(want) == [".precomputed-tif-inputs.json", ".precomputed-tif.json",
                                           "brain.offsets.json", "brain.ome.tif"]
    assert got["brain.offsets.json"] == want["brain.offsets.json"]
    uuids = [re.findall(rb"urn:uuid:[0-9a-f-]{36}", d["brain.ome.tif"]) for d in (got, want)]
    assert len(uuids[0]) == len(uuids[1]) == 1 and uuids[0] != uuids[1]
    assert got["brain.ome.tif"].replace(uuids[0][0], uuids[1][0]) == want["brain.ome.tif"]


@pytest.mark.parametrize("format", ["tiff", "blockfs"])
def test_formats_that_need_a_local_directory_are_refused_first(tmp_path, planes, format):
    remote = ObjectLikeStorage(tmp_path / "objects")
    with pytest.raises(PrecomputedTifError, match=r"^(dest )?mem://\S+: .*local directory"):
        convert(planes, remote, format=format, n_cores=1)
    assert not os.path.exists(tmp_path / "objects")
