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


def test_a_source_dataset_whose_level_is_a_symlink_to_another_disk(tmp_path):
    """Moving a level to another disk and leaving a symlink is common: such a dataset is still a
    source (a server, reading for requests, keeps refusing symlinks out of the dataset)."""
    from precomputed_tif import open_volume
    from precomputed_tif.errors import DamagedData

    volume = make_volume((9, 33, 29), "uint16", seed=8)
    glob = write_planes(tmp_path / "src", volume)
    dataset = tmp_path / "ds"
    convert(glob, str(dataset), format="precomputed", chunk_size=(16, 16, 8), n_cores=1, levels=1)
    os.rename(dataset / "1_1_1", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", dataset / "1_1_1")
    convert(str(dataset), str(tmp_path / "again"), format="zarr", chunk_size=(16, 16, 8), n_cores=1)
    again = open_volume(str(tmp_path / "again"))
    assert (again.read("1_1_1") == volume).all()
    with pytest.raises((DamagedData, PrecomputedTifError), match="leads out of"):
        open_volume(str(dataset)).read("1_1_1")  # confined, as servers open datasets
