"""Time series (ImageJ hyperstacks, OME-TIFF with T > 1) written whole: one OME-Zarr with axes
t, c, z, y, x (NGFF 0.5 and 0.4), read back by zarr-python and ome-zarr-py; resumed after kill -9;
memory flat in the number of time points; and ``--timepoint all`` for formats without a t axis
(one dataset per time point, read back by tensorstore)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.parse

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.cli.convert import main
from precomputed_tif.pipeline.progress import DoneLog
from precomputed_tif.viewer.links import zarr_link
from tests.helpers import DATA
from tests.helpers.peak_rss import source_conversion_peak_rss
from tests.helpers.readback import files_of
from tests.integration.test_changed_source import killed_run

T, Z, C, Y, X = 3, 13, 2, 45, 71
CHUNK = (16, 16, 8)
FAST = ["--no-progress", "--n-cores", "1", "--chunk-size", ",".join(map(str, CHUNK))]


def _data(shape, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, shape, dtype=np.uint16)


def imagej_hyperstack(path, t=T, z=Z, c=C, y=Y, x=X) -> tuple[str, np.ndarray]:
    """An ImageJ hyperstack (axes TZCYX, or TZYX with one channel) with a frame interval of 2.5 s;
    returns its path and the data as (t, c, z, y, x) (or (t, z, y, x)), as tifffile reads it back."""
    data = _data((t, z, c, y, x), 1) if c > 1 else _data((t, z, y, x), 1)
    tifffile.imwrite(path, data, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TZCYX" if c > 1 else "TZYX", "finterval": 2.5, "unit": "um", "spacing": 2.0})
    read = tifffile.imread(path)
    return str(path), read.transpose(0, 2, 1, 3, 4) if c > 1 else read


def ome_time_series(path) -> tuple[str, np.ndarray]:
    """An OME-TIFF (axes TCZYX) whose time points are 250 ms apart; path and (t, c, z, y, x)."""
    data = _data((T, C, Z, Y, X), 2)
    tifffile.imwrite(path, data, ome=True, photometric="minisblack",
                     metadata={"axes": "TCZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0,
                               "TimeIncrement": 250.0, "TimeIncrementUnit": "ms",
                               "Channel": {"Name": ["DAPI", "GFP"]}})
    return str(path), tifffile.imread(path)


SOURCES = {"imagej": (imagej_hyperstack, 2.5, "second"), "ome": (ome_time_series, 250.0, "millisecond")}


def _multiscale(dest) -> dict:
    import zarr

    attrs = dict(zarr.open_group(str(dest), mode="r").attrs)
    return attrs.get("ome", attrs)["multiscales"][0]


@pytest.mark.parametrize("version", ["0.5", "0.4"])
@pytest.mark.parametrize("kind", list(SOURCES))
def test_a_time_series_becomes_one_ome_zarr_with_a_t_axis(tmp_path, kind, version):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    make, interval, unit = SOURCES[kind]
    src, want = make(tmp_path / f"{kind}.tif")
    dest = tmp_path / "movie.zarr"
    result = convert(src, str(dest), format="ome-zarr", ngff_version=version, chunk_size=CHUNK, n_cores=1)
    symbol = {"second": "s", "millisecond": "ms"}[unit]
    assert f"{T} time points {interval:g} {symbol} apart" in result.summary(), result.summary()

    group = zarr.open_group(str(dest), mode="r")
    level0 = group["0"]
    assert level0.shape == (T, C, Z, Y, X) and level0.chunks[0] == 1
    for t in range(T):
        for c in range(C):
            for z in range(Z):
                np.testing.assert_array_equal(level0[t, c, z], want[t, c, z], err_msg=f"t={t} c={c} z={z}")

    ms = _multiscale(dest)
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
    assert ms["axes"][0] == {"name": "t", "type": "time", "unit": unit}
    assert [a["type"] for a in ms["axes"][1:]] == ["channel", "space", "space", "space"]
    for i, dataset in enumerate(ms["datasets"]):
        scale = dataset["coordinateTransformations"][0]["scale"]
        # t is never downsampled: the same interval at every level, one array entry per time point.
        assert scale[:2] == [interval, 1.0]
        assert group[dataset["path"]].shape[:2] == (T, C), i

    # ome-zarr-py reads the same image, axes and all.
    nodes = list(Reader(parse_url(str(dest)))())
    image = nodes[0]
    assert [a["name"] for a in image.metadata["axes"]] == ["t", "c", "z", "y", "x"]
    np.testing.assert_array_equal(np.asarray(image.data[0]), want)

    # Every time point is pyramided in space exactly as that time point alone is.
    last = tmp_path / "last.zarr"
    convert(src, str(last), format="ome-zarr", ngff_version=version, chunk_size=CHUNK, n_cores=1, timepoint=T - 1)
    alone = zarr.open_group(str(last), mode="r")
    assert [a["name"] for a in _multiscale(last)["axes"]] == ["c", "z", "y", "x"]
    assert len(alone) == len(group)
    for key in ("1", "2"):
        np.testing.assert_array_equal(group[key][T - 1], alone[key][:])

    # The link shows the t dimension, in seconds.
    info = json.loads((dest / "info").read_text())
    state = json.loads(urllib.parse.unquote(zarr_link("zarr://http://127.0.0.1/movie.zarr", info).split("#!")[1]))
    seconds = interval * (1e-3 if unit == "millisecond" else 1.0)
    assert state["dimensions"]["t"] == [pytest.approx(seconds), "s"]
    assert len(state["position"]) == 4 and state["position"][3] == 0  # time point 0's centre


def test_timepoint_still_picks_one_time_point_for_ome_zarr(tmp_path):
    import zarr

    src, want = imagej_hyperstack(tmp_path / "h.tif")
    dest = tmp_path / "one.zarr"
    convert(src, str(dest), format="ome-zarr", chunk_size=CHUNK, n_cores=1, timepoint=1)
    assert zarr.open_group(str(dest), mode="r")["0"].shape == (C, Z, Y, X)
    np.testing.assert_array_equal(zarr.open_group(str(dest), mode="r")["0"][:], want[1])


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([*FAST, *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_other_formats_refuse_a_time_series_and_say_what_would_do(tmp_path, capsys):
    src, _ = imagej_hyperstack(tmp_path / "h.tif")
    code, _, err = _run(capsys, "--source", src, "--dest", tmp_path / "out", "--format", "precomputed")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for words in ("--format ome-zarr", "--timepoint all", "--timepoint N", f"{T} time points"):
        assert words in lines[0], lines[0]
    assert not os.path.exists(tmp_path / "out" / "info")


@pytest.mark.parametrize("fmt", ["precomputed", "zarr"])
def test_timepoint_all_writes_one_dataset_per_time_point(tmp_path, capsys, fmt):
    import tensorstore as ts

    src, want = imagej_hyperstack(tmp_path / "h.tif")
    dest = tmp_path / "out"
    code, out, err = _run(capsys, "--source", src, "--dest", dest, "--format", fmt, "--timepoint", "all")
    assert code == 0, err
    names = [f"t{t:04d}" for t in range(T)]
    assert sorted(n for n in os.listdir(dest) if not n.startswith(".")) == names
    for t, name in enumerate(names):
        assert f"wrote {dest / name}:" in out, out
        if fmt == "precomputed":
            spec = {"driver": "neuroglancer_precomputed", "kvstore": f"file://{dest / name}", "scale_index": 0}
            got = np.asarray(ts.open(spec).result().read().result())  # x, y, z, channel
            got = got.transpose(3, 2, 1, 0)
        else:
            spec = {"driver": "zarr", "kvstore": f"file://{dest / name / '1_1_1'}"}
            got = np.asarray(ts.open(spec).result().read().result())  # c, z, y, x
        np.testing.assert_array_equal(got, want[t], err_msg=name)
    # The same command again finds every time point's dataset finished.
    code, out2, err = _run(capsys, "--source", src, "--dest", dest, "--format", fmt, "--timepoint", "all")
    assert code == 0 and out2 == out, err


KILLED = textwrap.dedent("""
    import json, sys
    from precomputed_tif import convert
    if __name__ == "__main__":
        convert(sys.argv[1], sys.argv[2], format="ome-zarr", chunk_size=(8, 8, 8), n_cores=2,
                block_bytes=16 * 16 * 16 * 4, **json.loads(sys.argv[3]))
