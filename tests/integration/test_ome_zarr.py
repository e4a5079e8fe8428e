"""OME-Zarr output (NGFF 0.5 and 0.4) and the NGFF metadata of --format zarr: validated by
ome-zarr-models, read back by zarr-python, tensorstore's zarr drivers and ome-zarr-py, every level
equal to a numpy reference pyramid; physical placement; shards; a writer killed and resumed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile
import zarr

from precomputed_tif import convert, open_volume
from precomputed_tif.cli.convert import main
from precomputed_tif.geometry import Geometry
from precomputed_tif.pipeline.progress import DoneLog
from tests.helpers.peak_rss import conversion_peak_rss
from tests.helpers.stacks import make_volume, reference_pyramid, write_planes

SHAPE = (45, 70, 100)  # z, y, x: nothing divides the chunk size
CHUNK = (16, 16, 16)
VARIANTS = [("ome-zarr", "0.5"), ("ome-zarr", "0.4"), ("zarr", None)]


def ngff(dest) -> dict:
    """The root group's NGFF attributes, whichever Zarr version holds them (read by zarr-python)."""
    attrs = dict(zarr.open_group(str(dest), mode="r").attrs)
    return attrs.get("ome", attrs)


def validated(dest):
    """The dataset as the ome-zarr-models package validates it: an Image or an ImageLabel."""
    from ome_zarr_models import open_ome_zarr

    return open_ome_zarr(zarr.open_group(str(dest), mode="r"))


def tensorstore_level(dest, path, version):
    import tensorstore as ts

    driver = "zarr3" if version == "0.5" else "zarr"
    t = ts.open({"driver": driver, "kvstore": {"driver": "file", "path": os.path.join(str(dest), path)}}).result()
    return np.asarray(t.read().result())


