"""Faults around local storage that a user meets: a full temporary directory while writing to
storage that is not a local directory, and flushing after a tree was removed."""

from __future__ import annotations

import os
import tempfile

import pytest

from precomputed_tif.convert import convert
from precomputed_tif.errors import PrecomputedTifError
from precomputed_tif.pipeline.progress import DoneLog
from precomputed_tif.storage import LocalStorage
from precomputed_tif.storage.trees import remove_tree
from tests.helpers.full_disk import small_disk
from tests.helpers.object_storage import ObjectLikeStorage
from tests.helpers.stacks import make_volume, write_planes


@pytest.mark.parametrize("options", [dict(format="precomputed", sharded=True), dict(format="ome-zarr")],
                         ids=["precomputed-sharded", "ome-zarr"])
def test_full_temporary_directory_is_named(tmp_path, monkeypatch, options):
    """Shards bound for an object store spill to the system's temporary directory: when that
    fills, the one line must say where (the destination itself has room)."""
    glob = write_planes(tmp_path / "src", make_volume((21, 97, 83), "uint16", seed=5))
    with small_disk(tmp_path / "tmp", size="128k") as small:
        monkeypatch.setattr(tempfile, "tempdir", small)
        with pytest.raises(PrecomputedTifError) as caught:
            convert(glob, ObjectLikeStorage(tmp_path / "bucket"), chunk_size=(16, 16, 16), n_cores=1,
                    progress=False, **options)
    message = str(caught.value)
    assert "\n" not in message
    assert "No space left" in message
    assert small in message, message  # names the temporary directory that is full, not only the bucket


def test_flush_after_removing_a_tree_it_appended_to(tmp_path):
    """A meshing appends its done log under .mesh-work and removes that tree at the end; the
    storage object must still flush afterwards (the removed file needs no flushing)."""
    storage = LocalStorage(tmp_path / "ds")
    DoneLog(storage, ".mesh-work").record("block/0")
    remove_tree(storage, ".mesh-work")
    storage.put("info", b"{}")
    storage.flush()
    assert os.path.exists(tmp_path / "ds" / "info")
