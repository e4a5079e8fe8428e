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
import re
import subprocess
import sys

import numpy as np
import pytest

from precomputed_tif import PrecomputedTifError, convert
from precomputed_tif.geometry import Box
from precomputed_tif.sources import Source, open_source
from tests.helpers import CHECKOUT, DATA
from tests.integration.test_blockfs_resume import one_line_error

VENDOR = os.path.join(DATA, "vendor")
ND2_PBMC = os.path.join(VENDOR, "example-pbmc.nd2")
ND2_YEAST = os.path.join(VENDOR, "example-cerevisiae.nd2")
ND2_ZSTACK = os.path.join(VENDOR, "example-zstack.nd2")
ND2_TIMELAPSE = os.path.join(VENDOR, "example-timelapse.nd2")
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


def refusals(source, dest) -> list[str]:
    """The one line each of a conversion of ``source`` into ``dest`` and of its ``--inspect``,
    both refused (status 2, no traceback) with nothing written at ``dest``."""
    lines = []
    for args in (["--dest", str(dest)], ["--inspect"]):
        p = run_command("--source", str(source), *args)
        err = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(err) == 1 and "Traceback" not in p.stderr, p.stderr
        lines.append(err[0])
    assert not os.path.exists(dest)
    return lines


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


def test_an_uncalibrated_nd2_has_no_voxel_size(tmp_path):
    """NIS-Elements' ``bCalibrated`` (a CLX-Lite boolean: type 1, the name's length, the name in
    UTF-16, its value byte) turned off in a copy of a real file: what NIS-Elements writes for an
    image taken without a calibration, keeping a number of µm per pixel beside it."""
    import nd2

    data = bytearray(open(ND2_YEAST, "rb").read())
    name = "bCalibrated\0".encode("utf-16-le")
    at = data.index(name) + len(name)
    assert data.count(name) == 1 and data[at] == 1
    data[at] = 0
    path = tmp_path / "uncalibrated.nd2"
    path.write_bytes(bytes(data))
    with nd2.ND2File(str(path)) as f:  # nd2 reads it so: uncalibrated, the number still there
        assert f.metadata.channels[0].volume.axesCalibrated == (False, False, False)
        assert f.voxel_size().x == pytest.approx(0.10833, rel=1e-4)
        expected = f.asarray()[:, None]
    src = open_source(str(path))
    check_source(src, expected)
    assert (src.voxel_size, src.voxel_size_origin) == ((None, None, None), "")
    p = run_command("--source", str(path), "--inspect")
    assert p.returncode == 0 and "voxel size: not recorded" in p.stdout, p.stdout


def test_an_nd2_z_stack_reads_as_nd2_does_with_the_z_loop_step(tmp_path):
    import nd2

    with nd2.ND2File(ND2_ZSTACK) as f:
        expected = f.asarray()[None]  # (z, y, x) -> (c=1, z, y, x)
        step = f.experiment[0].parameters.stepUm
        calibration = f.voxel_size()
    src = open_source(ND2_ZSTACK)
    check_source(src, expected)
    assert src.voxel_size == pytest.approx((calibration.x, calibration.y, step))
    assert (src.channel_names, src.n_timepoints, src.time_interval) == (("FITC BP",), 1, None)
    info = convert(ND2_ZSTACK, str(tmp_path / "out"), format="precomputed", n_cores=1)
    assert info["scales"][0]["resolution"] == pytest.approx([1000 * v for v in src.voxel_size])
    np.testing.assert_array_equal(_tensorstore_level0(str(tmp_path / "out"), "precomputed"), expected)


def test_an_nd2_time_lapse_has_the_interval_nis_elements_measured(tmp_path):
    import json

    import nd2

    with nd2.ND2File(ND2_TIMELAPSE) as f:
        expected = f.asarray()  # (t, y, x)
        # When each frame was taken, as nd2 reads it from each frame's own metadata.
        times_ms = [f.frame_metadata(i).channels[0].time.relativeTimeMs for i in range(f.sizes["T"])]
    assert len(times_ms) == 53
    src = open_source(ND2_TIMELAPSE, timepoint=20)
    check_source(src, expected[20][None, None])
    assert (src.n_timepoints, src.time_unit) == (53, "second")
    assert src.time_interval == pytest.approx(float(np.diff(times_ms).mean()) / 1000, rel=1e-3)
    assert src.at_timepoint(52).time_interval == src.time_interval
    check_source(src.at_timepoint(52), expected[52][None, None])
    p = run_command("--source", ND2_TIMELAPSE, "--inspect")
    assert p.returncode == 0 and f"time points: 53, {src.time_interval:g} s apart (" in p.stdout, p.stdout
    # One OME-Zarr with a t axis scaled by the interval, every time point as nd2 reads it.
    dest = tmp_path / "out"
    convert(ND2_TIMELAPSE, str(dest), format="ome-zarr", n_cores=1)
    with open(dest / "zarr.json") as f:
        multiscale = json.load(f)["attributes"]["ome"]["multiscales"][0]
    assert multiscale["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale[0] == pytest.approx(src.time_interval)
    import tensorstore as ts

    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(dest / "0")}}).result()
    np.testing.assert_array_equal(np.asarray(t.read().result()).reshape(expected.shape), expected)


# A damaged copy of a real ND2 file: where its frames' chunks and its index of them are, found in
# its bytes (a frame's chunk header: magic number, name length, data length, then its name; the
# index at the file's end: each name followed by offset and length, uint64 each).
def _frame_chunk(data: bytes, frame: int) -> tuple[int, int]:
    """(offset of frame ``frame``'s chunk header, offset of its entry in the index)."""
    name = b"ImageDataSeq|%d!" % frame
    header, entry = data.find(name) - 16, data.rfind(name)
    assert 0 < header < entry and data[header:header + 4] == bytes.fromhex("DACEBE0A")
    return header, entry


