"""OME-Zarr written by other tools as ``--source``: ome-zarr-py and ngff-zarr (NGFF 0.4 and 0.5),
sharded Zarr v3 written by zarr-python, bioformats2raw's layout written by hand from the spec
(https://ngff.openmicroscopy.org/0.4/#bf2raw), a t axis; each converted to precomputed and to
OME-Zarr and read back with tensorstore, equal to the array written, voxel size and channel
names carried."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from precomputed_tif import convert
from precomputed_tif.cli.convert import main
from precomputed_tif.sources import DatasetSource, OmeZarrSource, open_source

C, Z, Y, X = 2, 13, 45, 71
VOXEL = (0.4, 0.5, 2.0)  # x, y, z µm
CHUNK = (16, 16, 8)
NAMES = ["DAPI", "GFP"]
COLORS = ["0000FF", "00FF00"]


def _data(shape=(C, Z, Y, X), seed=3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, shape, dtype=np.uint16)


def _omero(n=C) -> dict:
    window = {"min": 0, "max": 65535, "start": 0, "end": 4000}
    return {"channels": [{"label": NAMES[i], "color": COLORS[i], "window": window} for i in range(n)]}


def ome_zarr_py(dest, version, data, axes="czyx", time_unit=None):
    """ome-zarr-py's write_image: x in nanometres, y and z in micrometres."""
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(str(dest), mode="w", zarr_format=2 if version == "0.4" else 3)
    units = {"z": "micrometer", "y": "micrometer", "x": "nanometer"}
    scale = {"z": VOXEL[2], "y": VOXEL[1], "x": VOXEL[0] * 1000}
    if time_unit:
        units["t"], scale["t"] = time_unit, 30.0
    write_image(image=data, group=group, axes=list(axes), scale=scale, axes_units=units, scale_factors=[2],
                fmt=fmt, omero=_omero(data.shape[axes.index("c")] if "c" in axes else 1))


def ngff_zarr(dest, version, data):
    import ngff_zarr as nz

    image = nz.to_ngff_image(data, dims=["c", "z", "y", "x"], scale={"z": VOXEL[2], "y": VOXEL[1], "x": VOXEL[0]},
                             axes_units={a: "micrometer" for a in "zyx"})
    nz.to_ngff_zarr(str(dest), nz.to_multiscales(image, scale_factors=[2]), version=version)


def zarr_sharded(dest, version, data):
    """A Zarr v3 array in shards (zarr-python), the 0.5 group metadata written as the spec has it."""
    import zarr

    group = zarr.open_group(str(dest), mode="w", zarr_format=3)
    array = group.create_array("0", shape=data.shape, chunks=(1, 8, 16, 16), shards=(C, 16, 32, 32),
                               dtype=data.dtype, dimension_names=["c", "z", "y", "x"])
    array[:] = data
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, VOXEL[2], VOXEL[1], VOXEL[0]]},
            {"type": "translation", "translation": [0.0, 5.0, 5.0, 5.0]}]}]}], "omero": _omero()}


WRITERS = {"ome-zarr-py": ome_zarr_py, "ngff-zarr": ngff_zarr}
CASES = [(w, v) for w in WRITERS for v in ("0.4", "0.5")] + [("zarr-sharded", "0.5")]


def _write(kind, version, dest, data):
    (WRITERS.get(kind) or zarr_sharded)(dest, version, data)


def read_precomputed(path) -> np.ndarray:
    """(c, z, y, x) of a precomputed dataset's finest scale, by tensorstore."""
    import tensorstore as ts

    spec = {"driver": "neuroglancer_precomputed", "kvstore": f"file://{path}", "scale_index": 0}
    return np.asarray(ts.open(spec).result().read().result()).transpose(3, 2, 1, 0)


def read_ome_zarr(path, level="0") -> np.ndarray:
    import tensorstore as ts

    driver = "zarr3" if os.path.exists(os.path.join(path, level, "zarr.json")) else "zarr"
    return np.asarray(ts.open({"driver": driver, "kvstore": f"file://{os.path.join(path, level)}"}).result()
                      .read().result())


