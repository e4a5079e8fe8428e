"""Meshes and segment properties of segmentations, read back by independent readers.

cloud-volume reads the meshes as Neuroglancer's multi-resolution format; a reader
written from meshes.md (with DracoPy) checks every level of detail and the octree;
every surface is closed across octree nodes and lies within a voxel of its segment.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from scipy.spatial import cKDTree

from precomputed_tif import PrecomputedTifError, convert
from precomputed_tif.cli.convert import main as tif_main
from precomputed_tif.cli.mesh import main as mesh_main
from precomputed_tif.meshing import mesh_dataset
from tests.helpers.label_cells import BIG_ID, cell_volume
from tests.helpers.mesh_reader import fragments, parse_manifest, read_mesh_dir, to_model

VOXEL = (0.5, 0.5, 1.0)  # microns
NODE = 16
FORMATS = ("tiff", "zarr", "blockfs", "precomputed")  # precomputed: compressed_segmentation chunks


@pytest.fixture(scope="module")
def labels():
    return cell_volume()


@pytest.fixture(scope="module")
def datasets(labels, tmp_path_factory):
    """The labels converted in every format (with an anisotropic voxel size: levels 2_2_1 first),
    meshed serially with small octree nodes: several nodes and levels of detail per segment."""
    root = tmp_path_factory.mktemp("mesh")
    tifffile.imwrite(root / "labels.tif", labels)
    out = {}
    for fmt in FORMATS:
        dest = str(root / fmt)
        convert(str(root / "labels.tif"), dest, format=fmt, segmentation=True, chunk_size=(16, 16, 16),
                voxel_size=VOXEL, n_cores=1)
        mesh_dataset(dest, n_cores=1, node=NODE, sharded=fmt != "zarr")
        out[fmt] = dest
    return out


def closed(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Edges not shared by exactly two triangles, vertices at the same place taken as one."""
    _, key = np.unique(np.round(vertices, 3), axis=0, return_inverse=True)
    f = key.ravel()[faces]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    edges = edges[edges[:, 0] != edges[:, 1]]
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts != 2).sum())


def voxel_coords(nm: np.ndarray, scale: dict) -> np.ndarray:
    """Positions in voxels of the finest scale, voxel centres at whole numbers (x, y, z)."""
    return nm / np.array(scale["resolution"]) - 0.5


@pytest.mark.parametrize("fmt", FORMATS)
def test_cloud_volume_reads_a_closed_surface_of_every_segment(datasets, labels, fmt):
    from cloudvolume import CloudVolume

    cv = CloudVolume(f"file://{datasets[fmt]}", progress=False)
    with open(os.path.join(datasets[fmt], "info")) as f:
        info = json.load(f)
    assert info["mesh"] == "mesh" and info["segment_properties"] == "segment_properties"
    segments = [int(s) for s in np.unique(labels) if s]
    assert cv.mesh.meta.is_sharded() == (fmt != "zarr")
    for seg in segments:
        mesh = cv.mesh.get(seg)
        mesh = mesh[seg] if isinstance(mesh, dict) else mesh
        assert len(mesh.faces) > 0, f"segment {seg} has no mesh"
        assert closed(mesh.vertices, mesh.faces) == 0, f"segment {seg}'s surface has holes or seams"
        xyz = voxel_coords(mesh.vertices, info["scales"][0])
        voxels = np.argwhere(labels == seg)[:, ::-1]
        distance, _ = cKDTree(voxels).query(xyz)
        # Marching cubes puts the surface half way between voxel centres; quantization adds < 0.02.
        assert distance.max() <= 0.55, (seg, distance.max())
        np.testing.assert_allclose(xyz.min(0), voxels.min(0) - 0.5, atol=0.02)
        np.testing.assert_allclose(xyz.max(0), voxels.max(0) + 0.5, atol=0.02)