def _damaged_nd2(data: bytes, how: str) -> bytes:
    out = bytearray(data)
    if how == "cut in the frames' pixels":
        header, _ = _frame_chunk(data, 7)
        return bytes(out[:header + 4096 + 1000])
    if how == "cut after the file's header":
        return bytes(out[:4096])
    header, entry = _frame_chunk(data, 7)
    if how == "frame chunk's magic overwritten":
        out[header:header + 4] = b"XXXX"
    elif how == "frame chunk header zeroed":
        out[header:header + 4096] = bytes(4096)
    elif how == "frame chunk's length changed":
        out[header + 8] ^= 0x10
    elif how == "index points past the end":
        out[entry + 16:entry + 24] = (len(data) + 4096).to_bytes(8, "little")
    elif how == "index points too close to the end":
        out[entry + 16:entry + 24] = (len(data) - 20000).to_bytes(8, "little")
    elif how == "index points at another chunk":
        out[entry + 16:entry + 24] = _frame_chunk(data, 3)[0].to_bytes(8, "little")
    elif how == "frame missing from the index":
        out[entry + 12] = ord("X")  # "ImageDataSeq|7!" -> "ImageDataSeX|7!"
    else:
        raise AssertionError(how)
    return bytes(out)


@pytest.mark.parametrize("how", [
    "cut in the frames' pixels", "cut after the file's header", "frame chunk's magic overwritten",
    "frame chunk header zeroed", "frame chunk's length changed", "index points past the end",
    "index points too close to the end", "index points at another chunk", "frame missing from the index",
])
def test_a_damaged_nd2_is_one_line_naming_the_frame_and_nothing_is_written(tmp_path, how):
    with open(ND2_ZSTACK, "rb") as f:
        bad = tmp_path / "bad.nd2"
        bad.write_bytes(_damaged_nd2(f.read(), how))
    words = [str(bad), "damaged or truncated"]
    if not how.startswith("cut"):  # a cut file has lost its index: no frame can be named
        words.append("the frame at z 7, time point 0, position 0 cannot be read")
    dest = tmp_path / "out"
    for fmt in ("precomputed", "ome-zarr"):
        one_line_error(run_command("--source", str(bad), "--dest", str(dest), "--format", fmt), *words)
        assert not dest.exists()
    one_line_error(run_command("--source", str(bad), "--inspect"), *words)


def test_a_frame_damaged_after_the_file_was_opened_is_one_error_naming_it(tmp_path):
    bad = tmp_path / "bad.nd2"
    with open(ND2_TIMELAPSE, "rb") as f:
        data = f.read()
    bad.write_bytes(data)
    src = open_source(str(bad), timepoint=30)
    header, _ = _frame_chunk(data, 30)
    with open(bad, "r+b") as f:  # the file's size stays, its modification time changes
        f.seek(header)
        f.write(b"XXXX")
    with pytest.raises(PrecomputedTifError) as err:
        src.read(Box(0, 64, 0, 64, 0, 1))
    assert "the frame at z 0, time point 30, position 0 cannot be read" in str(err.value)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    src.at_timepoint(29).read(Box(0, 64, 0, 64, 0, 1))  # the others still read


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


def test_a_lif_time_series_has_the_interval_las_x_records():
    import liffile

    with liffile.LifFile(LIF_XZ) as lif:
        times = np.asarray(lif.images[0].coords["T"])
    src = open_source(LIF_XZ, series=0, timepoint=3)
    assert (src.time_interval, src.time_unit) == (pytest.approx(float(np.diff(times).mean())), "second")
    assert (src.at_timepoint(19).time_interval, src.at_timepoint(19).time_unit) == (src.time_interval, "second")
    p = run_command("--source", LIF_XZ, "--series", "0", "--inspect")
    assert p.returncode == 0 and f"time points: 20, {src.time_interval:g} s apart (" in p.stdout, p.stdout
    # No time axis, no interval.
    assert (open_source(LIF_XZ, series=1).time_interval, open_source(LIF_XZ, series=1).time_unit) == (None, "")


# Colour LIF images (written here from the format's layout: no public LAS X file holds one), read
# back by liffile as the independent reader.


def _liffile_colour(path: str) -> np.ndarray:
    """Image 0 of a colour LIF as liffile reads it whole: (t, z, y, x, rgb)."""
    import liffile

    with liffile.LifFile(path) as lif:
        im = lif.images[0]
        dims = im.dims  # liffile learns of padded rows only once it has worked out the axes
        data = im.asarray()
    assert dims[-1] == "S"
    return data if dims[0] == "T" else data[None]


@pytest.mark.parametrize("dtype, shape, options", [
    ("uint8", (1, 5, 19, 23), {}),  # stored blue first, as LAS X stores colour: reversed when read
    ("uint8", (1, 5, 19, 23), {"order": "RGB"}),  # stored red first: read as it is
    ("uint16", (2, 3, 17, 37), {"stored_width": 38, "resolution": 12}),  # 12-bit, rows padded, time points
])
def test_colour_lif_images_read_as_liffile_does(tmp_path, dtype, shape, options):
    from tests.helpers.lif_files import write_rgb_lif

    rng = np.random.default_rng(21)
    truth = rng.integers(0, 4096 if dtype == "uint16" else 256, (*shape, 3)).astype(dtype)
    path = str(tmp_path / "colour.lif")
    write_rgb_lif(path, truth, spacing_um=(0.4, 0.45, 1.5), **options)
    own = _liffile_colour(path)
    np.testing.assert_array_equal(own, truth)  # the file says what was meant, as liffile reads it
    for t in range(shape[0]):
        src = open_source(path, timepoint=t if shape[0] > 1 else None)
        assert src.rgb and src.channel_names == ("red", "green", "blue")
        assert src.voxel_size == pytest.approx((0.4, 0.45, 1.5))
        check_source(src, np.moveaxis(own[t], -1, 0))
        blue = open_source(path, timepoint=t if shape[0] > 1 else None, channel=2)
        check_source(blue, own[t][None, ..., 2])


@pytest.mark.slow
def test_converting_a_colour_lif_takes_memory_flat_in_its_size(tmp_path):
    """Peak RSS of a one-process conversion of 32 and of 96 planes of 512 x 512 RGB: the 64 more
    planes (48 MiB) add less than 8 MiB, as reading a region holds that region, never the image;
    the conversion is read back by tensorstore."""
    from tests.helpers.lif_files import write_rgb_lif
    from tests.helpers.peak_rss import source_conversion_peak_rss

    plane = (np.arange(512 * 512 * 3, dtype=np.uint32).reshape(512, 512, 3) * 2654435761 % 251).astype(np.uint8)
    peaks = {}
    for n in (32, 96):
        path = str(tmp_path / f"colour{n}.lif")
        write_rgb_lif(path, np.broadcast_to(plane, (n, 512, 512, 3)))
        peaks[n] = source_conversion_peak_rss(path, str(tmp_path / f"out{n}"), '{"format": "precomputed"}')
    print("peak RSS MiB by planes:", {n: round(p / 2**20, 1) for n, p in peaks.items()})
    assert peaks[96] - peaks[32] < 8 * 2**20, {n: p / 2**20 for n, p in peaks.items()}
    level0 = _tensorstore_level0(str(tmp_path / "out32"), "precomputed")
    np.testing.assert_array_equal(level0, np.moveaxis(_liffile_colour(str(tmp_path / "colour32.lif"))[0], -1, 0))


