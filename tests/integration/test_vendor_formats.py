"""A microscope file reaches every output format whole: its voxels, voxel size, channel names and
colours, as each format's own readers see them.

Inputs: a real ND2 written by NIS-Elements (four named, coloured channels, one plane, no z
step), a real LIF written by LAS X (an XZ scan: two unnamed channels, anisotropic voxels), and a
CZI written by Zeiss's libCZI (two named, coloured channels in a z-stack). Outputs are read by
tensorstore, zarr-python, tifffile and ome-types, by json for ``info``, and by the test helpers'
own readers for the chunk files of tiff and blockfs (no other software reads those).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from precomputed_tif import convert
from precomputed_tif.geometry import DEFAULT_VOXEL_SIZE_UM, Box
from precomputed_tif.sources import open_source
from tests.helpers.readback import ome_tiff_levels, read_level
from tests.integration.test_channels import read_back
from tests.integration.test_vendor_sources import LIF_XZ, ND2_PBMC, _write_czi

FORMATS = [("tiff", None), ("zarr", None), ("blockfs", None), ("precomputed", None), ("ome-zarr", "0.5"),
           ("ome-zarr", "0.4"), ("ome-tiff", None)]


@pytest.fixture(scope="module")
def czi_path(tmp_path_factory):
    data = np.random.default_rng(21).integers(0, 65535, (2, 7, 29, 43), dtype=np.uint16)
    path = str(tmp_path_factory.mktemp("czi") / "stack.czi")
    _write_czi(path, [data], names=["Hoechst", "mCherry"], colors=["#0000ff", "#ff0000"],
               scale=(0.3e-6, 0.3e-6, 1.25e-6))
    return path


def level0(dest: str, fmt: str, version: str | None) -> np.ndarray:
    """The full-resolution level, (c, z, y, x), read without the project's stores."""
    if fmt == "ome-tiff":
        return ome_tiff_levels(os.path.join(dest, os.path.basename(dest) + ".ome.tif"))[0]
    if fmt == "precomputed":
        import tensorstore as ts

        t = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{dest}", "scale_index": 0}).result()
        return np.asarray(t.read().result()).transpose(3, 2, 1, 0)
    if fmt == "ome-zarr":
        import zarr

        data = zarr.open_array(os.path.join(dest, "0"), mode="r", zarr_format=3 if version == "0.5" else 2)[:]
    else:
        with open(os.path.join(dest, "info")) as f:
            info = json.load(f)
        data = read_level(dest, fmt, info["scales"][0], info["data_type"], info["num_channels"])
    return data if data.ndim == 4 else data[None]


def voxel_size_um(dest: str, fmt: str, version: str | None) -> tuple[float, float, float]:
    """(x, y, z) in micrometres as the format's own metadata records it."""
    if fmt == "ome-tiff":
        import tifffile
        from ome_types import from_xml

        with tifffile.TiffFile(os.path.join(dest, os.path.basename(dest) + ".ome.tif")) as tif:
            pixels = from_xml(tif.pages[0].description).images[0].pixels
        assert {pixels.physical_size_x_unit.value, pixels.physical_size_z_unit.value} == {"µm"}
        return pixels.physical_size_x, pixels.physical_size_y, pixels.physical_size_z
    if fmt == "ome-zarr":
        import zarr

        attrs = dict(zarr.open_group(dest, mode="r", zarr_format=3 if version == "0.5" else 2).attrs)
        ms = (attrs["ome"] if version == "0.5" else attrs)["multiscales"][0]
        assert [a.get("unit") for a in ms["axes"][-3:]] == ["micrometer"] * 3
        z, y, x = ms["datasets"][0]["coordinateTransformations"][0]["scale"][-3:]
        return x, y, z
    with open(os.path.join(dest, "info")) as f:
        return tuple(v / 1000 for v in json.load(f)["scales"][0]["resolution"])


@pytest.mark.parametrize("case", ["nd2", "lif", "czi"])
def test_a_microscope_file_reaches_every_format_whole(tmp_path, case, czi_path):
    path, series = {"nd2": (ND2_PBMC, None), "lif": (LIF_XZ, 1), "czi": (czi_path, None)}[case]
    src = open_source(path, series=series)
    z, y, x = src.shape
    expected = src.read(Box(0, x, 0, y, 0, z)).reshape(src.n_channels, z, y, x)
    # A size the file does not record is the documented default, never a guess from elsewhere.
    voxel = tuple(v if v is not None else d for v, d in zip(src.voxel_size, DEFAULT_VOXEL_SIZE_UM))
    names = list(src.channel_names) or [f"channel {i}" for i in range(src.n_channels)]
    for fmt, version in FORMATS:
        dest = str(tmp_path / f"{fmt}-{version}")
        convert(path, dest, format=fmt, ngff_version=version, series=series, n_cores=1)
        what = f"{case} -> {fmt} {version or ''}"
        np.testing.assert_array_equal(level0(dest, fmt, version), expected, err_msg=what)
        assert voxel_size_um(dest, fmt, version) == pytest.approx(voxel, rel=1e-5), what
        assert read_back(dest, fmt, version) == (names, list(src.channel_colors)), what