@pytest.mark.parametrize("kind, version", CASES)
def test_an_ome_zarr_of_another_tool_is_a_source(tmp_path, kind, version):
    data = _data()
    src = tmp_path / "in.ome.zarr"
    _write(kind, version, src, data)
    source = open_source(str(src))
    assert isinstance(source, OmeZarrSource)
    assert source.voxel_size == pytest.approx(VOXEL)
    assert source.voxel_size_origin == f"OME-Zarr metadata of {src}"

    pre = tmp_path / "pre"
    info = convert(str(src), str(pre), format="precomputed", chunk_size=CHUNK, n_cores=1)
    np.testing.assert_array_equal(read_precomputed(pre), data)
    assert [r / 1000 for r in info["scales"][0]["resolution"]] == pytest.approx(VOXEL)
    assert info["precomputed_tif"]["voxel_size_from"] == f"OME-Zarr metadata of {src}"
    if kind != "ngff-zarr":  # ngff-zarr writes no omero unless given one
        assert info["precomputed_tif"]["channel_names"] == NAMES
        assert info["precomputed_tif"]["channel_colors"] == ["#" + c.lower() for c in COLORS]

    omz = tmp_path / "out.zarr"
    convert(str(src), str(omz), format="ome-zarr", chunk_size=CHUNK, n_cores=1)
    np.testing.assert_array_equal(read_ome_zarr(omz), data)
    # The same command again is the same source: it finds the dataset finished.
    again = convert(str(src), str(pre), format="precomputed", chunk_size=CHUNK, n_cores=1)
    assert dict(again) == dict(info)


def test_a_channel_of_an_ome_zarr(tmp_path):
    data = _data()
    src = tmp_path / "in.ome.zarr"
    ome_zarr_py(src, "0.5", data)
    info = convert(str(src), str(tmp_path / "pre"), format="precomputed", chunk_size=CHUNK, n_cores=1, channel=1)
    np.testing.assert_array_equal(read_precomputed(tmp_path / "pre")[0], data[1])
    assert info["precomputed_tif"]["channel_names"] == ["GFP"]


def test_a_time_series_ome_zarr_stays_one_and_splits_on_request(tmp_path, capsys):
    import zarr

    data = _data((3, C, Z, Y, X), seed=4)
    src = tmp_path / "movie.ome.zarr"
    ome_zarr_py(src, "0.5", data, axes="tczyx", time_unit="second")
    out = tmp_path / "out.zarr"
    result = convert(str(src), str(out), format="ome-zarr", chunk_size=CHUNK, n_cores=1)
    assert result["precomputed_tif"]["time"] == {"timepoints": 3, "interval": 30.0, "unit": "second"}
    np.testing.assert_array_equal(read_ome_zarr(out), data)
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)["ome"]["multiscales"][0]
    assert attrs["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    # The source's t scale (ome_zarr_py writes 30 s) is the output's, at every level.
    source_t = _multiscale_of(src)["datasets"][0]["coordinateTransformations"][0]["scale"][0]
    assert [d["coordinateTransformations"][0]["scale"][0] for d in attrs["datasets"]] == \
        [source_t] * len(attrs["datasets"])

    # Other formats: refused with the choices, or one dataset per time point.
    code = main(["--no-progress", "--source", str(src), "--dest", str(tmp_path / "pre"), "--format", "precomputed"])
    err = capsys.readouterr().err
    assert code == 2 and "--timepoint all" in err and "--format ome-zarr" in err and len(err.splitlines()) == 1, err
    convert(str(src), str(tmp_path / "each"), format="precomputed", chunk_size=CHUNK, n_cores=1, timepoint="all")
    for t in range(3):
        np.testing.assert_array_equal(read_precomputed(tmp_path / "each" / f"t{t:04d}"), data[t])


def _unitless(kind, version, dest, data, units):
    """An OME-Zarr whose axes carry only ``units`` (none at all when empty), the scale numbers as
    VOXEL's (x in nanometres when x has that unit), written by ome-zarr-py or ngff-zarr."""
    scale = {"z": VOXEL[2], "y": VOXEL[1], "x": VOXEL[0] * (1000 if units.get("x") == "nanometer" else 1)}
    if kind == "ngff-zarr":
        import ngff_zarr as nz

        image = nz.to_ngff_image(data, dims=["c", "z", "y", "x"], scale=scale, axes_units=units or None)
        nz.to_ngff_zarr(str(dest), nz.to_multiscales(image, scale_factors=[2]), version=version)
        return
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(dest), mode="w", zarr_format=2 if version == "0.4" else 3)
    write_image(image=data, group=group, axes=["c", "z", "y", "x"], scale=scale, axes_units=units or None,
                scale_factors=[2], fmt=FormatV04() if version == "0.4" else FormatV05(), omero=_omero())