# --- damaged LIF files (copies of a real one, cut or spoiled) -----------------------------------

_XZ_BLOCKS = (91117, 746521, 1500229)  # where the data blocks of images 0, 1, 2 of xz-example.lif begin


def _damaged_lif(kind: str) -> bytes:
    """xz-example.lif damaged: cut, or with a byte changed."""
    import struct

    with open(LIF_XZ, "rb") as f:
        data = bytearray(f.read())
    if kind == "cut in image 2":
        return bytes(data[:1_700_000])
    if kind == "cut in a block header":
        return bytes(data[:_XZ_BLOCKS[1] + 10])
    if kind == "cut between images":
        return bytes(data[:_XZ_BLOCKS[1]])
    if kind == "cut in the XML":
        return bytes(data[:50_000])
    if kind == "cut in the header":
        return bytes(data[:8])
    if kind == "empty":
        return b""
    if kind == "block header spoiled":
        data[_XZ_BLOCKS[1]] = 0
    elif kind == "block too small":
        struct.pack_into("<Q", data, _XZ_BLOCKS[2] + 9, 1000)
    elif kind == "XML spoiled":
        at = data.index("<Dimensions>".encode("utf-16-le"))
        data[at:at + 2] = b"x\0"
    elif kind == "not a LIF":
        data[0] = 0x71
    return bytes(data)


# kind of damage: words of the one line (besides the file's name), the images --inspect can still
# describe (None: none, the file as a whole cannot be read).
DAMAGES = {
    "cut in image 2": (r"cannot be read: the file is truncated: image 2 'xz' needs 324563 bytes beyond its end",
                       (0, 1)),
    "cut in a block header": (r"the file is truncated: it ends \(at 746531 bytes\) before the data of image "
                              r"[12] '\w+' \(\d+ bytes\)", (0,)),
    "cut between images": (r"the file is truncated: it ends \(at 746521 bytes\) before the data of image [12]", (0,)),
    "cut in the XML": (r"the file is truncated: its description of the images \(XML\) needs 41073 bytes beyond "
                       r"its end", None),
    "cut in the header": (r"the file is truncated: it ends within its 13-byte header", None),
    "empty": (r"cannot be read: the file is empty", None),
    "block header spoiled": (r"is damaged: the data of image [12] '\w+' cannot be found \(the file cannot be "
                             r"read beyond byte 746521 of 2024563\)", (0,)),
    "block too small": (r"is damaged: image 2 'xz' holds 1000 bytes of data where its dimensions need 524288",
                        (0, 1)),
    "XML spoiled": (r"is not a readable Leica LIF file: its description of the images \(XML\) is damaged", None),
    "not a LIF": (r"is not a Leica LIF or LOF file \(it does not begin as one\)", None),
}


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_a_damaged_lif_is_one_line_saying_what_is_wrong_and_nothing_is_written(tmp_path, kind):
    words, readable = DAMAGES[kind]
    path = tmp_path / "damaged.lif"
    path.write_bytes(_damaged_lif(kind))
    dest = tmp_path / "out"
    p = run_command("--source", str(path), "--series", "2", "--dest", str(dest))
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith(f"precomputed-tif: error: {path}") and re.search(words, lines[0]), lines[0]
    assert not dest.exists()
    # --inspect lists what can be read, says which images cannot, and fails.
    p = run_command("--source", str(path), "--inspect")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and re.search(words, lines[0]), p.stderr
    if readable is None:
        assert p.stdout == ""
        return
    for image, name in enumerate(("xzt", "xzy", "xz")):
        heading = f"image {image} '{name}' ("
        assert heading in p.stdout, p.stdout
        described = p.stdout.split(heading, 1)[1].splitlines()[1]
        if image in readable:
            assert described.startswith("  axes: "), p.stdout
        else:
            assert described.startswith(f"  not readable: {path}") and re.search(words.replace("[12]", str(image))
                                                                                 .replace("'\\w+'", f"'{name}'"),
                                                                                 described), described
    assert not dest.exists()
    # The images the file still holds whole are read as liffile reads them from the intact file.
    for image in readable:
        expected = _lif_expected(LIF_XZ, image, 0 if image == 0 else None)[0]
        check_source(open_source(str(path), series=image, timepoint=0 if image == 0 else None), expected)


def test_a_lof_file_reads_as_liffile_does_and_cut_short_is_one_line(tmp_path):
    """A single-image .lof file (its data before its XML): read whole as liffile reads it; cut in
    its data or in its XML, one line and status 2 from the command, as for a LIF file."""
    from tests.helpers.lif_files import write_rgb_lif

    truth = np.random.default_rng(5).integers(0, 256, (3, 11, 13, 3)).astype(np.uint8)
    path = tmp_path / "colour.lof"
    write_rgb_lif(str(path), truth, lof=True)
    own = _liffile_colour(str(path))
    np.testing.assert_array_equal(own, truth[None])
    check_source(open_source(str(path)), np.moveaxis(own[0], -1, 0))
    whole = path.read_bytes()
    data_end = 13 + 2 * len("LMS_Object_File") + 10 + 9 + truth.nbytes
    for n, words in ((data_end - 500, "its image data needs 500 bytes beyond its end"),
                     (len(whole) - 200, r"its description of the image \(XML\) needs 200 bytes beyond its end")):
        cut = tmp_path / f"cut{n}.lof"
        cut.write_bytes(whole[:n])
        for line in refusals(cut, tmp_path / "out"):
            assert re.search(f"{cut} cannot be read: the file is truncated: {words}", line), line


