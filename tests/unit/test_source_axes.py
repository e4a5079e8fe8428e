"""The Source seam states its axes and time points: ``axes``, ``n_timepoints``, ``timepoint``
and ``at_timepoint(t)``, for TIFF hyperstacks (ImageJ and OME, one file or one file per plane)
and for a dataset read back as a source."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import tifffile

from precomputed_tif import PrecomputedTifError, convert
from precomputed_tif.errors import for_command_line
from precomputed_tif.geometry import Box
from precomputed_tif.sources import DatasetSource, Source, open_source

T, Z, C, Y, X = 3, 7, 2, 21, 29  # odd, nothing divides anything

# Inside the volume on every side, so that reading it crops in x, y and z.
BOX = Box(3, 26, 2, 19, 1, 6)


def _hyperstack() -> np.ndarray:
    """(t, z, c, y, x) uint16 whose every voxel differs from its neighbours in time and channel."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 60000, size=(T, Z, C, Y, X), dtype=np.uint16)


def _czyx(data: np.ndarray, t: int) -> np.ndarray:
    return data[t].transpose(1, 0, 2, 3)


@pytest.fixture(params=["imagej", "ome"])
def hyperstack(request, tmp_path):
    """A 5-D TZCYX TIFF written by tifffile (as an ImageJ hyperstack or an OME-TIFF) and its array."""
    data = _hyperstack()
    path = str(tmp_path / f"{request.param}.tif")
    if request.param == "imagej":
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    else:
        tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata={"axes": "TZCYX"})
    with tifffile.TiffFile(path) as tif:  # the writer recorded the five axes the test relies on
        assert (tif.series[0].axes, tif.series[0].shape) == ("TZCYX", data.shape)
    return path, data


def test_a_hyperstack_reports_its_time_points_and_axes_and_reads_each_time_point(hyperstack):
    path, data = hyperstack
    source = open_source(path, timepoint=0)
    assert isinstance(source, Source)
    assert (source.n_timepoints, source.timepoint, source.axes, source.n_channels) == (T, 0, "czyx", C)
    for t in (2, 0, 1):
        at_t = source.at_timepoint(t)
        assert (at_t.timepoint, at_t.n_timepoints, at_t.axes, at_t.shape) == (t, T, "czyx", (Z, Y, X))
        got = at_t.read(BOX)
        assert got.ndim == len(at_t.axes)
        np.testing.assert_array_equal(got, _czyx(data, t)[(slice(None), *BOX.slices)], err_msg=f"t={t}")
        # What a worker gets: the source pickled, cut to the planes of one task.
        task = pickle.loads(pickle.dumps(at_t.subset(BOX.z0, BOX.z1)))
        np.testing.assert_array_equal(task.read(BOX), got)
    # A subset asked for another time point stays the same planes.
    part = source.subset(2, 5).at_timepoint(2)
    assert len(part.planes) == len(source.subset(2, 5).planes) == 3 * C
    box = Box(0, X, 0, Y, 2, 5)
    np.testing.assert_array_equal(part.read(box), _czyx(data, 2)[:, 2:5])
    assert source.at_timepoint(0) is source


def test_one_channel_of_a_hyperstack_is_zyx_at_every_time_point(hyperstack):
    path, data = hyperstack
    source = open_source(path, timepoint=1, channel=1)
    assert (source.axes, source.n_channels, source.timepoint) == ("zyx", 1, 1)
    at_2 = source.at_timepoint(2)
    assert (at_2.axes, at_2.channel_names) == ("zyx", source.channel_names)
    np.testing.assert_array_equal(at_2.read(BOX), data[2, :, 1][BOX.slices])


@pytest.mark.parametrize("t", [T, -1, 1.0, True, "1"])
def test_a_time_point_out_of_range_is_one_error_naming_the_parameter(hyperstack, t):
    path, _ = hyperstack
    source = open_source(path, timepoint=0)
    with pytest.raises(PrecomputedTifError) as err:
        source.at_timepoint(t)
    python, flags = str(err.value), for_command_line(err.value)
    assert "timepoint" in python and "--timepoint" in flags and "\n" not in python, python
    if t in (T, -1):
        assert f"0 to {T - 1}" in python, python


def test_time_points_in_one_file_per_plane(tmp_path):
    """A z-stack saved one file per plane, each file holding the plane's time points."""
    data = _hyperstack()[:, :, 0]  # t, z, y, x
    for z in range(Z):
        tifffile.imwrite(str(tmp_path / f"plane_{z:02d}.tif"), data[:, z], imagej=True, metadata={"axes": "TYX"})
    source = open_source(str(tmp_path / "plane_*.tif"), timepoint=2)
    assert (source.n_timepoints, source.timepoint, source.axes, source.shape) == (T, 2, "zyx", (Z, Y, X))
    np.testing.assert_array_equal(source.read(BOX), data[2][BOX.slices])
    for t in range(T):
        np.testing.assert_array_equal(source.at_timepoint(t).read(BOX), data[t][BOX.slices], err_msg=f"t={t}")
    part = source.subset(3, 6).at_timepoint(0)
    np.testing.assert_array_equal(part.read(Box(0, X, 0, Y, 3, 6)), data[0, 3:6])