def test_every_level_of_detail_follows_the_spec(datasets, labels):
    info, meshes = read_mesh_dir(os.path.join(datasets["tiff"], "mesh"))
    with open(os.path.join(datasets["tiff"], "info")) as f:
        scale = json.load(f)["scales"][0]
    bits = info["vertex_quantization_bits"]
    assert sorted(meshes) == [int(s) for s in np.unique(labels) if s]
    worst = {}
    for seg, (data, raw) in meshes.items():
        manifest = parse_manifest(raw)
        lods = manifest["lods"]
        assert len(lods) == 4
        for lod, level in enumerate(lods):
            p = level["positions"].astype(np.int64)
            codes = [sum(((int(v[a]) >> b) & 1) << (3 * b + a) for b in range(8) for a in range(3)) for v in p]
            assert codes == sorted(codes), "nodes are not in Z-curve order"
            if lod + 1 < len(lods):  # every node has its parent: Neuroglancer walks down from the top
                parents = {tuple(v) for v in lods[lod + 1]["positions"]}
                assert all(tuple(v >> 1) in parents for v in p), (seg, lod)
        voxels = np.argwhere(labels == seg)[:, ::-1]
        tree = cKDTree(voxels)
        for lod, _, q, faces, stored in fragments(data, manifest, bits):
            if lod > 0:  # no triangle crosses the middle of its node on any axis (Neuroglancer's octants)
                tri = q[faces]
                half = 2 ** (bits - 1)
                assert np.all((tri <= half).all(1) | (tri >= half).all(1)), (seg, lod)
            xyz = voxel_coords(to_model(info, stored), scale)
            d, _ = tree.query(xyz)
            worst[lod] = max(worst.get(lod, 0), d.max())
    # A coarse level is made from voxels 2**lod times larger (each the most frequent label of the
    # fine ones): its surface can be a coarse voxel further out.
    for lod, d in worst.items():
        print(lod, d)
        assert d <= 0.55 + (2**lod if lod else 0), (lod, d)


def test_segment_properties_count_every_voxel(datasets, labels):
    for path in datasets.values():
        with open(os.path.join(path, "segment_properties", "info")) as f:
            props = json.load(f)
        assert props["@type"] == "neuroglancer_segment_properties"
        ids, counts = np.unique(labels, return_counts=True)
        assert props["inline"]["ids"] == [str(i) for i in ids[1:]]
        by_id = {p["id"]: p for p in props["inline"]["properties"]}
        assert by_id["voxels"]["values"] == counts[1:].tolist()
        np.testing.assert_allclose(by_id["volume_um3"]["values"], counts[1:] * np.prod(VOXEL), rtol=1e-6)


def test_the_same_meshes_from_two_processes_and_any_block_size(datasets, labels, tmp_path):
    """Two worker processes meshing one node per block write the same bytes as one process
    meshing large blocks."""
    import shutil

    dest = tmp_path / "copy"
    shutil.copytree(datasets["tiff"], dest)
    mesh_dataset(str(dest), n_cores=2, node=NODE, sharded=True, max_block_bytes=100_000)
    for name in os.listdir(os.path.join(datasets["tiff"], "mesh")):
        assert (dest / "mesh" / name).read_bytes() == open(os.path.join(datasets["tiff"], "mesh", name), "rb").read()
    assert not (dest / ".mesh-work").exists()


def test_an_interrupted_run_resumes(datasets, tmp_path):
    """A run stopped (Ctrl-C) after some blocks resumes: the blocks it finished are not meshed
    again, and the result is the same, byte for byte, as a run that was never stopped."""
    import shutil

    import precomputed_tif.meshing as meshing

    small = dict(n_cores=1, node=NODE, sharded=False, max_block_bytes=100_000)  # one node per block
    clean = tmp_path / "clean"
    shutil.copytree(datasets["zarr"], clean)
    mesh_dataset(str(clean), **small)
    dest = tmp_path / "resumed"
    shutil.copytree(datasets["zarr"], dest)
    real = meshing.run_block
    first, second = [], []

    def stopped_after_five(task):
        if len(first) == 5:
            raise KeyboardInterrupt
        first.append(task.id)
        return real(task)

    def recording(task):
        second.append(task.id)
        return real(task)

    try:
        meshing.run_block = stopped_after_five
        with pytest.raises(KeyboardInterrupt):
            mesh_dataset(str(dest), **small)
        assert (dest / meshing.WORK_DIR).exists() and not (dest / "mesh" / "info").exists()
        meshing.run_block = recording
        mesh_dataset(str(dest), **small)
    finally:
        meshing.run_block = real
    assert len(first) == 5 and len(second) > 20 and not set(first) & set(second)
    assert not (dest / meshing.WORK_DIR).exists()
    names = sorted(os.listdir(clean / "mesh"))
    assert names == sorted(os.listdir(dest / "mesh")) and "5.index" in names
    for name in names:
        assert (clean / "mesh" / name).read_bytes() == (dest / "mesh" / name).read_bytes(), name