def _lif_as_liffile_reads(path, truth: np.ndarray, channel_axis: int, dims, channels, liffile_dims) -> np.ndarray:
    """Write ``truth`` (its channels on ``channel_axis``) as a LIF laid out by ``dims`` and
    ``channels`` (see :func:`~tests.helpers.lif_files.write_lif_image`); returns (c, z, y, x) as
    liffile reads it, having checked that liffile sees ``liffile_dims`` and ``truth``."""
    import liffile

    from tests.helpers.lif_files import write_lif_image

    write_lif_image(str(path), truth.tobytes(), dims, channels)
    with liffile.LifFile(str(path)) as lif:
        im = lif.images[0]
        assert im.dims == liffile_dims
        expected = np.moveaxis(im.asarray(), channel_axis, 0)
    np.testing.assert_array_equal(expected, np.moveaxis(truth, channel_axis, 0))
    return expected


def test_lif_channel_colours_follow_the_channels_data_not_the_order_they_are_listed_in(tmp_path):
    """Two channels of 3 planes, the red-LUT one stored first, but described after the green one:
    channel 0 is the data stored first (as liffile numbers channels, by their BytesInc), and is red."""
    truth = np.random.default_rng(7).integers(0, 4096, (3, 2, 5, 7)).astype(np.uint16)  # z, c, y, x
    path = tmp_path / "listed.lif"
    expected = _lif_as_liffile_reads(path, truth, 1, [("X", 7, 2), ("Y", 5, 14), ("Z", 3, 140)],
                                     [(0, 70, 12, "Green"), (0, 0, 12, "Red")], ("Z", "C", "Y", "X"))
    src = open_source(str(path))
    check_source(src, expected)
    assert src.channel_colors == ("#ff0000", "#00ff00")
    assert open_source(str(path), channel=1).channel_colors == ("#00ff00",)


def test_lif_channels_stored_side_by_side_are_colour_only_when_tagged_red_green_blue(tmp_path):
    """Two channels stored sample by sample in each pixel (liffile's ``S`` axis) but not tagged as
    colours: channels coloured by their LUTs, not a colour image's red and green."""
    truth = np.random.default_rng(8).integers(0, 256, (3, 5, 7, 2)).astype(np.uint8)  # z, y, x, c
    path = tmp_path / "interleaved.lif"
    expected = _lif_as_liffile_reads(path, truth, -1, [("X", 7, 2), ("Y", 5, 14), ("Z", 3, 70)],
                                     [(0, 0, 8, "Cyan"), (0, 1, 8, "Magenta")], ("Z", "Y", "X", "S"))
    src = open_source(str(path))
    check_source(src, expected)
    assert not src.rgb and src.channel_names == () and src.channel_colors == ("#00ffff", "#ff00ff")


def test_a_flim_lif_image_is_refused_in_one_line_never_read_as_pixels(tmp_path):
    """A FLIM/TCSPC acquisition (LAS X's ``SingleMoleculeDetection``), which liffile lists as a
    FLIM image: its bytes are photon arrival times, so it is refused, by --inspect too, and
    nothing is written."""
    import liffile

    from tests.helpers.lif_files import write_lif_image

    path = tmp_path / "flim.lif"
    write_lif_image(str(path), bytes(5 * 7 * 2), [("X", 7, 2), ("Y", 5, 14)], [(0, 0, 16, "Gray")], flim=True)
    with liffile.LifFile(str(path)) as lif:
        assert lif.images[0].is_flim
    for line in refusals(path, tmp_path / "out"):
        assert "FLIM" in line, line


def test_a_lif_image_whose_data_is_larger_than_its_dimensions_say_is_refused_not_misread(tmp_path):
    """One channel of 5 rows of 7 bytes, each row stored 8 bytes apart (40 bytes of data): liffile
    refuses it (its data is not the size its dimensions give), and so does the command, in one
    line, rather than reading the rows as if they followed each other."""
    import liffile

    from tests.helpers.lif_files import write_lif_image

    rows = np.zeros((5, 8), np.uint8)
    rows[:, :7] = np.arange(1, 36, dtype=np.uint8).reshape(5, 7)
    path = tmp_path / "padded.lif"
    write_lif_image(str(path), rows.tobytes(), [("X", 7, 1), ("Y", 5, 8)], [(0, 0, 8, "Gray")])
    with liffile.LifFile(str(path)) as lif, pytest.raises(ValueError, match="35 != self.size=40"):
        lif.images[0].asarray()
    words = "is damaged: image 0 'image' holds 40 bytes of data where its dimensions need 35"
    with pytest.raises(PrecomputedTifError, match=words):
        open_source(str(path))
    dest = tmp_path / "out"
    for args in (["--dest", str(dest)], ["--inspect"]):
        assert re.search(words, one_line_error(run_command("--source", str(path), *args)))
    assert not dest.exists()


def test_a_lif_cut_short_after_it_was_opened_is_one_line_not_a_crash(tmp_path):
    path = tmp_path / "cut.lif"
    with open(LIF_XZ, "rb") as f:
        path.write_bytes(f.read())
    src = open_source(str(path), series=2)
    z, y, x = src.shape
    src.read(Box(0, x, 0, y, 0, 1))  # opened and read once in this process
    os.truncate(path, _XZ_BLOCKS[2] + 100_000)
    with pytest.raises(PrecomputedTifError, match=r"the file is truncated: image 2 'xz' needs \d+ bytes beyond"):
        src.read(Box(0, x, 0, y, z - 1, z))


