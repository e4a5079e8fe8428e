"""Microscope files read without a TIFF export: real ND2 and LIF files written by NIS-Elements
and LAS X (tests/data/vendor), CZI files written by Zeiss's libCZI (pylibCZIrw), Imaris files
written with h5py in Bitplane's published layout, BigDataViewer datasets written by npy2bdv,
N5 datasets written by tensorstore.

Every source is compared voxel for voxel with what the file's own reader library reads (whole,
and a region inside it on every side), with its voxel size, channel names and time points;
conversions are read back by tensorstore; the command's refusals and ``--inspect`` are run as
processes.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from precomputed_tif import PrecomputedTifError, convert
from precomputed_tif.geometry import Box
from precomputed_tif.sources import Source, open_source
from tests.helpers import CHECKOUT, DATA

VENDOR = os.path.join(DATA, "vendor")
ND2_PBMC = os.path.join(VENDOR, "example-pbmc.nd2")
ND2_YEAST = os.path.join(VENDOR, "example-cerevisiae.nd2")
LIF_XZ = os.path.join(VENDOR, "xz-example.lif")
LIF_LAMBDA = os.path.join(VENDOR, "LeicaLASX_wavelength-sweep_example.lif")
EXE = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")


def run_command(*argv, block: str | None = None) -> subprocess.CompletedProcess:
    """``precomputed-tif ARGV`` as a process; with ``block``, that package cannot be imported in it
    (as when it is not installed)."""
    if block is None:
        cmd = [EXE, *argv]
    else:
        code = (f"import sys; sys.modules[{block!r}] = None\n"
                "from precomputed_tif.cli.convert import main\n"
                f"sys.exit(main({list(argv)!r}))")
        cmd = [sys.executable, "-c", code]
    env = {**os.environ, "PYTHONPATH": CHECKOUT}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def inner_box(shape) -> Box:
    """A box inside ``shape`` (z, y, x) on every side where the axis allows it."""
    z, y, x = shape

    def cut(n):
        return (1, n - 1) if n > 2 else (0, n)
    (z0, z1), (y0, y1), (x0, x1) = cut(z), cut(y), cut(x)
    return Box(x0, x1, y0, y1, z0, z1)


def check_source(src, expected_czyx: np.ndarray) -> None:
    """``src`` reads ``expected_czyx`` whole, in a region, and after a round trip through pickle."""
    assert isinstance(src, Source)
    c, z, y, x = expected_czyx.shape
    assert (src.shape, src.n_channels, src.axes) == ((z, y, x), c, "czyx" if c > 1 else "zyx")
    expected = expected_czyx if c > 1 else expected_czyx[0]
    whole = src.read(Box(0, x, 0, y, 0, z))
    assert whole.dtype == expected.dtype
    np.testing.assert_array_equal(whole, expected)
    box = inner_box(src.shape)
    part = pickle.loads(pickle.dumps(src.subset(box.z0, box.z1))).read(box)
    np.testing.assert_array_equal(part, expected[(Ellipsis, *box.slices)])


# --- ND2 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path, names, xy", [
    (ND2_PBMC, ("Mono", "DAPI", "FITC BP", "TRITC BP"), 0.64678),
    (ND2_YEAST, ("DIC", "FITC BP"), 0.10833),
])
def test_nd2_reads_as_nd2_does_with_its_channels_and_calibration(path, names, xy):
    import nd2

    with nd2.ND2File(path) as f:
        expected = f.asarray()[:, None]  # (c, y, x) -> (c, z=1, y, x)
        calibration = f.voxel_size()
    src = open_source(path)
    check_source(src, expected)
    assert src.channel_names == names
    assert src.voxel_size[:2] == pytest.approx((calibration.x, calibration.y))
    assert src.voxel_size[:2] == pytest.approx((xy, xy), rel=1e-4)
    assert src.voxel_size[2] is None  # no z loop: NIS-Elements leaves z uncalibrated
    assert src.voxel_size_origin == f"ND2 metadata of {path}"
    assert (src.n_timepoints, src.timepoint, src.series) == (1, 0, None)
    # NIS-Elements' colours: DAPI blue, FITC green.
    colors = dict(zip(names, src.channel_colors))
    assert colors["FITC BP"][3:5] == "ff" and colors["FITC BP"][1:3] < "80"
    if "DAPI" in colors:
        assert colors["DAPI"][5:7] == "ff" and colors["DAPI"][1:3] < "80"
    one = open_source(path, channel=1)
    check_source(one, expected[1:2])
    assert one.channel_names == names[1:2]


# --- LIF ----------------------------------------------------------------------------------


def _lif_expected(path: str, series: int, t: int | None):
    """(c, z, y, x) of image ``series`` (at time point ``t``) as liffile reads it, its axes put
    where they belong: X x, Y y (1 when absent), Z z (1 when absent), C or λ channels."""
    import liffile

    with liffile.LifFile(path) as lif:
        im = lif.images[series]
        data, dims = im.asarray(), list(im.dims)
        coords = im.coords
    if "T" in dims:
        data, dims = data[t], [d for d in dims if d != "T"]
    for axis in "CZY":
        if axis not in dims and not (axis == "C" and ({"λ", "Λ"} & set(dims))):
            data, dims = data[None], [axis, *dims]
    channel = next(d for d in dims if d in ("C", "λ", "Λ"))
    order = [dims.index(a) for a in (channel, "Z", "Y", "X")]
    spacing = {a: (coords[a][1] - coords[a][0]) * 1e6 for a in "XYZ" if a in coords and len(coords[a]) > 1}
    return data.transpose(order), spacing, coords.get(channel)


@pytest.mark.parametrize("path, series, t, shape", [
    (LIF_XZ, 1, None, (128, 23, 128)),  # XZ scans stepped in Y: a real 3-D stack
    (LIF_XZ, 2, None, (512, 1, 512)),  # one XZ plane: upright, y of size 1
    (LIF_XZ, 0, 7, (128, 1, 128)),  # an XZ scan over time, one time point
    (LIF_LAMBDA, 0, None, (1, 64, 64)),  # an emission sweep: the wavelengths are channels
    (LIF_LAMBDA, 1, None, (1, 64, 64)),  # an excitation sweep
    (LIF_LAMBDA, 2, 1, (11, 64, 64)),  # a z stack of emission sweeps over time
])
def test_lif_images_read_as_liffile_does_with_axes_where_they_belong(path, series, t, shape):
    expected, spacing, waves = _lif_expected(path, series, t)
    src = open_source(path, series=series, timepoint=t)
    assert src.shape == shape
    check_source(src, expected)
    voxel = dict(zip("XYZ", src.voxel_size))
    assert {a: v for a, v in voxel.items() if v is not None} == pytest.approx(spacing)
    assert set(voxel) - set(spacing) == {a for a, v in voxel.items() if v is None}
    assert src.voxel_size_origin.startswith(f"LIF metadata of {path} (image {series} ")
    assert src.series == series and src.timepoint == (t or 0)
    if waves is not None:  # a sweep's channels are named by their wavelengths
        letter = "λ" if series != 1 else "Λ"
        assert src.channel_names == tuple(f"{letter} {w * 1e9:.4g} nm" for w in waves)
        assert len(set(src.channel_colors)) > 1
    else:  # LAS X's look-up tables: green, red
        assert src.channel_colors == ("#00ff00", "#ff0000")
    if t is not None:
        n_t = 20 if path == LIF_XZ else 2
        assert src.n_timepoints == n_t
        other = src.at_timepoint(0)
        check_source(other, _lif_expected(path, series, 0)[0])


def test_a_lif_time_series_needs_a_time_point_in_the_words_tiff_uses():
    with pytest.raises(PrecomputedTifError, match=r"is a time series of 20 time points; .*timepoint.*\(0 to 19\)"):
        open_source(LIF_XZ, series=0)
    with pytest.raises(PrecomputedTifError, match=r"timepoint=20.* out of range"):
        open_source(LIF_XZ, series=0, timepoint=20)


def test_a_file_of_several_images_is_refused_without_series_listing_them():
    with pytest.raises(PrecomputedTifError) as err:
        open_source(LIF_XZ)
    message = str(err.value)
    assert "\n" not in message
    for text in ("holds 3 images", "series=N", "0 'xzt' (T 20, C 2, Z 128, X 128)", "1 'xzy' (Y 23, C 2, Z 128, X 128)",
                 "2 'xz' (C 2, Z 512, X 512)"):
        assert text in message, message
    with pytest.raises(PrecomputedTifError, match="series=3.* out of range"):
        open_source(LIF_XZ, series=3)
    # One image needs no series; 0 is accepted all the same.
    assert open_source(ND2_PBMC, series=0).shape == open_source(ND2_PBMC).shape


@pytest.mark.parametrize("fmt", ["precomputed", "ome-zarr"])
@pytest.mark.parametrize("path, series", [(LIF_XZ, 1), (ND2_PBMC, None)])
def test_a_conversion_read_back_by_tensorstore_equals_the_source(tmp_path, fmt, path, series):
    src = open_source(path, series=series)
    z, y, x = src.shape
    expected = src.read(Box(0, x, 0, y, 0, z)).reshape(src.n_channels, z, y, x)
    dest = str(tmp_path / "out")
    info = convert(path, dest, format=fmt, series=series, n_cores=1)
    assert info["precomputed_tif"]["voxel_size_from"] == src.voxel_size_origin
    assert info["precomputed_tif"]["channel_names"][:src.n_channels] == \
        [n or f"channel {i}" for i, n in enumerate(src.channel_names or [None] * src.n_channels)]
    np.testing.assert_array_equal(_tensorstore_level0(dest, fmt), expected)


def _tensorstore_level0(dest: str, fmt: str) -> np.ndarray:
    """The full-resolution level as tensorstore reads it, (c, z, y, x)."""
    import tensorstore as ts

    if fmt == "precomputed":
        t = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{os.path.abspath(dest)}",
                     "scale_index": 0}).result()
        return np.asarray(t.read().result()).transpose(3, 2, 1, 0)
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": os.path.join(dest, "0")}}).result()
    data = np.asarray(t.read().result())
    return data if data.ndim == 4 else data[None]


# --- the command ----------------------------------------------------------------------------


def test_the_command_refuses_a_file_of_several_images_in_one_line_naming_them(tmp_path):
    p = run_command("--source", LIF_XZ, "--dest", str(tmp_path / "out"))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("precomputed-tif: error: "), p.stderr
    assert "--series N" in lines[0] and "1 'xzy' (Y 23, C 2, Z 128, X 128)" in lines[0], lines[0]
    assert not os.path.exists(tmp_path / "out")


def test_inspect_prints_what_would_be_read_and_writes_nothing(tmp_path):
    p = run_command("--source", LIF_XZ, "--inspect")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for text in ("3 images", "image 1 'xzy' (Y 23, C 2, Z 128, X 128):", "size x, y, z: 128, 23, 128; uint8",
                 "from the LIF metadata of", "time points: 20", "'channel 0' #00ff00"):
        assert text in out, out
    p = run_command("--source", ND2_PBMC, "--inspect", "--channel", "1")
    assert p.returncode == 0, p.stderr
    assert "channels: 1: 0 'DAPI'" in p.stdout and "0.64678" in p.stdout, p.stdout
    # A TIFF too, and nothing is written anywhere.
    import tifffile

    tif = str(tmp_path / "stack.tif")
    tifffile.imwrite(tif, np.zeros((3, 5, 7), np.uint16), imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 1.5, "unit": "um", "axes": "ZYX"})
    p = run_command("--source", tif, "--inspect")
    assert p.returncode == 0, p.stderr
    assert "size x, y, z: 7, 5, 3; uint16" in p.stdout and "0.5, 0.5, 1.5 µm" in p.stdout, p.stdout
    assert os.listdir(tmp_path) == ["stack.tif"]
    p = run_command("--source", tif)
    assert p.returncode == 2 and "--dest" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.parametrize("path, module, extra", [(ND2_PBMC, "nd2", "nd2"), (LIF_XZ, "liffile", "lif")])
def test_a_missing_reader_library_is_one_line_naming_the_extra(tmp_path, path, module, extra):
    p = run_command("--source", path, "--dest", str(tmp_path / "out"), "--series", "1" if extra == "lif" else "0",
                    block=module)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert f'pip install "precomputed-tif[{extra}]"' in lines[0] and module in lines[0], lines[0]