@pytest.mark.parametrize("kind, version, units", [
    ("ome-zarr-py", "0.5", {}), ("ngff-zarr", "0.4", {}), ("ome-zarr-py", "0.4", {"x": "nanometer"}),
])
def test_axes_without_a_unit_are_taken_as_micrometres_and_the_provenance_says_so(tmp_path, capsys, kind, version,
                                                                                   units):
    import zarr

    data = _data()
    src = tmp_path / "in.ome.zarr"
    _unitless(kind, version, src, data, units)
    axes = _multiscale_of(src)["axes"]
    assert {a["name"]: a.get("unit") for a in axes if a["type"] == "space"} == {a: units.get(a) for a in "zyx"}
    missing = [a for a in "xyz" if a not in units]
    words = f"OME-Zarr metadata of {src}, no unit given for {', '.join(missing)}: taken as µm"
    source = open_source(str(src))
    assert source.voxel_size == pytest.approx(VOXEL)
    assert source.voxel_size_origin == words

    code = main(["--source", str(src), "--inspect"])
    out = capsys.readouterr().out
    assert code == 0 and f"voxel size (x, y, z): {', '.join(f'{v:g}' for v in VOXEL)} µm, from the {words}" in out, out
    dest = tmp_path / "out.zarr"
    code = main(["--no-progress", "--n-cores", "1", "--source", str(src), "--dest", str(dest), "--format", "ome-zarr"])
    out = capsys.readouterr().out
    assert code == 0 and f"voxel size {','.join(f'{v:g}' for v in VOXEL)} µm (from the {words})" in out, out
    # The output says micrometres: what the numbers were taken as.
    written = _multiscale_of(dest)
    assert [a.get("unit") for a in written["axes"][-3:]] == ["micrometer"] * 3
    assert written["datasets"][0]["coordinateTransformations"][0]["scale"][-3:] == pytest.approx(VOXEL[::-1])
    np.testing.assert_array_equal(zarr.open_group(str(dest), mode="r")["0"][:], data)


def test_every_length_unit_ngff_allows_is_read_and_any_other_is_said(tmp_path, caplog):
    """ngff-zarr writes any UDUNITS length NGFF allows: picometres and inches read as what they
    are; a unit that is no length (written into the metadata by hand: the writers refuse it) gives
    no voxel size along that axis and a warning naming it, never the default taken silently."""
    import json

    data = _data()
    import ngff_zarr as nz

    src = tmp_path / "units.ome.zarr"
    image = nz.to_ngff_image(data, dims=["c", "z", "y", "x"], scale={"z": 0.5, "y": 250000.0, "x": 2e-5},
                             axes_units={"z": "inch", "y": "picometer", "x": "kilometer"})
    nz.to_ngff_zarr(str(src), nz.to_multiscales(image, scale_factors=[2]), version="0.5")
    assert [a.get("unit") for a in _multiscale_of(src)["axes"]][-3:] == ["inch", "picometer", "kilometer"]
    assert open_source(str(src)).voxel_size == pytest.approx((20000.0, 0.25, 12700.0))
    meta = json.loads((src / "zarr.json").read_text())
    meta["attributes"]["ome"]["multiscales"][0]["axes"][1]["unit"] = "furlongs"
    (src / "zarr.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING"):
        source = open_source(str(src))
    assert source.voxel_size == pytest.approx((20000.0, 0.25, None))
    assert "axis z has the unit 'furlongs', which is not a unit of length" in caplog.text, caplog.text


def _multiscale_of(path) -> dict:
    import zarr

    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    return attrs.get("ome", attrs)["multiscales"][0]


