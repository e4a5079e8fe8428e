"""precomputed-write-points: every cell and id entry decoded by a reader written from the spec."""

import csv
import json
import os

import numpy as np
import pytest

from precomputed_tif.cli.write_points import main
from tests.helpers.annotation_reader import read_layer
from tests.helpers.servers import start_webserver

VOXEL = (1.8, 1.8, 2.0)


def random_points(n, seed=0, shape=(300, 200, 100)):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 3)) * shape
    pts[: n // 5] = pts[: n // 5] * 0.1 + 20  # a dense cluster, as cells are
    return pts


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


def check_layer(directory, points, props=None, limit=None, by_id=True):
    info, levels, ids, _ = read_layer(directory)
    assert info["@type"] == "neuroglancer_annotations_v1" and info["annotation_type"] == "POINT"
    assert info["dimensions"] == {a: [v * 1e-6, "m"] for a, v in zip("xyz", VOXEL)}
    lower, upper = np.array(info["lower_bound"]), np.array(info["upper_bound"])
    seen = {}
    for level, cells in zip(info["spatial"], levels):
        grid, chunk = np.array(level["grid_shape"]), np.array(level["chunk_size"])
        np.testing.assert_allclose(grid * chunk, upper - lower)
        if limit is not None:
            assert level["limit"] == limit
        for cell, entries in cells.items():
            assert len(entries) <= level["limit"]
            assert all(0 <= c < g for c, g in zip(cell, grid))
            lo = lower + np.array(cell) * chunk
            for aid, point, p in entries:
                assert aid not in seen, f"annotation {aid} emitted twice"
                seen[aid] = (point, p)
                assert (np.array(point) >= lo - 1e-3).all() and (np.array(point) <= lo + chunk + 1e-3).all()
    assert sorted(seen) == list(range(len(points))), "every point exactly once across levels"
    for aid, (point, p) in seen.items():
        np.testing.assert_allclose(point, points[aid].astype(np.float32))
        if props:
            for k, values in props.items():
                assert p[k] == pytest.approx(values[aid], rel=1e-6), (k, aid)
    if by_id:
        assert sorted(ids) == list(range(len(points)))
        for aid, (point, p) in ids.items():
            assert point == seen[aid][0] and p == seen[aid][1]
    else:
        assert ids is None and "by_id" not in info
    return info, levels


@pytest.mark.parametrize("sharded", ["--sharded", "--unsharded"])
def test_spatial_index_and_by_id(tmp_path, capsys, sharded):
    points = random_points(5000)
    (tmp_path / "p.json").write_text(json.dumps(points.tolist()))
    code, out = run(capsys, "--input", tmp_path / "p.json", "--output-directory", tmp_path / "out",
                    "--limit", 300, sharded)
    assert code == 0, out.err
    info, levels = check_layer(tmp_path / "out", points, limit=300)
    assert len(levels) >= 3 and len(levels[0][(0, 0, 0)]) == 300  # the fullest cell emits exactly `limit`
    assert info["lower_bound"] == [0, 0, 0]
    assert info["upper_bound"] == (np.floor(points.max(axis=0)) + 1).tolist()
    assert ("sharding" in info["spatial"][0]) == (sharded == "--sharded")


def test_sharded_and_unsharded_hold_the_same_annotations(tmp_path, capsys):
    points = random_points(3000, seed=1)
    (tmp_path / "p.json").write_text(json.dumps(points.tolist()))
    for kind in ("--sharded", "--unsharded"):
        assert run(capsys, "--input", tmp_path / "p.json", "--output-directory", tmp_path / kind,
                   "--limit", 100, kind)[0] == 0
    a, b = read_layer(tmp_path / "--sharded"), read_layer(tmp_path / "--unsharded")
    assert a[1] == b[1] and a[2] == b[2]


def test_csv_with_properties(tmp_path, capsys):
    points = random_points(400, seed=2)
    rng = np.random.default_rng(3)
    intensity = rng.random(400) * 1000
    size = rng.integers(0, 300, 400)
    kind = rng.choice(["neuron", "glia", "unknown"], 400)
    with open(tmp_path / "cells.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["X", "y", "z", "intensity", "Size (um)", "class"])
        for i in range(400):
            w.writerow([*points[i], intensity[i], size[i], kind[i]])
    code, out = run(capsys, "--input", tmp_path / "cells.csv", "--output-directory", tmp_path / "out",
                    "--limit", 50)
    assert code == 0, out.err
    info = json.loads((tmp_path / "out" / "info").read_text())
    props = {p["id"]: p for p in info["properties"]}
    assert [p["id"] for p in info["properties"]] == ["intensity", "size__um_", "class"]
    assert props["intensity"]["type"] == "float32" and props["size__um_"]["type"] == "uint16"
    assert props["size__um_"]["description"] == "Size (um)"
    assert props["class"]["enum_labels"] == ["glia", "neuron", "unknown"]
    codes = np.array([["glia", "neuron", "unknown"].index(k) for k in kind])
    check_layer(tmp_path / "out", points, {"intensity": intensity.astype(np.float32), "size__um_": size,
                                           "class": codes})


def test_json_objects_and_no_by_id(tmp_path, capsys):
    points = random_points(200, seed=4)
    data = [{"x": p[0], "y": p[1], "z": p[2], "score": i % 7} for i, p in enumerate(points)]
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert run(capsys, "--input", tmp_path / "p.json", "--output-directory", tmp_path / "out", "--no-by-id",
               "--upper-bound", "300,200,100")[0] == 0
    info, _ = check_layer(tmp_path / "out", points, {"score": [i % 7 for i in range(200)]}, by_id=False)
    assert info["upper_bound"] == [300, 200, 100]
    assert not (tmp_path / "out" / "by_id").exists()


def test_many_points_at_one_spot_still_finish(tmp_path, capsys):
    points = np.array([[5.5, 6.5, 7.5]] * 2000 + [[50, 60, 70]])
    (tmp_path / "p.json").write_text(json.dumps(points.tolist()))
    assert run(capsys, "--input", tmp_path / "p.json", "--output-directory", tmp_path / "out", "--limit", 100)[0] == 0
    info, levels = check_layer(tmp_path / "out", points)
    assert len(levels) < 20


def test_matches_neuroglancers_own_writer(tmp_path, capsys):
    import neuroglancer
    from neuroglancer.write_annotations import AnnotationWriter

    points = random_points(300, seed=5)
    counts = np.arange(300) % 250
    weight = np.linspace(0, 1, 300).astype(np.float32)
    with open(tmp_path / "p.csv", "w") as f:
        f.write("x,y,z,count,weight\n")
        for p, c, w in zip(points, counts, weight):
            f.write(",".join(repr(float(v)) for v in p) + f",{c},{float(w)!r}\n")
    assert run(capsys, "--input", tmp_path / "p.csv", "--output-directory", tmp_path / "ours")[0] == 0
    space = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="m", scales=[v * 1e-6 for v in VOXEL])
    writer = AnnotationWriter(space, "point", properties=[
        neuroglancer.AnnotationPropertySpec(id="count", type="uint8"),
        neuroglancer.AnnotationPropertySpec(id="weight", type="float32")])
    for i, (p, c, w) in enumerate(zip(points, counts, weight)):
        writer.add_point(p.tolist(), id=i, count=int(c), weight=float(w))
    writer.write(str(tmp_path / "theirs"))
    ours = json.loads((tmp_path / "ours" / "info").read_text())
    theirs = json.loads((tmp_path / "theirs" / "info").read_text())
    assert ours["@type"] == theirs["@type"]
    assert ours["annotation_type"].lower() == theirs["annotation_type"].lower()
    assert [(p["id"], p["type"]) for p in ours["properties"]] == [(p["id"], p["type"]) for p in theirs["properties"]]
    assert list(ours["dimensions"]) == list(theirs["dimensions"]) == ["x", "y", "z"]
    for k in "xyz":
        assert ours["dimensions"][k][1] == theirs["dimensions"][k][1]
        assert ours["dimensions"][k][0] == pytest.approx(theirs["dimensions"][k][0])
    _, _, _, ours_raw = read_layer(tmp_path / "ours")
    for i in range(300):
        assert ours_raw[i] == (tmp_path / "theirs" / "by_id" / str(i)).read_bytes(), i
    # Their single cell and our levels hold the same annotations.
    _, their_levels, _, _ = read_layer(tmp_path / "theirs")
    _, our_levels, _, _ = read_layer(tmp_path / "ours")
    def flatten(levels):
        return sorted(e for cells in levels for entries in cells.values() for e in entries)

    assert flatten(our_levels) == flatten(their_levels)


def assert_user_error(code, out, *words):
    assert code == 2, out.err
    assert "Traceback" not in out.err and len(out.err.strip().splitlines()) == 1, out.err
    assert out.err.startswith("precomputed-write-points: error:")
    for w in words:
        assert w in out.err, (w, out.err)


@pytest.mark.parametrize("content,words", [
    ("this is neither", ["neither a JSON list"]),
    ("{\"points\": [1, 2, 3]}", ["JSON list"]),
    ("[[1, 2, 3], [4, 5]]", ["point 1", "[x, y, z]"]),
    ("[[1, 2, 3], [4, 5, \"a\"]]", ["point 1"]),
    ("[[1, 2, 3], [NaN, 5, 6]]", ["NaN", "point 1"]),
    ("[[1, 2, 3], [Infinity, 5, 6]]", ["infinite"]),
    ("[1, 2, 3", ["not valid JSON"]),
    ("[]", ["no points"]),
    ("x,y,z\n1,2,3\n4,5\n", ["line 3"]),
    ("a,b,c\n1,2,3\n", ["no x, y and z"]),
])
def test_bad_input(tmp_path, capsys, content, words):
    (tmp_path / "p.txt").write_text(content)
    code, out = run(capsys, "--input", tmp_path / "p.txt", "--output-directory", tmp_path / "out")
    assert_user_error(code, out, *words)
    assert not (tmp_path / "out").exists()


def test_points_outside_bounds_say_how_many_and_which(tmp_path, capsys):
    (tmp_path / "p.json").write_text(json.dumps([[1, 2, 3], [10, 20, 30], [-1, 5, 5], [5, 5, 5]]))
    code, out = run(capsys, "--input", tmp_path / "p.json", "--output-directory", tmp_path / "out",
                    "--upper-bound", "10,100,100")
    assert_user_error(code, out, "2 of 4 points", "point 1", "[10.0, 20.0, 30.0]")
    code, out = run(capsys, "--input", tmp_path / "p.json", "--output-directory", tmp_path / "out",
                    "--lower-bound", "5,0,0", "--upper-bound", "5,100,100")
    assert_user_error(code, out, "must be below")
    assert not (tmp_path / "out").exists()


def test_output_directory_holding_something_else(tmp_path, capsys):
    (tmp_path / "p.json").write_text("[[1, 2, 3]]")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("precious")
    code, out = run(capsys, "--input", tmp_path / "p.json", "--output-directory", tmp_path / "out")
    assert_user_error(code, out, "not empty")
    assert os.listdir(tmp_path / "out") == ["mine.txt"]


def test_served_with_ranges_and_cors(tmp_path, capsys):
    points = random_points(2000, seed=6)
    (tmp_path / "p.json").write_text(json.dumps(points.tolist()))
    assert run(capsys, "--input", tmp_path / "p.json", "--output-directory", tmp_path / "pts", "--sharded",
               "--limit", 200)[0] == 0
    server = start_webserver("--directory", str(tmp_path / "pts"))
    try:
        status, headers, body = server.request("/info")
        assert status == 200 and json.loads(body)["@type"] == "neuroglancer_annotations_v1"
        shard = sorted(os.listdir(tmp_path / "pts" / "by_id"))[0]
        data = (tmp_path / "pts" / "by_id" / shard).read_bytes()
        status, headers, body = server.request(f"/by_id/{shard}", headers={"Range": "bytes=0-15"})
        assert status == 206 and body == data[:16] and headers["access-control-allow-origin"] == "*"
        status, headers, body = server.request(f"/by_id/{shard}", "HEAD")
        assert status == 200 and headers["content-length"] == str(len(data)) and body == b""
    finally:
        server.stop()