def test_a_lif_saved_again_while_it_is_read_is_one_line_not_other_voxels(tmp_path):
    """The file is replaced, between reads, by the same file saved again with image 0 renamed: its
    description of the images is longer, so every image's data lies further on. A region read
    after that (here, or by a worker given the source pickled) is one line asking to start
    again, never the bytes now at the old place; the file as it now is reads as liffile reads it."""
    import struct

    import liffile

    path = tmp_path / "resaved.lif"
    with open(LIF_XZ, "rb") as f:
        data = f.read()
    path.write_bytes(data)
    src = open_source(str(path), series=2)
    z, y, x = src.shape
    whole = Box(0, x, 0, y, 0, z)
    before = src.read(whole)
    sent = pickle.dumps(src)
    n = struct.unpack_from("<I", data, 9)[0]
    xml = data[13:13 + 2 * n].decode("utf-16-le").replace('Name="xzt"', 'Name="xzt renamed"')
    assert len(xml) > n
    (tmp_path / "new.lif").write_bytes(struct.pack("<IIBI", 0x70, 2 * len(xml) + 5, 0x2A, len(xml))
                                       + xml.encode("utf-16-le") + data[13 + 2 * n:])
    os.replace(tmp_path / "new.lif", path)
    for source in (src, pickle.loads(sent)):
        with pytest.raises(PrecomputedTifError, match=r"resaved.lif changed while it was being read \(the data of "
                                                      r"image 2 'xz' is no longer where it was\); start again"):
            source.read(whole)
    with liffile.LifFile(str(path)) as lif:
        assert lif.images[0].name == "xzt renamed"
        expected = lif.images[2].asarray()[:, :, None]
    np.testing.assert_array_equal(before, expected)
    np.testing.assert_array_equal(open_source(str(path), series=2).read(whole), expected)


def test_a_truncated_nd2_is_one_line(tmp_path):
    with open(ND2_PBMC, "rb") as f:
        data = f.read()
    for n in (300_000, len(data) - 1000):  # cut in its frames; cut in its index at the end
        cut = tmp_path / f"cut{n}.nd2"
        cut.write_bytes(data[:n])
        for line in refusals(cut, tmp_path / "out"):
            assert "not a readable ND2 file" in line and "truncated" in line, line


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


# --- CZI (written by Zeiss's libCZI) ----------------------------------------------------------


def _write_czi(path: str, scenes: list[np.ndarray], names=None, colors=None, scale=(0.2e-6, 0.25e-6, 1.5e-6)):
    """A CZI of one (c, z, y, x) array per scene, each scene placed apart from the others."""
    from pylibCZIrw import czi

    with czi.create_czi(path, exist_ok=True) as w:
        for s, data in enumerate(scenes):
            for c in range(data.shape[0]):
                for z in range(data.shape[1]):
                    w.write(data[c, z][..., None], plane={"C": c, "Z": z}, scene=s, location=(300 * s, 40 * s))
        display = None
        if colors:
            display = {i: czi.ChannelDisplaySettingsDataClass(
                True, czi.TintingMode.Color, czi.Rgb8Color(*(np.uint8(int(col[k:k + 2], 16)) for k in (1, 3, 5))),
                0.0, 1.0) for i, col in enumerate(colors)}
        w.write_metadata("test", channel_names=dict(enumerate(names)) if names else None, scale_x=scale[0],
                         scale_y=scale[1], scale_z=scale[2], display_settings=display)


def _czi_own_read(path: str, scene: int | None, n_c: int, n_z: int) -> np.ndarray:
    """(c, z, y, x) as pylibCZIrw reads the scene's planes."""
    from pylibCZIrw import czi

    with czi.open_czi(path) as r:
        return np.stack([np.stack([r.read(plane={"C": c, "Z": z}, scene=scene)[..., 0] for z in range(n_z)])
                         for c in range(n_c)])


@pytest.fixture
def czi_file(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 65535, (2, 5, 23, 37), dtype=np.uint16)
    path = str(tmp_path / "two_channels.czi")
    _write_czi(path, [data], names=["DAPI", "GFP"], colors=["#0000ff", "#00ff00"])
    return path, data


def test_czi_reads_as_libczi_does_with_names_colours_and_scaling(czi_file):
    path, data = czi_file
    expected = _czi_own_read(path, None, 2, 5)
    np.testing.assert_array_equal(expected, data)  # what was written is what libCZI reads
    src = open_source(path)
    check_source(src, expected)
    assert src.voxel_size == pytest.approx((0.2, 0.25, 1.5))
    assert src.voxel_size_origin == f"CZI metadata of {path}"
    assert (src.channel_names, src.channel_colors) == (("DAPI", "GFP"), ("#0000ff", "#00ff00"))
    assert (src.n_timepoints, src.series) == (1, None)


def test_czi_scenes_are_series(tmp_path):
    rng = np.random.default_rng(4)
    scenes = [rng.integers(0, 255, (1, 3, 19, 27), dtype=np.uint8),
              rng.integers(0, 255, (1, 3, 11, 15), dtype=np.uint8)]
    path = str(tmp_path / "scenes.czi")
    _write_czi(path, scenes)
    with pytest.raises(PrecomputedTifError, match=r"holds 2 scenes; pick one with series=N: 0 \(Z 3, Y 19, X 27\); "
                                                  r"1 \(Z 3, Y 11, X 15\)"):
        open_source(path)
    for s, data in enumerate(scenes):
        src = open_source(path, series=s)
        expected = _czi_own_read(path, s, 1, 3)
        np.testing.assert_array_equal(expected, data)
        check_source(src, expected)
        assert src.voxel_size_origin == f"CZI metadata of {path} (scene {s})"


def _czi_with_a_pyramid_tile(path: str, layer0: np.ndarray, tile: np.ndarray) -> None:
    """A CZI of one plane: ``layer0`` (y, x) at the origin, and ``tile`` a subblock of ZEN's
    pyramid covering twice its size from the origin, beyond ``layer0``. libCZI's writer has no
    pyramid: both are written as layer 0 tiles, then the second's entries (in the subblock
    directory and in its own segment) are made what ZEN writes for a 2x pyramid tile: a logical
    size twice the stored one, pyramid type "single subblock"."""
    import struct

    from pylibCZIrw import czi

    with czi.create_czi(path, exist_ok=True) as w:
        w.write(layer0[..., None], plane={"Z": 0}, location=(0, 0))
        w.write(tile[..., None], plane={"Z": 0}, location=(0, 0))
        w.write_metadata("pyramid", scale_x=0.5e-6, scale_y=0.5e-6, scale_z=1e-6)
    data = bytearray(open(path, "rb").read())
    patched, at = 0, data.find(b"DV")
    # A directory entry: "DV", pixel type, file position, file part, compression (int32, int64,
    # int32, int32), pyramid type (uint8), 5 spare bytes, the number of dimensions (int32), then
    # per dimension its name (4 bytes), start, size (int32), start coordinate (float32), stored size.
    while at >= 0 and at + 32 <= len(data):
        n_dims = struct.unpack_from("<i", data, at + 28)[0]
        dims = {}
        for k in range(n_dims if 0 < n_dims < 16 else 0):
            off = at + 32 + 20 * k
            _, size, _, stored = struct.unpack_from("<iifi", data, off + 4)
            dims[bytes(data[off:off + 4]).rstrip(b"\0")] = (off, size, stored)
        (_, x, x_stored), (_, y, y_stored) = dims.get(b"X", (0, 0, 0)), dims.get(b"Y", (0, 0, 0))
        if (x, x_stored, y, y_stored) == (tile.shape[1],) * 2 + (tile.shape[0],) * 2:
            struct.pack_into("<i", data, dims[b"X"][0] + 8, 2 * tile.shape[1])
            struct.pack_into("<i", data, dims[b"Y"][0] + 8, 2 * tile.shape[0])
            data[at + 22] = 1
            patched += 1
        at = data.find(b"DV", at + 2)
    assert patched == 2  # the directory's entry and the subblock's own
    with open(path, "wb") as f:
        f.write(data)