def test_names_tags_and_columns_from_a_csv_file(datasets, tmp_path, capsys):
    import shutil

    dest = tmp_path / "named"
    shutil.copytree(datasets["blockfs"], dest)
    table = tmp_path / "cells.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "name", "tags", "description", "area", "cell type"])
        w.writerow([5, "big one", "neuron; layer 4", "crosses many nodes", 12.5, "pyramidal"])
        w.writerow([BIG_ID, "corner", "glia", "", 3, "astrocyte"])
        w.writerow([999, "not in the volume", "", "", 1, ""])
    assert mesh_main(["--dataset", str(dest), "--properties", str(table), "--n-cores", "1", "--no-progress"]) == 0
    assert "wrote meshes and properties of" in capsys.readouterr().out
    with open(dest / "segment_properties" / "info") as f:
        inline = json.load(f)["inline"]
    by_id = {p["id"]: p for p in inline["properties"]}
    row = {int(s): i for i, s in enumerate(inline["ids"])}
    assert by_id["name"]["type"] == "label" and by_id["name"]["values"][row[5]] == "big one"
    assert by_id["description"]["values"][row[5]] == "crosses many nodes"
    tags = by_id["tags"]["tags"]
    assert sorted(tags[i] for i in by_id["tags"]["values"][row[5]]) == ["layer_4", "neuron"]
    assert [tags[i] for i in by_id["tags"]["values"][row[BIG_ID]]] == ["glia"]
    assert by_id["area"]["type"] == "number" and by_id["area"]["data_type"] == "float32"
    assert by_id["area"]["values"][row[5]] == 12.5 and by_id["area"]["values"][row[2 + 7]] == 0
    assert by_id["cell type"]["type"] == "string" and by_id["cell type"]["values"][row[BIG_ID]] == "astrocyte"
    assert by_id["voxels"]["values"][row[999]] == 0