def test_a_file_replaced_by_another_shape_is_an_error_not_other_voxels(hyperstack):
    path, data = hyperstack
    source = open_source(path, timepoint=0)
    tifffile.imwrite(path, data[:, :, :, 1:], imagej=True, metadata={"axes": "TZCYX"})
    with pytest.raises(PrecomputedTifError, match="changed"):
        source.at_timepoint(1)


def test_a_stack_that_is_no_time_series_has_one_time_point(tmp_path):
    data = _hyperstack()[0, :, 0]
    path = str(tmp_path / "stack.tif")
    tifffile.imwrite(path, data)
    source = open_source(path)
    assert (source.n_timepoints, source.timepoint, source.axes) == (1, 0, "zyx")
    assert source.at_timepoint(0) is source
    with pytest.raises(PrecomputedTifError, match="not a time series"):
        source.at_timepoint(1)


def test_another_time_point_does_not_repeat_what_opening_warned(tmp_path, caplog):
    """A file holding a second full-size series warns once that only the first is converted."""
    data = _hyperstack()[:, :, 0]
    path = str(tmp_path / "two_series.tif")
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, metadata={"axes": "TZYX"})
        tw.write(data[0, 0], metadata={"axes": "YX"})
    with caplog.at_level(logging.WARNING):
        source = open_source(path, timepoint=0)
    assert any("image series" in r.getMessage() for r in caplog.records), caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        at_1 = source.at_timepoint(1)
    np.testing.assert_array_equal(at_1.read(BOX), data[1][BOX.slices])
    assert not caplog.records, caplog.text
    # Only the reopening is quiet: opening the file again warns again.
    with caplog.at_level(logging.WARNING):
        open_source(path, timepoint=1)
    assert any("image series" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("channel, axes", [(None, "czyx"), (0, "zyx")])
def test_a_dataset_as_a_source_is_one_time_point_of_zyx_or_czyx(tmp_path, channel, axes):
    data = _hyperstack()
    path = str(tmp_path / "hyper.tif")
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    dest = str(tmp_path / "dataset")
    convert(path, dest, format="zarr", timepoint=1, channel=channel, n_cores=1, chunk_size=(16, 16, 4))
    source = open_source(dest)
    assert isinstance(source, DatasetSource) and isinstance(source, Source)
    assert (source.axes, source.n_timepoints, source.timepoint) == (axes, 1, 0)
    want = _czyx(data, 1) if channel is None else data[1, :, channel]
    got = source.read(BOX)
    assert got.ndim == len(source.axes)
    np.testing.assert_array_equal(got, want[(...,) + BOX.slices])
    assert source.at_timepoint(0) is source
    with pytest.raises(PrecomputedTifError) as err:
        source.at_timepoint(1)
    assert "--timepoint 1" in for_command_line(err.value) and "timepoint=1" in str(err.value)


@pytest.mark.parametrize("channel, axes", [(None, "czyx"), (1, "zyx")])
def test_an_ome_zarr_of_another_tool_is_a_source_of_every_time_point(tmp_path, channel, axes):
    import zarr

    from precomputed_tif.sources import OmeZarrSource

    data = _hyperstack().transpose(0, 2, 1, 3, 4)  # t, c, z, y, x as NGFF orders them
    group = zarr.open_group(str(tmp_path / "in.ome.zarr"), mode="w", zarr_format=3)
    group.create_array("0", shape=data.shape, chunks=(1, 1, 4, 8, 8), dtype=data.dtype)[:] = data
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "t", "type": "time", "unit": "minute"}, {"name": "c", "type": "channel"}]
        + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [5, 1, 2, 1, 1]}]}]}]}
    source = open_source(str(tmp_path / "in.ome.zarr"), timepoint=0, channel=channel)
    assert isinstance(source, OmeZarrSource) and isinstance(source, Source)
    assert (source.axes, source.n_timepoints, source.timepoint) == (axes, T, 0)
    assert (source.time_interval, source.time_unit) == (5.0, "minute")
    for t in range(T):
        moved = pickle.loads(pickle.dumps(source.at_timepoint(t)))
        want = data[t] if channel is None else data[t, channel]
        np.testing.assert_array_equal(moved.read(BOX), want[(...,) + BOX.slices])
    with pytest.raises(PrecomputedTifError) as err:
        source.at_timepoint(T)
    assert f"--timepoint {T}" in for_command_line(err.value)