def test_a_czi_pyramid_is_neither_read_nor_counted_in_the_image_size(tmp_path):
    from pylibCZIrw import czi

    rng = np.random.default_rng(11)
    layer0 = rng.integers(1, 255, (30, 41), dtype=np.uint8)
    path = str(tmp_path / "slide.czi")
    _czi_with_a_pyramid_tile(path, layer0, rng.integers(1, 255, (17, 25), dtype=np.uint8))
    with czi.open_czi(path) as r:  # libCZI: a pyramid tile reaching beyond the acquired image
        assert (r.total_bounding_rectangle.w, r.total_bounding_rectangle.h) == (50, 34)
        own = r.read(plane={"Z": 0}, roi=(0, 0, 41, 30))[..., 0]
    np.testing.assert_array_equal(own, layer0)
    src = open_source(path)
    assert src.shape == (1, 30, 41)
    check_source(src, own[None, None])
    p = run_command("--source", path, "--inspect")
    assert p.returncode == 0 and "size x, y, z: 41, 30, 1;" in p.stdout, p.stdout


# ZEN's forms of the time axis in Information/Image/Dimensions/T (as libCZI reads them): an interval
# (Start, Increment in seconds), a list of offsets from the first time point (seconds), or nothing.
CZI_TIME = {"interval": {"StartTime": "2024-05-06T07:08:09.1234567Z", "Interval": ("0", "2.5")},
            "offsets": {"Offsets": "0 1.5 3.1 4.25"},
            "none": {}}


def write_czi_time_lapse(path: str, data: np.ndarray, time: dict, names=("DAPI", "GFP")) -> None:
    """A CZI of (t, c, z, y, x) ``data`` written by libCZI, and ``time`` (one of :data:`CZI_TIME`) as
    ZEN records it in the document's ``Dimensions/T``. pylibCZIrw's writer has no setting for that
    element, so it is added to the document libCZI wrote with pylibCZIrw's own metadata editor
    (``edit_czi``, libCZI's rewrite of the metadata segment in place); the voxels are untouched."""
    import xml.etree.ElementTree as ET

    from pylibCZIrw import czi

    n_t, n_c, n_z = data.shape[:3]
    with czi.create_czi(path, exist_ok=True) as w:
        for t in range(n_t):
            for c in range(n_c):
                for z in range(n_z):
                    w.write(data[t, c, z][..., None], plane={"T": t, "C": c, "Z": z})
        w.write_metadata("time-lapse", channel_names=dict(enumerate(names)), scale_x=0.2e-6, scale_y=0.2e-6,
                         scale_z=1.0e-6)
    if not time:
        return
    with czi.edit_czi(path) as editor, editor.edit_session() as builder:
        root = ET.fromstring(builder.get_xml())
        dims = root.find("Metadata/Information/Image/Dimensions")
        assert dims is not None and dims.find("T") is None
        t_node = ET.SubElement(dims, "T")
        if "StartTime" in time:
            ET.SubElement(t_node, "StartTime").text = time["StartTime"]
        positions = ET.SubElement(t_node, "Positions")
        if "Interval" in time:
            interval = ET.SubElement(positions, "Interval")
            ET.SubElement(interval, "Start").text, ET.SubElement(interval, "Increment").text = time["Interval"]
        if "Offsets" in time:
            ET.SubElement(ET.SubElement(positions, "List"), "Offsets").text = time["Offsets"]
        builder.set_xml(ET.tostring(root, encoding="unicode"))


def czi_seconds_apart(time: dict, n_t: int) -> float | None:
    """The interval ``time`` records: its increment, or the mean step of its first ``n_t`` offsets."""
    if "Interval" in time:
        return float(time["Interval"][1])
    if "Offsets" in time:
        return float(np.diff([float(v) for v in time["Offsets"].split()][:n_t]).mean())
    return None


def czi_own_read_at(path: str, t: int, n_c: int, n_z: int) -> np.ndarray:
    """(c, z, y, x) of time point ``t`` as pylibCZIrw reads its planes."""
    from pylibCZIrw import czi

    with czi.open_czi(path) as r:
        return np.stack([np.stack([r.read(plane={"T": t, "C": c, "Z": z})[..., 0] for z in range(n_z)])
                         for c in range(n_c)])


@pytest.mark.parametrize("form", list(CZI_TIME))
def test_a_czi_time_lapse_reads_each_time_point_as_libczi_does_with_zens_interval(tmp_path, form):
    from pylibCZIrw import czi

    data = np.random.default_rng(10).integers(0, 65535, (3, 2, 5, 23, 37), dtype=np.uint16)
    path = str(tmp_path / "lapse.czi")
    write_czi_time_lapse(path, data, CZI_TIME[form])
    with czi.open_czi(path) as r:  # what libCZI reads back is what was written
        assert r.total_bounding_box["T"] == (0, 3)
        t_node = r.metadata["ImageDocument"]["Metadata"]["Information"]["Image"]["Dimensions"].get("T")
    assert (t_node is None) == (form == "none")
    with pytest.raises(PrecomputedTifError, match=r"is a time series of 3 time points; .*timepoint.*\(0 to 2\)"):
        open_source(path)
    src = open_source(path, timepoint=2)
    assert (src.n_timepoints, src.timepoint, src.channel_names) == (3, 2, ("DAPI", "GFP"))
    for t in (2, 0, 1):
        own = czi_own_read_at(path, t, 2, 5)
        np.testing.assert_array_equal(own, data[t])
        check_source(src.at_timepoint(t), own)
    apart = czi_seconds_apart(CZI_TIME[form], 3)
    assert src.time_interval == (pytest.approx(apart) if apart is not None else None)
    assert src.time_unit == ("second" if apart is not None else "")
    if form == "interval":
        p = run_command("--source", path, "--inspect")
        assert p.returncode == 0 and f"time points: 3, {apart:g} s apart (" in p.stdout, p.stdout