def test_precomputed_tif_segmentation_mesh(labels, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    code = tif_main(["--source", str(tmp_path / "labels.tif"), "--dest", str(tmp_path / "out"), "--segmentation",
                     "--mesh", "--format", "zarr", "--n-cores", "1", "--no-progress", "--chunk-size", "32,32,32"])
    out = capsys.readouterr().out
    assert code == 0 and f"wrote meshes and properties of {len(np.unique(labels)) - 1} segments" in out
    with open(tmp_path / "out" / "info") as f:
        assert json.load(f)["mesh"] == "mesh"
    # Converting again with --overwrite replaces the meshes too, and meshes again.
    code = tif_main(["--source", str(tmp_path / "labels.tif"), "--dest", str(tmp_path / "out"), "--segmentation",
                     "--mesh", "--format", "zarr", "--n-cores", "1", "--no-progress", "--chunk-size", "32,32,32",
                     "--overwrite"])
    assert code == 0, capsys.readouterr().err


def one_line_error(err: str, prog: str, *words):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_user_mistakes(datasets, labels, tmp_path, capsys):
    image = tmp_path / "image"
    tifffile.imwrite(tmp_path / "img.tif", (labels % 250).astype(np.uint8))
    convert(str(tmp_path / "img.tif"), str(image), n_cores=1)
    cases = [
        (["--dataset", str(image)], ["is an image, not a segmentation", "--segmentation"]),
        (["--dataset", str(tmp_path / "nothing")], ["no precomputed dataset"]),
        (["--dataset", datasets["tiff"], "--properties", str(tmp_path / "missing.csv")], ["does not exist"]),
        (["--dataset", datasets["tiff"], "--n-cores", "0"], ["--n-cores"]),
        (["--dataset", datasets["tiff"], "--memory-limit", "lots"], ["--memory-limit"]),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,tags\nA,x\n")
    cases.append((["--dataset", datasets["tiff"], "--properties", str(bad)], ["no id column"]))
    bad2 = tmp_path / "bad2.csv"
    bad2.write_text("id,name\n1,A\nseven,B\n")
    cases.append((["--dataset", datasets["tiff"], "--properties", str(bad2)], ["line 3", "'seven'"]))
    before = sorted(os.listdir(os.path.join(datasets["tiff"], "mesh")))
    for argv, words in cases:
        assert mesh_main(argv + ["--no-progress"]) == 2, argv
        one_line_error(capsys.readouterr().err, "precomputed-mesh", *words)
    assert sorted(os.listdir(os.path.join(datasets["tiff"], "mesh"))) == before  # nothing was touched
    code = tif_main(["--source", str(tmp_path / "img.tif"), "--dest", str(tmp_path / "x"), "--mesh"])
    assert code == 2
    one_line_error(capsys.readouterr().err, "precomputed-tif", "--segmentation")
    assert not (tmp_path / "x").exists()
    # The console script too.
    exe = os.path.join(os.path.dirname(sys.executable), "precomputed-mesh")
    proc = subprocess.run([exe, "--dataset", str(image)], capture_output=True, text=True)
    assert proc.returncode == 2
    one_line_error(proc.stderr, "precomputed-mesh", "not a segmentation")


@pytest.mark.slow
def test_a_dask_cluster_writes_the_same_meshes(datasets, tmp_path):
    import shutil

    distributed = pytest.importorskip("distributed")
    dest = tmp_path / "dask"
    shutil.copytree(datasets["blockfs"], dest)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_port=0, silence_logs=40) as cluster:
        mesh_dataset(str(dest), dask_scheduler=cluster.scheduler_address, node=NODE, sharded=True)
    for name in os.listdir(os.path.join(datasets["blockfs"], "mesh")):
        assert (dest / "mesh" / name).read_bytes() == open(os.path.join(datasets["blockfs"], "mesh", name),
                                                           "rb").read()


def test_meshing_stays_under_the_memory_limit(tmp_path):
    """Two workers and the main process, all together, under --memory-limit (RSS summed, so
    shared libraries count once per process: stricter than the limit needs)."""
    from tests.helpers.peak_rss import PeakRSS

    labels = cell_volume().repeat(3, 0).repeat(3, 1).repeat(3, 2)  # 207 x 153 x 111
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    convert(str(tmp_path / "labels.tif"), str(tmp_path / "cells"), segmentation=True, n_cores=1)

    limit = 330 * 2**20
    # The command's own process tree only: this test process is not part of it.
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "precomputed-mesh"), "--dataset",
                             str(tmp_path / "cells"), "--memory-limit", str(limit), "--n-cores", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRSS(pid=proc.pid) as peak:
        _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert "instead of 2" not in stderr  # two workers fit
    assert peak.peak < limit, peak.describe()


def test_spreadsheet_csv_dialects(tmp_path):
    """Semicolons between columns (and commas between tags), tabs, a byte-order mark."""
    from precomputed_tif.meshing.segment_properties import read_properties_csv

    for name, text in (("semi.csv", "\ufeffID;Name;Tags;Area\n5;big one;neuron, layer 4;12,5\n"),
                       ("tab.tsv", "id\tname\ttags\tarea\n5\tbig one\tneuron;layer 4\t12.5\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        table = read_properties_csv(str(tmp_path / name))
        assert table["ids"] == [5] and table["name"] == ["big one"]
        assert table["tags"] == [["neuron", "layer_4"]]
        assert table["columns"]["Area" if name == "semi.csv" else "area"] == ["12.5"]
    (tmp_path / "latin1.csv").write_bytes("id,name\n5,Zelle \xe4\n".encode("latin-1"))
    with pytest.raises(PrecomputedTifError, match="not UTF-8"):
        read_properties_csv(str(tmp_path / "latin1.csv"))
