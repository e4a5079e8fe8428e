"""Every format of the registry, converted and read back by a reader that is not this project's,
level by level against a reference pyramid; and a new format added with one class and one
registry entry."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

from precomputed_tif import formats, open_volume
from precomputed_tif.cli.convert import build_parser, main
from tests.helpers.readback import ome_tiff_levels, read_level
from tests.helpers.stacks import make_volume, reference_downsample, reference_pyramid, write_planes
from tests.helpers.toy_format import NpyFormat


def _tensorstore_precomputed(dest, info):
    import tensorstore as ts

    out = []
    for i in range(len(info["scales"])):
        t = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{os.path.abspath(dest)}",
                     "scale_index": i}).result()
        out.append(np.asarray(t.read().result()).transpose(3, 2, 1, 0))
    return out


def _zarr_python(dest, info):
    import zarr

    group = zarr.open_group(str(dest), mode="r")
    return [np.asarray(group[s["key"]][:]).reshape(-1, *s["size"][::-1]) for s in info["scales"]]


def _own_files(fmt):
    def read(dest, info):
        return [read_level(str(dest), fmt, s, info["data_type"], info.get("num_channels", 1)).reshape(
            -1, *s["size"][::-1]) for s in info["scales"]]
    return read


def _tifffile_pyramid(dest, info):
    return ome_tiff_levels(os.path.join(dest, os.path.basename(dest) + ".ome.tif"))


# Format -> a reader of its output written by others: (c, z, y, x) arrays, level by level.
READERS = {
    "tiff": _own_files("tiff"),  # tifffile, chunk file by chunk file
    "zarr": _own_files("zarr"),  # zarr-python
    "blockfs": _own_files("blockfs"),  # tests/helpers/blockfs_reader.py, from the format's description
    "precomputed": _tensorstore_precomputed,
    "ome-zarr": _zarr_python,
    "ome-tiff": _tifffile_pyramid,
}


def test_every_registered_format_has_an_independent_reader_here():
    assert set(READERS) == set(formats.names())


def _reference(volume, fmt, info, n_levels, segmentation):
    """(c, z, y, x) levels: halving as ``info``'s resolutions say; x and y only for an OME-TIFF."""
    if fmt.chunked:
        res = [s["resolution"] for s in info["scales"]]
        steps = [(1, 1, 1)] + [tuple(round(b / a) for a, b in zip(r0, r1)) for r0, r1 in zip(res, res[1:])]
        per_channel = [reference_pyramid(ch, steps, segmentation) for ch in volume]
    else:
        per_channel = []
        for ch in volume:
            levels = [ch]
            for _ in range(n_levels - 1):
                levels.append(reference_downsample(levels[-1], (2, 2, 1), segmentation))
            per_channel.append(levels)
    return [np.stack(levels) for levels in zip(*per_channel)]


CASES = [("uint16 image", "uint16", 1, False), ("two uint8 channels", "uint8", 2, False),
         ("uint32 labels", "uint32", 1, True)]


@pytest.mark.parametrize("name", formats.names())
@pytest.mark.parametrize("case, dtype, channels, segmentation", CASES, ids=[c[0] for c in CASES])
def test_every_format_reads_back_as_the_reference_pyramid(tmp_path, name, case, dtype, channels, segmentation):
    fmt = formats.get(name)
    volume = np.stack([make_volume((11, 37, 29), dtype, segmentation=segmentation, seed=111 + c)
                       for c in range(channels)])
    if channels == 1:
        source = write_planes(tmp_path / "src", volume[0])
    else:
        source = str(tmp_path / "two.ome.tif")
        tifffile.imwrite(source, volume.transpose(1, 0, 2, 3), ome=True, metadata={"axes": "ZCYX"})
    dest = str(tmp_path / "out")
    options = ["--tile-size", "16"] if not fmt.chunked else ["--chunk-size", "8,8,8"]
    args = ["--source", source, "--dest", dest, "--format", name, "--n-cores", "1", "--no-progress", *options]
    assert main(args + (["--segmentation"] if segmentation else [])) == 0
    info = None
    if fmt.chunked:
        with open(os.path.join(dest, "info")) as f:
            info = json.load(f)
    got = READERS[name](dest, info)
    want = _reference(volume, fmt, info, len(got), segmentation)
    assert len(got) == len(want) > 1
    for number, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"{name} level {number}")


def test_a_new_format_is_one_class_and_one_registry_entry(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(formats, "REGISTRY", (*formats.REGISTRY, NpyFormat()))
    assert "npy" in build_parser().format_help()
    volume = make_volume((9, 21, 19), "uint16", seed=120)
    glob = write_planes(tmp_path / "src", volume)
    dest = str(tmp_path / "out")
    assert main(["--source", glob, "--dest", dest, "--format", "npy", "--chunk-size", "8,8,8", "--n-cores", "1",
                 "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert any(n.endswith(".npy") for n in os.listdir(os.path.join(dest, "1_1_1")))
    vol = open_volume(dest)  # detected from the files, through the registry
    assert vol.format == "npy"
    want = _reference(volume[None], NpyFormat(), vol.info, len(vol.keys), False)
    for key, w in zip(vol.keys, want):
        np.testing.assert_array_equal(vol.read(key), w[0], err_msg=key)
    # A different format on the same destination is refused, as for any other.
    assert main(["--source", glob, "--dest", dest, "--format", "tiff", "--no-progress"]) == 2


def test_tiff_planes_and_a_stored_dataset_are_both_sources_of_the_same_voxels(tmp_path):
    from precomputed_tif.geometry import Box
    from precomputed_tif.sources import Source, open_source

    volume = make_volume((7, 19, 23), "uint16", seed=121)
    glob = write_planes(tmp_path / "src", volume)
    main(["--source", glob, "--dest", str(tmp_path / "z"), "--format", "zarr", "--n-cores", "1", "--no-progress"])
    planes, dataset = open_source(glob), open_source(str(tmp_path / "z"))
    box = Box(3, 20, 2, 17, 1, 6)
    for source in (planes, dataset):
        assert isinstance(source, Source)
        assert source.shape == volume.shape and source.dtype == volume.dtype and source.n_channels == 1
        np.testing.assert_array_equal(source.subset(1, 6).read(box), volume[box.slices])