# --- Imaris (Bitplane's published layout, written with h5py) ------------------------------------


def _imaris_text(value) -> np.ndarray:
    """An attribute as Imaris writes it: an array of one-character byte strings."""
    return np.array([bytes([b]) for b in str(value).encode()], dtype="S1")


def _write_ims(path: str, data: np.ndarray, extent_um=(5.1, 3.9, 7.5), stamps=()) -> None:
    """(t, c, z, y, x) ``data`` as an Imaris 5.5 file: each Data array padded to whole chunks, with a
    coarser resolution level as Imaris keeps one; ``stamps``: the time points' time stamps."""
    import h5py

    n_t, n_c, z, y, x = data.shape
    with h5py.File(path, "w") as f:
        f.attrs["ImarisDataSet"] = _imaris_text("ImarisDataSet")
        f.attrs["ImarisVersion"] = _imaris_text("5.5.0")
        for t in range(n_t):
            for c in range(n_c):
                padded = np.zeros((8, 16, 32), data.dtype)
                padded[:z, :y, :x] = data[t, c]
                g = f.create_group(f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}")
                g.create_dataset("Data", data=padded, chunks=(4, 8, 16), compression="gzip")
                for k, v in (("ImageSizeX", x), ("ImageSizeY", y), ("ImageSizeZ", z)):
                    g.attrs[k] = _imaris_text(v)
                low = f.create_group(f"DataSet/ResolutionLevel 1/TimePoint {t}/Channel {c}")
                low.create_dataset("Data", data=padded[::2, ::2, ::2])
        image = f.create_group("DataSetInfo/Image")
        for k, v in (("X", x), ("Y", y), ("Z", z), ("Unit", "um"), ("Name", "cells"),
                     ("ExtMin0", -1.0), ("ExtMin1", 0.5), ("ExtMin2", 2.0),
                     ("ExtMax0", -1.0 + extent_um[0]), ("ExtMax1", 0.5 + extent_um[1]),
                     ("ExtMax2", 2.0 + extent_um[2])):
            image.attrs[k] = _imaris_text(v)
        for c, (name, color) in enumerate((("DAPI", "0.000 0.000 1.000"), ("Actin", "1.000 0.000 1.000"))[:n_c]):
            ch = f.create_group(f"DataSetInfo/Channel {c}")
            ch.attrs["Name"] = _imaris_text(name)
            ch.attrs["Color"] = _imaris_text(color)
        times = f.create_group("DataSetInfo/TimeInfo")
        times.attrs["DatasetTimePoints"] = _imaris_text(n_t)
        for i, stamp in enumerate(stamps, 1):
            times.attrs[f"TimePoint{i}"] = _imaris_text(stamp)


def test_imaris_reads_as_h5py_does_at_full_resolution_with_extents_names_and_time(tmp_path):
    import h5py

    rng = np.random.default_rng(5)
    data = rng.integers(0, 4000, (3, 2, 5, 13, 17), dtype=np.uint16)
    path = str(tmp_path / "cells.ims")
    _write_ims(path, data)
    with pytest.raises(PrecomputedTifError, match="time series of 3 time points"):
        open_source(path)
    src = open_source(path, timepoint=2)
    for t in (2, 0):
        with h5py.File(path, "r") as f:
            expected = np.stack([f[f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}/Data"][:5, :13, :17]
                                 for c in range(2)])
        np.testing.assert_array_equal(expected, data[t])
        check_source(src.at_timepoint(t), expected)
    assert src.voxel_size == pytest.approx((5.1 / 17, 3.9 / 13, 7.5 / 5))
    assert src.voxel_size_origin == f"Imaris metadata of {path}"
    assert (src.channel_names, src.channel_colors) == (("DAPI", "Actin"), ("#0000ff", "#ff00ff"))
    assert (src.n_timepoints, src.time_interval) == (3, None)  # no time stamps
    # Time stamps as Imaris writes them: the interval is their mean step.
    for stamps, interval in ((["2024-05-06 10:00:00.000", "2024-05-06 10:00:02.500", "2024-05-06 10:00:04.900"],
                              2.45),
                             (["2024-05-06 10:00:00.000", "not a time", "2024-05-06 10:00:04.900"], None),
                             (["2024-05-06 10:00:00.000", "2024-05-06 10:00:00.000", "2024-05-06 10:00:01"], None),
                             (["2024-05-06 10:00:00.000", "2024-05-06 10:00:02.500"], None)):
        path = str(tmp_path / f"stamped{len(os.listdir(tmp_path))}.ims")
        _write_ims(path, data, stamps=stamps)
        src = open_source(path, timepoint=0)
        assert src.time_interval == (pytest.approx(interval) if interval else None), stamps
        assert src.time_unit == ("second" if interval else "")


# --- BigDataViewer (written by npy2bdv) --------------------------------------------------------


@pytest.fixture
def bdv_dataset(tmp_path):
    """Two tiles in two channels over two time points: (tile, t, channel) -> (z, y, x) uint16."""
    import npy2bdv

    rng = np.random.default_rng(6)
    views = {}
    path = str(tmp_path / "stitched.h5")
    w = npy2bdv.BdvWriter(path, nchannels=2, ntiles=2, subsamp=((1, 1, 1), (2, 2, 2)), blockdim=((4, 8, 8),) * 2)
    for t in range(2):
        for tile in range(2):
            for c in range(2):
                stack = rng.integers(0, 65535, (5, 13, 17), dtype=np.uint16)
                views[tile, t, c] = stack
                w.append_view(stack, time=t, channel=c, tile=tile, voxel_size_xyz=(0.3, 0.3, 1.2), voxel_units="um")
    w.write_xml()
    w.close()
    return path, views


