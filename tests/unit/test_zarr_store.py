"""A Storage as zarr-python's store (storage/zarr_store.py): what zarr-python wrote, read back
through it, equals the array; each kind of byte request gives the bytes of the file; writes are
refused. (On real buckets: tests/integration/test_bucket_ome_zarr_source.py.)"""

from __future__ import annotations

import numpy as np
import pytest

zarr = pytest.importorskip("zarr", minversion="3")

from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest  # noqa: E402
from zarr.core.buffer import default_buffer_prototype  # noqa: E402
from zarr.core.sync import sync  # noqa: E402

from precomputed_tif.storage import LocalStorage  # noqa: E402
from precomputed_tif.storage.zarr_store import StorageZarrStore  # noqa: E402


@pytest.fixture
def sharded(tmp_path):
    data = np.random.default_rng(1).integers(0, 60000, (13, 45, 71), dtype=np.uint16)
    group = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=3)
    group.create_array("a/0", shape=data.shape, chunks=(4, 16, 16), shards=(8, 32, 32), dtype=data.dtype)[:] = data
    return tmp_path / "img.zarr", data


def test_zarr_python_reads_an_array_through_a_storage(sharded):
    root, data = sharded
    array = zarr.open_array(store=StorageZarrStore(LocalStorage(str(root))), path="a/0", mode="r")
    np.testing.assert_array_equal(array[:], data)
    np.testing.assert_array_equal(array[3:9, 5:40, 17:70], data[3:9, 5:40, 17:70])


def test_byte_requests_listing_and_refused_writes(sharded):
    root, _ = sharded
    store = StorageZarrStore(LocalStorage(str(root)))
    key = "a/0/c/0/0/0"
    whole = (root / "a" / "0" / "c" / "0" / "0" / "0").read_bytes()
    proto = default_buffer_prototype()

    def get(request):
        got = sync(store.get(key, proto, request))
        return None if got is None else got.to_bytes()

    assert get(None) == whole
    assert get(RangeByteRequest(10, 50)) == whole[10:50]
    assert get(OffsetByteRequest(len(whole) - 7)) == whole[-7:]
    assert get(SuffixByteRequest(100)) == whole[-100:]
    assert sync(store.get("a/0/c/9/9/9", proto)) is None
    assert sync(store.exists(key)) and not sync(store.exists("a/0/c/9/9/9"))

    async def names(prefix):
        return sorted([n async for n in store.list_dir(prefix)])

    assert sync(names("")) == ["a", "zarr.json"]
    assert sync(names("a/0")) == ["c", "zarr.json"]
    with pytest.raises(ValueError, match="read-only"):
        sync(store.set(key, proto.buffer.from_bytes(b"x")))
    assert (root / "a" / "0" / "c" / "0" / "0" / "0").read_bytes() == whole