""")


def killed_then_rerun(source: str, tmp_path, name: str, options: dict, after: str) -> set:
    """Convert ``source`` with ``options`` once whole, and once killed (kill -9 of every process)
    when a task of time point ``after`` (``"t1"``) is done, then run again; the two datasets are
    the same files. Returns the ids of the tasks the killed run had done."""
    command = [sys.executable, "-c", KILLED, source]
    whole, dest = tmp_path / "whole" / name, tmp_path / "killed" / name  # the root metadata names it
    subprocess.run([*command, str(whole), json.dumps(options)], check=True)
    killed_run([*command, str(dest), json.dumps(options)], str(dest),
               until=lambda done: any(i.startswith(f"{after}/") for i in done))
    done = DoneLog(str(dest)).load()
    subprocess.run([*command, str(dest), json.dumps(options)], check=True)
    assert files_of(dest) == files_of(whole)
    return done


@pytest.mark.slow
@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_a_time_series_killed_then_rerun_is_the_same_dataset(tmp_path, version):
    src, _ = imagej_hyperstack(tmp_path / "h.tif", t=4, z=21, y=61, x=53)
    done = killed_then_rerun(src, tmp_path, "movie.zarr", {"ngff_version": version}, after="t1")
    assert done and {i.split("/")[0] for i in done} <= {"t0", "t1", "t2", "t3"}


@pytest.mark.slow
def test_memory_is_flat_in_the_number_of_time_points(tmp_path):
    """Peak RSS of a one-process conversion of 2 and of 6 time points of 32 x 256 x 256 uint16
    (4 MiB each): the 4 more time points (16 MiB) add less than one time point."""
    peaks = {}
    for n in (2, 6):
        src, _ = imagej_hyperstack(tmp_path / f"h{n}.tif", t=n, z=32, c=1, y=256, x=256)
        peaks[n] = source_conversion_peak_rss(src, str(tmp_path / f"out{n}"),
                                              '{"format": "ome-zarr", "block_bytes": 2**20}')
    per_timepoint = 32 * 256 * 256 * 2
    print("peak RSS MiB by time points:", {n: round(p / 2**20, 1) for n, p in peaks.items()})
    assert peaks[6] - peaks[2] < per_timepoint, {n: p / 2**20 for n, p in peaks.items()}


# --- a microscope file's time series (LAS X: an XZ line scan over 20 time points) ----------------

LIF_XZT = os.path.join(DATA, "vendor", "xz-example.lif")


def _lif_xzt() -> tuple[np.ndarray, np.ndarray]:
    """Image 0 of the LIF as liffile reads it whole, (t, c, z, y=1, x), and its time coordinates
    (seconds)."""
    import liffile

    with liffile.LifFile(LIF_XZT) as lif:
        im = lif.images[0]
        assert im.dims == ("T", "C", "Z", "X")
        return im.asarray()[:, :, :, None, :], np.asarray(im.coords["T"])


def test_a_lif_time_series_becomes_one_ome_zarr_with_its_interval(tmp_path, capsys):
    import zarr

    want, times = _lif_xzt()
    dest = tmp_path / "xzt.zarr"
    code, out, err = _run(capsys, "--source", LIF_XZT, "--series", "0", "--dest", dest, "--format", "ome-zarr")
    assert code == 0, err
    np.testing.assert_array_equal(zarr.open_array(str(dest / "0"), mode="r")[:], want)
    ms = _multiscale(dest)
    # LAS X records 10.07 s over 20 time points: 0.53 s apart, as liffile's time coordinates are.
    assert ms["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    step = float(np.diff(times).mean())
    for level in ms["datasets"]:
        assert level["coordinateTransformations"][0]["scale"][0] == pytest.approx(step)
    with open(dest / "info") as f:
        assert json.load(f)["precomputed_tif"]["time"] == {"timepoints": 20, "interval": pytest.approx(step),
                                                           "unit": "second"}


def test_timepoint_all_of_a_lif_time_series_writes_each_as_liffile_reads_it(tmp_path, capsys):
    import tensorstore as ts

    want, _ = _lif_xzt()
    dest = tmp_path / "out"
    code, out, err = _run(capsys, "--source", LIF_XZT, "--series", "0", "--dest", dest, "--format", "precomputed",
                          "--timepoint", "all")
    assert code == 0, err
    assert sorted(n for n in os.listdir(dest) if not n.startswith(".")) == [f"t{t:04d}" for t in range(20)]
    for t in (0, 7, 19):
        spec = {"driver": "neuroglancer_precomputed", "kvstore": f"file://{dest / f't{t:04d}'}", "scale_index": 0}
        got = np.asarray(ts.open(spec).result().read().result()).transpose(3, 2, 1, 0)
        np.testing.assert_array_equal(got, want[t], err_msg=f"time point {t}")


@pytest.mark.slow
def test_a_lif_time_series_killed_then_rerun_is_the_same_dataset(tmp_path):
    killed_then_rerun(LIF_XZT, tmp_path, "xzt.zarr", {"series": 0}, after="t3")


# --- a CZI time-lapse (written by Zeiss's libCZI, ZEN's interval in its metadata) --------------


@pytest.fixture
def czi_lapse(tmp_path):
    """A CZI of 3 time points, 2 channels, 5 x 23 x 37, time points 2.5 s apart; its path, what
    pylibCZIrw reads of each time point, (t, c, z, y, x), and the interval its metadata records."""
    from tests.integration.test_vendor_sources import (
        CZI_TIME,
        czi_own_read_at,
        czi_seconds_apart,
        write_czi_time_lapse,
    )

    path = str(tmp_path / "lapse.czi")
    write_czi_time_lapse(path, _data((3, 2, 5, 23, 37), 11), CZI_TIME["interval"])
    own = np.stack([czi_own_read_at(path, t, 2, 5) for t in range(3)])
    return path, own, czi_seconds_apart(CZI_TIME["interval"], 3)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_a_czi_time_lapse_becomes_one_ome_zarr_with_zens_interval(tmp_path, capsys, czi_lapse, version):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path, want, seconds = czi_lapse
    dest = tmp_path / "lapse.zarr"
    code, out, err = _run(capsys, "--source", path, "--dest", dest, "--format", "ome-zarr", "--ngff-version", version)
    assert code == 0, err
    assert f"3 time points {seconds:g} s apart" in out, out
    group = zarr.open_group(str(dest), mode="r")
    assert group["0"].shape == want.shape
    np.testing.assert_array_equal(group["0"][:], want)
    ms = _multiscale(dest)
    assert ms["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    for level in ms["datasets"]:
        assert level["coordinateTransformations"][0]["scale"][0] == pytest.approx(seconds)
    image = list(Reader(parse_url(str(dest)))())[0]
    assert image.metadata["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    np.testing.assert_array_equal(np.asarray(image.data[0]), want)

    # --timepoint N still picks one, with no t axis.
    one = tmp_path / "one.zarr"
    code, _, err = _run(capsys, "--source", path, "--dest", one, "--format", "ome-zarr", "--ngff-version", version,
                        "--timepoint", "1")
    assert code == 0, err
    assert [a["name"] for a in _multiscale(one)["axes"]] == ["c", "z", "y", "x"]
    np.testing.assert_array_equal(zarr.open_group(str(one), mode="r")["0"][:], want[1])


def test_timepoint_all_of_a_czi_time_lapse_writes_each_as_libczi_reads_it(tmp_path, capsys, czi_lapse):
    import tensorstore as ts

    path, want, _ = czi_lapse
    dest = tmp_path / "out"
    code, out, err = _run(capsys, "--source", path, "--dest", dest, "--format", "precomputed", "--timepoint", "all")
    assert code == 0, err
    names = [f"t{t:04d}" for t in range(3)]
    assert sorted(n for n in os.listdir(dest) if not n.startswith(".")) == names
    for t, name in enumerate(names):
        assert f"wrote {dest / name}:" in out, out
        spec = {"driver": "neuroglancer_precomputed", "kvstore": f"file://{dest / name}", "scale_index": 0}
        got = np.asarray(ts.open(spec).result().read().result()).transpose(3, 2, 1, 0)
        np.testing.assert_array_equal(got, want[t], err_msg=name)