def test_bigdataviewer_setups_are_series_of_channels_read_as_h5py_does(bdv_dataset):
    import xml.etree.ElementTree as ET

    import h5py

    path, views = bdv_dataset
    xml = path[:-3] + ".xml"
    setup_of = {(int(s.findtext("attributes/tile")), int(s.findtext("attributes/channel"))): int(s.findtext("id"))
                for s in ET.parse(xml).getroot().iter("ViewSetup")}
    with pytest.raises(PrecomputedTifError, match=r"holds 2 setups; pick one with series=N: 0 'angle 0, "
                                                  r"illumination 0, tile 0' \(T 2, C 2, Z 5, Y 13, X 17\); 1 "):
        open_source(xml, timepoint=0)
    for given in (xml, path):  # the XML, or its HDF5 (the XML found beside it)
        for tile in range(2):
            src = open_source(given, series=tile, timepoint=1)
            assert src.files == (xml, path) or os.path.abspath(src.files[1]) == os.path.abspath(path)
            for t in (1, 0):
                with h5py.File(path, "r") as f:
                    own = np.stack([f[f"t{t:05d}/s{setup_of[tile, c]:02d}/0/cells"][...].view(np.uint16)
                                    for c in range(2)])
                np.testing.assert_array_equal(own, np.stack([views[tile, t, c] for c in range(2)]))
                check_source(src.at_timepoint(t), own)
            assert src.voxel_size == pytest.approx((0.3, 0.3, 1.2))
            assert src.voxel_size_origin == f"BigDataViewer metadata of {xml} (setup {tile} " \
                                            f"'angle 0, illumination 0, tile {tile}')"
            assert (src.n_timepoints, src.channel_names) == (2, ("0", "1"))


# --- N5 (written by tensorstore) ----------------------------------------------------------------


def _write_n5(path: str, data_zyx: np.ndarray, attributes: dict | None = None) -> None:
    import json

    import tensorstore as ts

    z, y, x = data_zyx.shape
    t = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": path}, "create": True,
                 "metadata": {"dimensions": [x, y, z], "blockSize": [8, 8, 4], "dataType": data_zyx.dtype.name,
                              "compression": {"type": "gzip"}}}).result()
    t[...] = data_zyx.transpose(2, 1, 0)
    if attributes:
        with open(os.path.join(path, "attributes.json")) as f:
            attrs = json.load(f)
        with open(os.path.join(path, "attributes.json"), "w") as f:
            json.dump({**attrs, **attributes}, f)


def _n5_own_read(path: str) -> np.ndarray:
    import tensorstore as ts

    t = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": path}}).result()
    return np.asarray(t.read().result()).transpose(2, 1, 0)[None]


def test_n5_datasets_read_as_tensorstore_does(tmp_path):
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 65535, (6, 13, 21), dtype=np.uint16)
    root = str(tmp_path / "volume.n5")
    _write_n5(root, raw, {"pixelResolution": {"dimensions": [0.25, 0.25, 1.0], "unit": "um"}})
    src = open_source(root)
    check_source(src, _n5_own_read(root))
    assert src.voxel_size == pytest.approx((0.25, 0.25, 1.0))
    assert src.voxel_size_origin == f"N5 metadata of {root}"
    # A container of several datasets: a multiscale group counts once, by its s0.
    multi = str(tmp_path / "several.n5")
    _write_n5(os.path.join(multi, "cells", "s0"), raw)
    _write_n5(os.path.join(multi, "cells", "s1"), raw[::2, ::2, ::2].copy())
    labels = rng.integers(0, 9, (6, 13, 21), dtype=np.uint32)
    _write_n5(os.path.join(multi, "labels"), labels, {"resolution": [500, 500, 2000], "units": ["nm"] * 3})
    with pytest.raises(PrecomputedTifError, match=r"holds 2 datasets; pick one with series=N: 0 'cells' "
                                                  r"\(d0 21, d1 13, d2 6\); 1 'labels'"):
        open_source(multi)
    check_source(open_source(multi, series=0), _n5_own_read(os.path.join(multi, "cells", "s0")))
    lab = open_source(multi, series=1, segmentation=True)
    check_source(lab, _n5_own_read(os.path.join(multi, "labels")))
    assert lab.voxel_size == pytest.approx((0.5, 0.5, 2.0))


# --- conversions of the generated files, read back -------------------------------------------


@pytest.mark.parametrize("fmt", ["precomputed", "ome-zarr"])
def test_generated_files_convert_to_what_they_hold(tmp_path, czi_file, bdv_dataset, fmt):
    rng = np.random.default_rng(8)
    ims = str(tmp_path / "one.ims")
    _write_ims(ims, rng.integers(0, 4000, (1, 2, 5, 13, 17), dtype=np.uint16))
    n5 = str(tmp_path / "v.n5")
    _write_n5(n5, rng.integers(0, 255, (7, 9, 11), dtype=np.uint8))
    cases = [(czi_file[0], {}), (ims, {}), (bdv_dataset[0][:-3] + ".xml", {"series": 1, "timepoint": 1}), (n5, {})]
    for i, (path, picks) in enumerate(cases):
        src = open_source(path, **picks)
        z, y, x = src.shape
        expected = src.read(Box(0, x, 0, y, 0, z)).reshape(src.n_channels, z, y, x)
        dest = str(tmp_path / f"out{i}")
        convert(path, dest, format=fmt, n_cores=1, **picks)
        np.testing.assert_array_equal(_tensorstore_level0(dest, fmt), expected, err_msg=path)


def test_a_missing_library_for_generated_files_is_one_line_naming_the_extra(tmp_path, czi_file, bdv_dataset):
    rng = np.random.default_rng(9)
    ims = str(tmp_path / "one.ims")
    _write_ims(ims, rng.integers(0, 4000, (1, 1, 3, 5, 7), dtype=np.uint16))
    n5 = str(tmp_path / "v.n5")
    _write_n5(n5, rng.integers(0, 255, (3, 5, 7), dtype=np.uint8))
    for path, module, extra in ((czi_file[0], "pylibCZIrw", "czi"), (ims, "h5py", "hdf5"),
                                (bdv_dataset[0], "h5py", "hdf5"), (n5, "tensorstore", "n5")):
        p = run_command("--source", path, "--inspect", block=module)
        assert p.returncode == 2, (path, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and f'pip install "precomputed-tif[{extra}]"' in lines[0], (path, p.stderr)