def ome_zarr_py_levels(dest) -> list[np.ndarray]:
    """Every level as ome-zarr-py's reader gives it (the reader napari-ome-zarr uses)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(dest)))())
    return [np.asarray(level) for level in nodes[0].data]


def reference(volume, voxel_size=(1.8, 1.8, 2.0), chunk=CHUNK, segmentation=False, levels=None):
    """(c, z, y, x) levels of the reference pyramid, and the geometry they follow."""
    if volume.ndim == 3:
        volume = volume[None]
    z, y, x = volume.shape[1:]
    g = Geometry((x, y, z), chunk, voxel_size, levels)
    per_channel = [reference_pyramid(v, [lv.step for lv in g.levels], segmentation) for v in volume]
    return [np.stack(lv) for lv in zip(*per_channel)], g


def check_ome_zarr(dest, fmt, version, volume, segmentation=False, channels=1, **kw):
    """Valid NGFF of the right version, and every level equal to the reference through four readers."""
    refs, g = reference(volume, segmentation=segmentation, **kw)
    model = validated(dest)
    kind = "ImageLabel" if segmentation else "Image"
    assert type(model).__name__ == kind and f"v0{version[-1] if version else 4}" in type(model).__module__
    attrs = ngff(dest)
    ms = attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == (["c"] if channels > 1 else []) + ["z", "y", "x"]
    assert all(a.get("unit") == "micrometer" for a in ms["axes"] if a["type"] == "space")
    paths = [d["path"] for d in ms["datasets"]]
    assert paths == ([str(i) for i in range(len(g.levels))] if fmt == "ome-zarr" else [lv.key for lv in g.levels])
    info = json.load(open(os.path.join(dest, "info")))
    assert [s["key"] for s in info["scales"]] == paths
    vol = open_volume(str(dest))
    through_py = ome_zarr_py_levels(dest)
    assert len(through_py) == len(refs)
    for path, ref, py in zip(paths, refs, through_py):
        shape = ref.shape if channels > 1 else ref.shape[1:]
        for got in (zarr.open_array(os.path.join(str(dest), path), mode="r")[:],
                    tensorstore_level(dest, path, version or "0.4"), py, vol.read(path)):
            assert got.shape == shape, path
            if volume.dtype.kind == "f":
                np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-6, err_msg=path)
            else:
                np.testing.assert_array_equal(got.reshape(ref.shape), ref, err_msg=path)
    return attrs


@pytest.mark.parametrize("fmt,version", VARIANTS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_every_level_equals_the_source_through_every_reader(tmp_path, fmt, version, dtype):
    volume = make_volume(SHAPE, dtype, seed=1)
    if dtype == "int16":
        volume[:, :3] = -32768
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format=fmt, ngff_version=version, chunk_size=CHUNK, n_cores=2,
            block_bytes=32**3 * 4)
    attrs = check_ome_zarr(tmp_path / "out", fmt, version, volume)
    window = attrs["omero"]["channels"][0]["window"]
    info = json.load(open(tmp_path / "out" / "info"))
    assert [window["start"], window["end"]] == info["precomputed_tif"]["display_range"][0]
    if dtype != "float32":
        assert (window["min"], window["max"]) == (np.iinfo(dtype).min, np.iinfo(dtype).max)


@pytest.mark.parametrize("fmt,version", VARIANTS)
def test_channels_get_their_colours_and_windows(tmp_path, fmt, version):
    volume = np.stack([make_volume(SHAPE, "uint16", seed=s) // (s - 19) for s in (20, 21)])  # c, z, y, x
    path = tmp_path / "two.ome.tif"
    tifffile.imwrite(path, volume.transpose(1, 0, 2, 3), ome=True, metadata={"axes": "ZCYX"})
    convert(str(path), str(tmp_path / "out"), format=fmt, ngff_version=version, chunk_size=CHUNK, n_cores=1)
    attrs = check_ome_zarr(tmp_path / "out", fmt, version, volume, channels=2)
    channels = attrs["omero"]["channels"]
    assert [c["color"] for c in channels] == ["00FF00", "FF00FF"]
    assert channels[1]["window"]["end"] < channels[0]["window"]["end"]  # channel 1 was halved
    scale = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale[0] == 1.0


@pytest.mark.parametrize("fmt,version", VARIANTS)
def test_segmentation_is_a_label_image(tmp_path, fmt, version):
    volume = make_volume(SHAPE, "uint32", segmentation=True, seed=2)
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format=fmt, ngff_version=version, chunk_size=CHUNK, segmentation=True,
            n_cores=1)
    attrs = check_ome_zarr(tmp_path / "out", fmt, version, volume, segmentation=True)
    assert "image-label" in attrs and "omero" not in attrs
    assert attrs["multiscales"][0]["type"] == "mode"


@pytest.mark.parametrize("fmt,version", VARIANTS)
def test_a_feature_lands_at_the_same_physical_point_at_every_level(tmp_path, fmt, version):
    """NGFF puts voxel i's centre at i * scale + translation: a bright cube's centroid, computed
    that way from the stored metadata, is the same at every level -- and is where the precomputed
    info puts it (voxel i covers [i, i + 1) * resolution)."""
    volume = np.zeros((40, 50, 60), np.uint16)
    volume[16:24, 8:16, 32:40] = 1000  # aligned with 8 voxels, so every level keeps it whole
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format=fmt, ngff_version=version, chunk_size=(8, 8, 8),
            voxel_size=(0.5, 0.5, 3.0), levels=4, n_cores=1)
    ms = ngff(tmp_path / "out")["multiscales"][0]
    centroids = []
    for d in ms["datasets"]:
        scale, translation = (t[t["type"]] for t in d["coordinateTransformations"])
        level = zarr.open_array(str(tmp_path / "out" / d["path"]), mode="r")[:].astype(float)
        idx = np.indices(level.shape).reshape(3, -1)
        weights = level.reshape(-1)
        centre = (idx * weights).sum(axis=1) / weights.sum()
        centroids.append(centre * np.array(scale) + np.array(translation))
    expected = np.array([20 * 3.0, 12 * 0.5, 36 * 0.5])  # z, y, x in µm: the cube's middle
    for c in centroids:
        np.testing.assert_allclose(c, expected, atol=1e-9)
    factors = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert factors[1] == [3.0, 1.0, 1.0] and factors[3][0] == 6.0  # anisotropic: z waits for x and y


@pytest.mark.slow
def test_shards_hold_512_chunks_of_the_finest_level(tmp_path):
    """At the finest level one shard file holds at least 512 chunks (or the whole level), so a
    large volume is not one file per chunk; every shard is one task's."""
    volume = make_volume((60, 150, 170), "uint8", seed=3)
    glob = write_planes(tmp_path / "src", volume)
    convert(glob, str(tmp_path / "out"), format="ome-zarr", chunk_size=(8, 8, 8), n_cores=2, block_bytes=16**3)
    meta = json.load(open(tmp_path / "out" / "0" / "zarr.json"))
    shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
    inner = meta["codecs"][0]["configuration"]["chunk_shape"]
    assert meta["codecs"][0]["name"] == "sharding_indexed"
    per_shard = [s // i for s, i in zip(shard, inner)]
    grid = [-(-n // i) for n, i in zip(meta["shape"], inner)]
    assert np.prod([min(p, g) for p, g in zip(per_shard, grid)]) >= 512
    files = [f for _, _, fs in os.walk(tmp_path / "out" / "0" / "c") for f in fs]
    n_chunks = int(np.prod(grid))
    assert len(files) == int(np.prod([-(-g // p) for g, p in zip(grid, per_shard)]))
    assert len(files) * 64 <= n_chunks  # here 2 files for 1,520 chunks, against one per chunk
    check_ome_zarr(tmp_path / "out", "ome-zarr", "0.5", volume, chunk=(8, 8, 8))


def test_command_line_and_re_export_of_an_existing_dataset(tmp_path, capsys):
    volume = make_volume(SHAPE, "uint16", seed=4)
    glob = write_planes(tmp_path / "src", volume)
    assert main(["--source", glob, "--dest", str(tmp_path / "blockfs"), "--format", "blockfs",
                 "--chunk-size", "16,16,16", "--no-progress"]) == 0
    for name in os.listdir(tmp_path / "src"):
        os.unlink(tmp_path / "src" / name)
    assert main(["--source", str(tmp_path / "blockfs"), "--dest", str(tmp_path / "v5"), "--format", "ome-zarr",
                 "--chunk-size", "16,16,16", "--no-progress"]) == 0
    assert main(["--source", str(tmp_path / "v5"), "--dest", str(tmp_path / "v4"), "--format", "ome-zarr",
                 "--ngff-version", "0.4", "--chunk-size", "16,16,16", "--no-progress"]) == 0
    # The default 64-voxel chunks leave 2 of the source's 4 levels meaningful: those are kept.
    assert main(["--source", str(tmp_path / "v4"), "--dest", str(tmp_path / "big"), "--format", "ome-zarr",
                 "--no-progress"]) == 0
    check_ome_zarr(tmp_path / "big", "ome-zarr", "0.5", volume, chunk=(64, 64, 64))
    for dest, version in (("v5", "0.5"), ("v4", "0.4")):
        check_ome_zarr(tmp_path / dest, "ome-zarr", version, volume)


@pytest.mark.parametrize("args,message", [
    (["--format", "ome-zarr", "--ngff-version", "0.6"], "--ngff-version must be one of 0.4, 0.5"),
    (["--format", "zarr", "--ngff-version", "0.4"], "--ngff-version goes with --format ome-zarr"),
    (["--format", "ome-zarr", "--encoding", "raw"], "go with --format precomputed"),
])
def test_mistakes_are_one_line(tmp_path, capsys, args, message):
    glob = write_planes(tmp_path / "src", make_volume((3, 20, 20), "uint8"))
    assert main(["--source", glob, "--dest", str(tmp_path / "out"), "--no-progress"] + args) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "out")


def test_overwrite_replaces_an_ome_zarr_and_keeps_the_rest(tmp_path):
    volume = make_volume(SHAPE, "uint16", seed=5)
    glob = write_planes(tmp_path / "src", volume)
    dest = tmp_path / "out"
    convert(glob, str(dest), format="ome-zarr", chunk_size=CHUNK, n_cores=1)
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="already holds"):
        convert(glob, str(dest), format="ome-zarr", ngff_version="0.4", chunk_size=CHUNK, n_cores=1)
    convert(glob, str(dest), format="ome-zarr", ngff_version="0.4", chunk_size=CHUNK, n_cores=1, overwrite=True)
    assert not os.path.exists(dest / "zarr.json") and not os.path.exists(dest / "0" / "zarr.json")
    assert (dest / "notes.txt").read_text() == "mine"
    check_ome_zarr(dest, "ome-zarr", "0.4", volume)
    convert(glob, str(dest), format="ome-zarr", chunk_size=CHUNK, n_cores=1, overwrite=True)
    assert not os.path.exists(dest / ".zattrs") and not os.path.exists(dest / "0" / ".zarray")
    check_ome_zarr(dest, "ome-zarr", "0.5", volume)


KILLED = textwrap.dedent("""
    import sys
    from precomputed_tif import convert
    if __name__ == "__main__":
        convert(sys.argv[1], sys.argv[2], format="ome-zarr", chunk_size=(8, 8, 8), n_cores=2,
                block_bytes=16 * 16 * 16 * 2)
""")


@pytest.mark.slow
def test_writer_killed_then_rerun_gives_the_same_dataset(tmp_path):
    """Killed at random moments, the writer leaves only whole shards (each readable, each equal to
    the reference); the same command then finishes the dataset."""
    volume = make_volume((48, 90, 110), "uint16", seed=6)
    glob = write_planes(tmp_path / "src", volume)
    dest = str(tmp_path / "out")
    refs, _ = reference(volume, chunk=(8, 8, 8))
    for delay in (0.05, 0.3):
        proc = subprocess.Popen([sys.executable, "-c", KILLED, glob, dest], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not DoneLog(dest).load():
            time.sleep(0.005)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not os.path.exists(os.path.join(dest, "info")) or proc.returncode == 0
        for i, ref in enumerate(refs):  # what is there is whole, and right
            if not os.path.exists(os.path.join(dest, str(i), "zarr.json")):
                continue
            array = zarr.open_array(os.path.join(dest, str(i)), mode="r")
            got = array[:]
            present = got != 0
            np.testing.assert_array_equal(got[present], ref[0][present])
    convert(glob, dest, format="ome-zarr", chunk_size=(8, 8, 8), n_cores=2, block_bytes=16 * 16 * 16 * 2)
    check_ome_zarr(dest, "ome-zarr", "0.5", volume, chunk=(8, 8, 8))


def files_of(dest) -> dict[str, bytes]:
    """Every file of a dataset but the conversion's own records, by relative path."""
    out = {}
    for base, _, names in os.walk(dest):
        for n in names:
            if not n.startswith(".precomputed-tif"):
                path = os.path.join(base, n)
                out[os.path.relpath(path, dest)] = open(path, "rb").read()
    return out


@pytest.mark.slow
def test_a_dask_cluster_writes_the_same_dataset(tmp_path):
    distributed = pytest.importorskip("distributed")
    glob = write_planes(tmp_path / "src", make_volume(SHAPE, "uint16", seed=7))
    # Shards are planned for at least as many tasks as workers: 4 when the cluster's size is unknown.
    convert(glob, str(tmp_path / "local"), format="ome-zarr", chunk_size=(8, 8, 8), n_cores=4, block_bytes=16**3 * 2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_port=0) as cluster:
        convert(glob, str(tmp_path / "dask"), format="ome-zarr", chunk_size=(8, 8, 8), block_bytes=16**3 * 2,
                dask_scheduler=cluster.scheduler_address)
    local, dask = files_of(tmp_path / "local"), files_of(tmp_path / "dask")
    local.pop("zarr.json"), dask.pop("zarr.json")  # they name the dataset after its directory
    assert dask == local


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_planes(tmp_path):
    # 128 planes are 16 MiB of voxels, 512 planes 64 MiB: were a shard (or the stack) held in
    # memory, the second run would need about 48 MiB more.
    small = conversion_peak_rss(tmp_path, 128, '{"format": "ome-zarr", "chunk_size": (32, 32, 32)}')
    large = conversion_peak_rss(tmp_path, 512, '{"format": "ome-zarr", "chunk_size": (32, 32, 32)}')
    assert large - small < 12 * 2**20, (small / 2**20, large / 2**20)


def test_overwrite_leaves_zarr_metadata_that_is_not_the_datasets(tmp_path):
    """Replacing a tiff dataset keeps the .zattrs someone wrote beside it; a directory holding
    only a Zarr group's metadata is not empty, so no conversion writes into it unasked."""
    glob = write_planes(tmp_path / "src", make_volume((20, 30, 40), "uint8", seed=8))
    dest = tmp_path / "out"
    convert(glob, str(dest), format="tiff", chunk_size=CHUNK, n_cores=1)
    (dest / ".zattrs").write_text('{"mine": 1}')
    convert(glob, str(dest), format="blockfs", chunk_size=CHUNK, n_cores=1, overwrite=True)
    assert (dest / ".zattrs").read_text() == '{"mine": 1}'
    group = tmp_path / "group"
    group.mkdir()
    (group / ".zgroup").write_text('{"zarr_format": 2}')
    with pytest.raises(Exception, match="not empty"):
        convert(glob, str(group), format="zarr", chunk_size=CHUNK, n_cores=1)


def test_blosc_settings_are_those_zarr_json_declares(tmp_path, monkeypatch):
    """The inner chunks are compressed as the arrays' metadata says, not by a default that
    happens to agree."""
    from precomputed_tif.formats.zarr import store as zarr_store

    monkeypatch.setitem(zarr_store.COMPRESSOR, "cname", "zstd")
    glob = write_planes(tmp_path / "src", make_volume((20, 30, 40), "uint16", seed=9))
    convert(glob, str(tmp_path / "out"), format="ome-zarr", chunk_size=CHUNK, n_cores=1)
    meta = json.load(open(tmp_path / "out" / "0" / "zarr.json"))
    assert meta["codecs"][0]["configuration"]["codecs"][1]["configuration"]["cname"] == "zstd"
    with open(tmp_path / "out" / "0" / "c" / "0" / "0" / "0", "rb") as f:
        frame = f.read(16)
    assert frame[2] & 0x01 and frame[2] >> 5 == 4  # shuffled, and compressor 4: zstd (Blosc header flags)
