"""The second pipelines write through a Storage: a point layer, sharded indexes, meshes and
segment properties written onto storage with an object store's limits (no local path, no
append: tests/object_storage.py) are the same objects, byte for byte, as on a local
directory, and the independent readers decode them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from precomputed_tif import PrecomputedTifError, convert
from precomputed_tif.annotations import UNFINISHED, PointSet, Property, check_directory, write_points
from precomputed_tif.formats.precomputed.sharding import sharding_spec, write_sharded
from precomputed_tif.meshing import WORK_DIR, _gather
from precomputed_tif.meshing.blocks import plan_blocks, run_block
from precomputed_tif.meshing.merge import MergeTask, plan_groups, run_merge
from precomputed_tif.meshing.multires import MESH_DIR
from precomputed_tif.meshing.segment_properties import build_properties, write_properties
from precomputed_tif.pipeline.progress import DoneLog
from precomputed_tif.storage import LocalStorage
from tests.helpers.annotation_reader import read_layer
from tests.helpers.label_cells import cell_volume
from tests.helpers.mesh_reader import fragments, parse_manifest, read_mesh_dir
from tests.helpers.object_storage import ObjectLikeStorage
from tests.helpers.shard_reader import shard_entries

VOXEL = (0.5, 0.75, 2.0)


def contents(storage, done_records: bool = True) -> dict[str, bytes]:
    """Every object of ``storage`` (but the records of finished tasks, which differ by design
    between storage that can append and storage that cannot)."""
    return {key: storage.get(key) for key in storage.list()
            if done_records or ".precomputed-tif-done" not in key}


def point_set(n: int, seed: int) -> PointSet:
    rng = np.random.default_rng(seed)
    shape = np.array([97.0, 61.0, 23.0])
    points = rng.random((n, 3)) * shape
    points[: n // 4] = points[: n // 4] * 0.05 + 11  # a dense cluster
    size = Property("size", "uint16", rng.integers(0, 2**16, n).astype(np.uint16))
    return PointSet(points, np.zeros(3), shape, [size])


@pytest.mark.parametrize("sharded", [False, True], ids=["unsharded", "sharded"])
def test_point_layer_on_object_storage_is_the_local_layer(tmp_path, sharded):
    ps = point_set(1_301, seed=5)
    local, objects = LocalStorage(tmp_path / "local"), ObjectLikeStorage(tmp_path / "objects")
    for storage in (local, objects):
        write_points(ps, storage, VOXEL, sharded=sharded, limit=150)
    written = contents(objects)
    assert written == contents(local)
    assert "info" in written and UNFINISHED not in written
    assert any(k.endswith(".shard") for k in written) == sharded
    info, levels, by_id, _ = read_layer(objects.root)
    assert len(levels) > 2 and info["properties"][0]["id"] == "size"
    assert sorted(by_id) == list(range(len(ps.points)))
    for i in (0, 17, len(ps.points) - 1):
        np.testing.assert_allclose(by_id[i][0], ps.points[i].astype(np.float32))
    emitted = sorted(a for cells in levels for entries in cells.values() for a, *_ in entries)
    assert emitted == list(range(len(ps.points)))  # every point at exactly one level


def test_unfinished_point_layer_on_object_storage_is_replaced_and_a_finished_one_refused(tmp_path):
    objects = ObjectLikeStorage(tmp_path / "objects")
    # What a killed writer leaves: the marker, part of an index, no info.
    objects.put(UNFINISHED, b"")
    objects.put("spatial0/0_0_0", b"half")
    objects.put("spatial7/1_1_1", b"half")
    check_directory(objects)
    ps = point_set(300, seed=6)
    write_points(ps, objects, VOXEL, sharded=False)
    reference = LocalStorage(tmp_path / "local")
    write_points(ps, reference, VOXEL, sharded=False)
    assert contents(objects) == contents(reference)
    with pytest.raises(PrecomputedTifError, match="finished point layer"):
        check_directory(objects)
    other = ObjectLikeStorage(tmp_path / "other")
    other.put("notes/readme.txt", b"mine")
    with pytest.raises(PrecomputedTifError, match="not empty"):
        write_points(ps, other, VOXEL)
    assert contents(other) == {"notes/readme.txt": b"mine"}


def test_sharded_index_on_object_storage(tmp_path):
    rng = np.random.default_rng(8)
    keys = rng.choice(2**40, 3_001, replace=False).astype(np.uint64)
    values = [rng.bytes(int(n)) for n in rng.integers(0, 90, len(keys))]
    spec = dict(sharding_spec(len(keys)), shard_bits=3, minishard_bits=2)
    local, objects = LocalStorage(tmp_path / "local"), ObjectLikeStorage(tmp_path / "objects")
    written = [write_sharded(s, "deep/index", spec, keys, values, durable=False) for s in (local, objects)]
    objects.flush()
    assert written[0] == written[1] == sorted(objects.list()) and len(written[1]) == 8
    assert contents(objects) == contents(local)
    entries = shard_entries(str(tmp_path / "objects" / "deep" / "index"), spec)
    assert {k: data[a:b] for k, (data, a, b) in entries.items()} == dict(zip(keys.tolist(), values))


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory):
    """A small segmentation (odd sizes, labels far apart) written locally: the voxels the
    meshing reads."""
    root = tmp_path_factory.mktemp("segmentation")
    labels = cell_volume()
    tifffile.imwrite(root / "labels.tif", labels)
    dest = str(root / "dataset")
    convert(str(root / "labels.tif"), dest, format="tiff", segmentation=True, chunk_size=(16, 16, 16),
            voxel_size=VOXEL, n_cores=1)
    return dest, labels


def mesh_into(storage, dataset: str, size, sharded: bool, node: int = 16) -> dict[int, int]:
    """The meshing's tasks, one after the other, reading the segmentation ``dataset`` (``size``
    x, y, z voxels) and writing into ``storage``; returns the voxel counts."""
    num_lods = 3  # as mesh_dataset chooses for these sizes and nodes
    blocks = plan_blocks(dataset, storage, WORK_DIR, size, num_lods, node, 1)
    done = DoneLog(storage, WORK_DIR)
    for task in blocks:
        done.record(run_block(task))
    counts, n_segments, total = _gather(storage, [t.key for t in blocks])
    spec, groups = plan_groups(n_segments, total, sharded, group_bytes=max(1, total // 3))
    for g in range(groups):
        done.record(run_merge(MergeTask(storage, tuple(t.key for t in blocks), MESH_DIR, spec, groups, g,
                                        num_lods, node)))
    assert done.load() == {t.id for t in blocks} | {f"merge/{g}" for g in range(groups)}
    storage.put(f"{MESH_DIR}/info", json.dumps({"@type": "neuroglancer_multilod_draco",
                                                 "vertex_quantization_bits": 10, "transform": [0] * 12,
                                                 "lod_scale_multiplier": 1.0,
                                                 **({"sharding": spec} if spec else {})}).encode())
    write_properties(storage, build_properties(counts, 0.75, None))
    return counts


@pytest.mark.parametrize("sharded", [False, True], ids=["unsharded", "sharded"])
def test_meshes_and_properties_on_object_storage_are_the_local_ones(tmp_path, segmentation, sharded):
    dataset, labels = segmentation
    local, objects = LocalStorage(tmp_path / "local"), ObjectLikeStorage(tmp_path / "objects")
    counts = [mesh_into(s, dataset, labels.shape[::-1], sharded) for s in (local, objects)]
    assert counts[0] == counts[1]
    assert contents(objects, done_records=False) == contents(local, done_records=False)
    written = contents(objects)
    # The finished tasks are objects of their own: an object store has no append.
    assert any(k.startswith(f"{WORK_DIR}/.precomputed-tif-done.d/") for k in written)
    assert not any(k.endswith(".precomputed-tif-done") for k in written)
    ids, n = np.unique(labels[labels != 0], return_counts=True)
    assert counts[1] == dict(zip(ids.tolist(), n.tolist()))
    properties = json.loads(written["segment_properties/info"])
    assert properties["inline"]["ids"] == [str(i) for i in ids]
    info, meshes = read_mesh_dir(str(tmp_path / "objects" / MESH_DIR))
    assert ("sharding" in info) == sharded
    assert sorted(meshes) == ids.tolist()
    for data, manifest in meshes.values():
        parsed = parse_manifest(manifest)
        assert len(parsed["lods"]) == 3
        pieces = list(fragments(data, parsed, 10))
        assert any(len(faces) for _lod, _position, _q, faces, _stored in pieces)


def test_overwrite_on_object_storage_deletes_only_the_datasets_objects(tmp_path):
    """--overwrite lists and deletes the old dataset's objects (info, its levels, meshes, records)
    and leaves what is beside it; without --overwrite nothing is touched."""
    from precomputed_tif.pipeline.destination import JOB_RECORD, prepare

    objects = ObjectLikeStorage(tmp_path / "objects")
    old_info = {"scales": [{"key": "1_1_1"}, {"key": "2_2_2"}], "mesh": "mesh", "segment_properties":
                "segment_properties"}
    dataset = {"info": json.dumps(old_info).encode(), JOB_RECORD: b'{"format": "tiff"}',
               "1_1_1/0-16_0-16_0-16.tiff": b"a", "2_2_2/0-8_0-8_0-8.tiff": b"b", "mesh/info": b"{}",
               "mesh/3.index": b"m", "segment_properties/info": b"{}", ".mesh-work/job.json": b"{}",
               ".precomputed-tif-done.d/x": b""}
    beside = {"points/info": b"{}", "points/spatial0/0_0_0": b"p", "notes.txt": b"mine", "1_1_1x/keep": b"k"}
    for key, data in {**dataset, **beside}.items():
        objects.put(key, data)
    job = {"format": "tiff", "info": {"scales": [{"key": "1_1_1"}]}}
    with pytest.raises(PrecomputedTifError, match="already holds a different precomputed dataset"):
        prepare(objects, job, overwrite=False)
    assert contents(objects) == {**dataset, **beside}
    prepare(objects, job, overwrite=True)
    assert contents(objects) == {**beside, JOB_RECORD: json.dumps(job, indent=1).encode()}