def bioformats2raw(dest, images: list[np.ndarray], listed: bool):
    """bioformats2raw's layout by hand: a top group with ``bioformats2raw.layout`` 3, an ``OME``
    group (with ``series`` when ``listed``), and each series an NGFF 0.4 image at ``0``, ``1``..."""
    os.makedirs(dest)
    with open(os.path.join(dest, ".zgroup"), "w") as f:
        json.dump({"zarr_format": 2}, f)
    with open(os.path.join(dest, ".zattrs"), "w") as f:
        json.dump({"bioformats2raw.layout": 3}, f)
    os.makedirs(os.path.join(dest, "OME"))
    with open(os.path.join(dest, "OME", ".zgroup"), "w") as f:
        json.dump({"zarr_format": 2}, f)
    with open(os.path.join(dest, "OME", "METADATA.ome.xml"), "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"/>')
    if listed:
        with open(os.path.join(dest, "OME", ".zattrs"), "w") as f:
            json.dump({"series": [str(i) for i in range(len(images))]}, f)
    for i, image in enumerate(images):
        ome_zarr_py(os.path.join(dest, str(i)), "0.4", image)


@pytest.mark.parametrize("listed", [True, False])
def test_bioformats2raw_series_are_picked_with_series(tmp_path, capsys, listed):
    first, second = _data(seed=5), _data((C, 7, 33, 29), seed=6)
    src = tmp_path / "plate.zarr"
    bioformats2raw(str(src), [first, second], listed)
    code = main(["--no-progress", "--source", str(src), "--dest", str(tmp_path / "x")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "2 images" in lines[0] and "--series N" in lines[0] and "29x33x7" in lines[0], lines[0]
    for n, want in enumerate((first, second)):
        dest = tmp_path / f"s{n}"
        code = main(["--no-progress", "--n-cores", "1", "--chunk-size", "16,16,8", "--source", str(src),
                     "--dest", str(dest), "--format", "precomputed", "--series", str(n)])
        assert code == 0, capsys.readouterr().err
        np.testing.assert_array_equal(read_precomputed(dest), want)
    code = main(["--no-progress", "--source", str(src), "--dest", str(tmp_path / "y"), "--series", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--series 2" in err and len(err.strip().splitlines()) == 1, err


def test_inspect_lists_the_series_of_a_bioformats2raw_group_and_describes_the_one_picked(tmp_path, capsys):
    first, second = _data(seed=5), _data((1, 7, 33, 29), seed=6)
    src = tmp_path / "plate.zarr"
    bioformats2raw(str(src), [first, second], listed=True)
    code = main(["--source", str(src), "--inspect"])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    assert "2 images; convert one with --series N" in out, out
    assert "image 0 '0' (C 2, Z 13, Y 45, X 71):" in out and "image 1 '1' (Z 7, Y 33, X 29):" in out, out
    assert "size x, y, z: 71, 45, 13;" in out and "size x, y, z: 29, 33, 7;" in out, out
    # With --series, the image a conversion with that --series reads, and only it.
    code = main(["--source", str(src), "--inspect", "--series", "1"])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    assert "size x, y, z: 29, 33, 7;" in out and "71, 45, 13" not in out and "channels: 1:" in out, out
    assert not os.path.exists(tmp_path / "x")
    code = main(["--source", str(src), "--inspect", "--series", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--series 2 is out of range" in err and len(err.strip().splitlines()) == 1, err


def test_series_of_a_tiff_is_refused(tmp_path, capsys):
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", _data((Z, Y, X)))
    code = main(["--no-progress", "--source", str(tmp_path / "a.tif"), "--dest", str(tmp_path / "x"),
                 "--series", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--series" in err and len(err.strip().splitlines()) == 1, err


def test_our_own_ome_zarr_is_a_dataset_and_without_info_an_ome_zarr(tmp_path):
    import tifffile

    data = _data((Z, Y, X))
    tifffile.imwrite(tmp_path / "a.tif", data)
    ours = tmp_path / "ours.zarr"
    convert(str(tmp_path / "a.tif"), str(ours), format="ome-zarr", chunk_size=CHUNK, n_cores=1, voxel_size=VOXEL)
    assert isinstance(open_source(str(ours)), DatasetSource)
    os.unlink(ours / "info")
    source = open_source(str(ours))
    assert isinstance(source, OmeZarrSource) and source.voxel_size == pytest.approx(VOXEL)
    convert(str(ours), str(tmp_path / "pre"), format="precomputed", chunk_size=CHUNK, n_cores=1)
    np.testing.assert_array_equal(read_precomputed(tmp_path / "pre")[0], data)
