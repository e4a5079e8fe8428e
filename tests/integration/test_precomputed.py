"""Native precomputed output: every encoding, sharded and not, read back by tensorstore and by a
reader written from the spec, and the choices a user cannot get wrong silently."""

import gzip
import json
import os

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert, open_volume
from precomputed_tif.cli.convert import main
from precomputed_tif.geometry import Geometry
from tests.helpers.annotation_reader import morton_decode, read_shards
from tests.helpers.stacks import make_volume, reference_pyramid, write_planes

SHAPE = (45, 70, 100)  # z, y, x: nothing divides the chunk size
CHUNK = (16, 16, 16)


def tensorstore_levels(dest, n_scales):
    """Every scale as tensorstore's neuroglancer_precomputed driver reads it: (c, z, y, x)."""
    import tensorstore as ts

    out = []
    for i in range(n_scales):
        t = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{os.path.abspath(dest)}",
                     "scale_index": i}).result()
        out.append(np.asarray(t.read().result()).transpose(3, 2, 1, 0))
    return out


def spec_levels(dest):
    """Every scale read from the files with the format's description alone (no project code)."""
    import imagecodecs

    with open(os.path.join(dest, "info")) as f:
        info = json.load(f)
    dtype = np.dtype(info["data_type"])
    c = info["num_channels"]
    out = []
    for scale in info["scales"]:
        (sx, sy, sz), (cx, cy, cz) = scale["size"], scale["chunk_sizes"][0]
        grid = [-(-s // k) for s, k in zip((sx, sy, sz), (cx, cy, cz))]
        level = np.zeros((c, sz, sy, sx), dtype)
        directory = os.path.join(dest, scale["key"])
        if "sharding" in scale:
            spec = scale["sharding"]
            chunks = {}
            for key, value in read_shards(directory, spec).items():
                if spec["data_encoding"] == "gzip":
                    value = gzip.decompress(value)
                chunks[morton_decode(key, grid)] = value
            assert len(chunks) == np.prod(grid)
        else:
            chunks = {}
            for name in os.listdir(directory):
                x0, x1, y0, y1, z0, z1 = map(int, name.replace("_", "-").split("-"))
                assert (x1, y1, z1) == (min(x0 + cx, sx), min(y0 + cy, sy), min(z0 + cz, sz))
                with open(os.path.join(directory, name), "rb") as f:
                    chunks[(x0 // cx, y0 // cy, z0 // cz)] = f.read()
        for (ix, iy, iz), data in chunks.items():
            x0, y0, z0 = ix * cx, iy * cy, iz * cz
            x1, y1, z1 = min(x0 + cx, sx), min(y0 + cy, sy), min(z0 + cz, sz)
            shape = (c, z1 - z0, y1 - y0, x1 - x0)
            enc = scale["encoding"]
            if enc == "raw":
                array = np.frombuffer(data, dtype.newbyteorder("<")).reshape(shape)
            elif enc in ("png", "jpeg"):
                image = (imagecodecs.png_decode if enc == "png" else imagecodecs.jpeg8_decode)(data)
                array = np.moveaxis(image.reshape(shape[1], shape[2], shape[3], c), -1, 0)
            else:
                import compressed_segmentation as cseg

                xyz = cseg.decompress(data, (shape[3], shape[2], shape[1]), dtype,
                                      block_size=scale["compressed_segmentation_block_size"], order="F")
                array = xyz.transpose(2, 1, 0)[None]
            level[:, z0:z1, y0:y1, x0:x1] = array
        out.append(level)
    return info, out


def reference(volume, info, segmentation):
    """(c, z, y, x) reference pyramid for a (c, z, y, x) volume."""
    x, y, z = info["scales"][0]["size"]
    g = Geometry((x, y, z), CHUNK, [r / 1000 for r in info["scales"][0]["resolution"]], len(info["scales"]))
    per_channel = [reference_pyramid(v, [lv.step for lv in g.levels], segmentation) for v in volume]
    return [np.stack(levels) for levels in zip(*per_channel)]


CASES = [
    # (name, dtype, channels, segmentation, encoding, sharded)
    ("raw sharded", "uint16", 1, False, "raw", True),
    ("raw unsharded", "int16", 1, False, "raw", False),
    ("raw two channels sharded", "uint8", 2, False, "raw", True),
    ("png sharded", "uint8", 1, False, "png", True),
    ("png uint16 unsharded", "uint16", 1, False, "png", False),
    ("compressed_segmentation sharded", "uint16", 1, True, None, True),
    ("compressed_segmentation uint64 unsharded", "uint64", 1, True, None, False),
]


@pytest.mark.parametrize("name,dtype,channels,segmentation,encoding,sharded", CASES, ids=[c[0] for c in CASES])
def test_lossless_encodings_read_back_exactly(tmp_path, name, dtype, channels, segmentation, encoding, sharded):
    volume = np.stack([make_volume(SHAPE, dtype, segmentation=segmentation, seed=50 + c) for c in range(channels)])
    if dtype == "int16":
        volume = (volume.astype(np.int32) - 30000).astype(np.int16)
    path = tmp_path / "stack.tif"
    if channels > 1:
        tifffile.imwrite(path, volume.transpose(1, 0, 2, 3), ome=True, metadata={"axes": "ZCYX"})
    else:
        tifffile.imwrite(path, volume[0])
    dest = tmp_path / "out"
    info = convert(str(path), str(dest), format="precomputed", chunk_size=CHUNK, segmentation=segmentation,
                   encoding=encoding, sharded=sharded, n_cores=2, block_bytes=32**3 * 8)
    if segmentation:
        assert info["scales"][0]["encoding"] == "compressed_segmentation"
        assert info["data_type"] == ("uint64" if dtype == "uint64" else "uint32")  # widened for the encoding
    refs = reference(volume, info, segmentation)
    spec_info, by_spec = spec_levels(dest)
    assert spec_info == info
    assert any("sharding" in s for s in info["scales"]) == sharded
    by_tensorstore = tensorstore_levels(dest, len(info["scales"]))
    for scale, ref, a, b in zip(info["scales"], refs, by_spec, by_tensorstore):
        np.testing.assert_array_equal(a, ref, err_msg=scale["key"])
        np.testing.assert_array_equal(b, ref, err_msg=scale["key"])
        np.testing.assert_array_equal(open_volume(dest).read(scale["key"]).reshape(ref.shape), ref)
    if sharded:
        level_files = [len(os.listdir(dest / s["key"])) for s in info["scales"] if "sharding" in s]
        assert max(level_files) <= 64


def test_jpeg_levels_come_from_lossless_data(tmp_path):
    """Each jpeg level is close to the mean pyramid of the source, not to means of decoded jpeg."""
    from precomputed_tif.sources.synthetic import synthetic_planes

    volume = (np.stack(list(synthetic_planes((40, 90, 110), seed=3))) // 12).astype(np.uint8)[None]
    tifffile.imwrite(tmp_path / "s.tif", volume[0])
    # A small budget: later passes read back a level, which must be its lossless copy.
    info = convert(str(tmp_path / "s.tif"), str(tmp_path / "out"), format="precomputed", encoding="jpeg",
                   jpeg_quality=95, chunk_size=CHUNK, n_cores=1, block_bytes=16**3)
    assert info["scales"][0]["encoding"] == "jpeg" and info["scales"][0]["jpeg_quality"] == 95
    refs = reference(volume, info, False)
    for scale, ref, got in zip(info["scales"], refs, tensorstore_levels(tmp_path / "out", len(info["scales"]))):
        mse = np.mean((got.astype(float) - ref) ** 2)
        psnr = 10 * np.log10(255**2 / max(mse, 1e-9))
        assert psnr > 35, (scale["key"], psnr)
    assert not any(".lossless" in d for d, _, _ in os.walk(tmp_path / "out"))


@pytest.mark.parametrize("sharded", [False, True], ids=["unsharded", "sharded"])
@pytest.mark.parametrize("where", ["local", "object"])
def test_lossless_copies_are_kept_and_dropped_on_any_storage(tmp_path, where, sharded):
    """A jpeg level that later passes read back keeps exact copies under ``.lossless``, read
    instead of the jpeg chunks; dropping them leaves the jpeg chunks and nothing of the copies
    (in a local directory, not even the directory). On storage with an object store's limits
    too, where nothing may use a path."""
    from precomputed_tif.convert import plan_conversion
    from precomputed_tif.storage import LocalStorage
    from tests.helpers.object_storage import ObjectLikeStorage
    from tests.helpers.store_contract import Subject, assert_same

    glob = write_planes(tmp_path / "src", make_volume((21, 37, 45), "uint8", seed=8))
    plan = plan_conversion(glob, str(tmp_path / "unused"), format="precomputed", encoding="jpeg", sharded=sharded,
                           chunk_size=CHUNK, levels=2)
    storage = (ObjectLikeStorage if where == "object" else LocalStorage)(tmp_path / "out")
    store = plan.store(storage, plan.info)
    key = plan.geometry.level(1).key
    store.lossless_copies = frozenset({key})
    store.create()
    s = Subject(store, plan.geometry, plan.passes, False)
    data = s.volume(1)
    s.write_level(1, data)
    copies = list(storage.list(f"{key}/.lossless"))
    assert len(copies) == len(s.chunks(1))
    assert store.holds(storage, key)
    assert_same(store.read_region(key, plan.geometry.level(1).bounds), data, "read from the lossless copies")
    store.drop_lossless_copies()
    assert not list(storage.list(f"{key}/.lossless"))
    if where == "local":  # an object store has no directories to leave behind
        assert not os.path.exists(tmp_path / "out" / key / ".lossless")
    published = type(store)(storage, plan.info)  # as a server opens it: the jpeg chunks
    assert ("sharding" in plan.info["scales"][0]) == sharded
    for box in s.chunks(1):
        got = published.read_chunk(key, box).astype(float)
        assert np.abs(got - data[box.slices]).mean() < 8, f"jpeg chunk {box.name}"


@pytest.mark.parametrize("args,words", [
    (["--encoding", "jpeg"], ["jpeg", "uint8", "png"]),
    (["--encoding", "webp"], ["webp", "raw"]),
    (["--encoding", "png", "--jpeg-quality", "80"], ["--jpeg-quality", "jpeg"]),
    (["--encoding", "compressed_segmentation"], ["compressed_segmentation", "labels"]),
])
def test_encodings_that_do_not_fit_the_data_are_refused(tmp_path, capsys, args, words):
    glob = write_planes(tmp_path / "src", make_volume((5, 20, 30), "uint16"))
    code = main(["--source", glob, "--dest", str(tmp_path / "out"), "--format", "precomputed", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    assert not os.path.exists(tmp_path / "out" / "info")


def test_precomputed_options_need_the_precomputed_format(tmp_path, capsys):
    glob = write_planes(tmp_path / "src", make_volume((5, 20, 30), "uint8"))
    code = main(["--source", glob, "--dest", str(tmp_path / "out"), "--encoding", "png"])
    assert code == 2 and "--format precomputed" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["blockfs", "zarr"])
def test_an_existing_dataset_is_stored_again_without_its_planes(tmp_path, fmt):
    volume = make_volume(SHAPE, "uint16", seed=60)
    glob = write_planes(tmp_path / "src", volume)
    first = convert(glob, str(tmp_path / "orig"), format=fmt, chunk_size=CHUNK, voxel_size=(0.5, 0.5, 3.0),
                    n_cores=1)
    for f in os.listdir(tmp_path / "src"):
        os.unlink(tmp_path / "src" / f)
    code = main(["--source", str(tmp_path / "orig"), "--dest", str(tmp_path / "pub"), "--format", "precomputed",
                 "--chunk-size", "16,16,16", "--n-cores", "2"])
    assert code == 0
    with open(tmp_path / "pub" / "info") as f:
        info = json.load(f)
    assert [s["resolution"] for s in info["scales"]] == [s["resolution"] for s in first["scales"]]
    for scale, got in zip(info["scales"], tensorstore_levels(tmp_path / "pub", len(info["scales"]))):
        np.testing.assert_array_equal(got[0], open_volume(tmp_path / "orig").read(scale["key"]))


@pytest.mark.parametrize("grid", [(16, 16, 4), (5, 7, 3), (32, 2, 9), (1, 1, 1), (8, 8, 8)])
def test_the_chunks_of_a_shard_make_the_box_the_planner_expects(grid):
    """With identity hashing, the chunks sharing all Morton bits above the lowest n are an
    aligned box of 2**box_bits(grid, n) chunks per axis (cut where the grid ends)."""
    from precomputed_tif.geometry import box_bits

    cells = np.array([(x, y, z) for z in range(grid[2]) for y in range(grid[1]) for x in range(grid[0])])
    from precomputed_tif.formats.precomputed.sharding import compressed_morton_codes

    codes = compressed_morton_codes(cells, grid)
    assert all(morton_decode(int(c), grid) == tuple(cell) for c, cell in zip(codes, cells))
    total = sum(int(np.ceil(np.log2(g))) if g > 1 else 0 for g in grid)
    for n in range(total + 1):
        bits = box_bits(grid, n)
        size = [2**b for b in bits]
        for shard in set((codes >> np.uint64(n)).tolist()):
            members = cells[(codes >> np.uint64(n)) == shard]
            lo = members.min(axis=0)
            assert all(lo % size == 0)
            expected = {tuple(lo + d) for d in np.ndindex(*size) if all(lo + d < grid)}
            assert {tuple(m) for m in members} == expected


def test_planning_writes_nothing(tmp_path):
    from precomputed_tif.convert import plan_conversion

    glob = write_planes(tmp_path / "src", make_volume((64, 300, 260), "uint8"))
    plan = plan_conversion(glob, str(tmp_path / "out"), format="precomputed", chunk_size=CHUNK)
    assert not os.path.exists(tmp_path / "out")
    sharded = {s["key"] for s in plan.info["scales"] if "sharding" in s}
    assert "1_1_1" in sharded and plan.info["scales"][-1]["key"] not in sharded
    written = [n for p in plan.passes for n in range(p.first if p.from_source else p.first + 1, p.last + 1)]
    assert written == list(range(1, len(plan.info["scales"]) + 1))  # every level, once


def test_rerunning_a_meshed_conversion_keeps_its_meshes(tmp_path):
    from precomputed_tif import mesh_dataset

    labels = np.zeros((20, 30, 40), np.uint16)
    labels[4:14, 5:20, 6:30] = 3
    glob = write_planes(tmp_path / "src", labels)
    dest = str(tmp_path / "out")
    convert(glob, dest, segmentation=True, chunk_size=CHUNK, n_cores=1)
    meshed = mesh_dataset(dest, n_cores=1)
    assert meshed["mesh"] and meshed["segment_properties"]
    info = convert(glob, dest, segmentation=True, chunk_size=CHUNK, n_cores=1)  # the same command again
    assert info["mesh"] == meshed["mesh"] and info["segment_properties"] == meshed["segment_properties"]
    with open(os.path.join(dest, "info")) as f:
        assert json.load(f)["mesh"] == meshed["mesh"]


def test_lossy_labels_are_refused(tmp_path, capsys):
    glob = write_planes(tmp_path / "src", make_volume((5, 20, 30), "uint8", segmentation=True))
    code = main(["--source", glob, "--dest", str(tmp_path / "out"), "--format", "precomputed", "--segmentation",
                 "--encoding", "jpeg"])
    err = capsys.readouterr().err
    assert code == 2 and "lossy" in err and "compressed_segmentation" in err and len(err.strip().splitlines()) == 1
