import numpy as np
import pytest

from precomputed_tif.pyramid.downsample import downsample_mean, downsample_mode
from tests.helpers.stacks import make_volume, reference_downsample

SHAPES = [(5, 7, 9), (4, 6, 8), (1, 3, 1), (2, 1, 5)]
STEPS = [(2, 2, 2), (2, 2, 1), (1, 1, 2)]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("step", STEPS)
def test_mean_matches_reference(dtype, shape, step):
    vol = make_volume(shape, dtype, seed=sum(shape))
    got = downsample_mean(vol, step)
    want = reference_downsample(vol, step, segmentation=False)
    assert got.dtype == vol.dtype
    if vol.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


def test_mean_of_maxima_does_not_overflow():
    for dtype in (np.uint8, np.uint16, np.uint32):
        top = np.iinfo(dtype).max
        vol = np.full((3, 3, 3), top, dtype)
        assert (downsample_mean(vol, (2, 2, 2)) == top).all()


def test_mean_rounds_to_nearest():
    vol = np.array([[[1, 2]]], np.uint8)  # mean 1.5 -> 2
    assert downsample_mean(vol, (2, 1, 1)).item() == 2
    vol = np.array([[[1, 1, 1, 2]]], np.uint8).reshape(1, 2, 2)  # 1.25 -> 1
    assert downsample_mean(vol, (2, 2, 1)).item() == 1


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("step", STEPS)
def test_mode_matches_reference(dtype, shape, step):
    vol = make_volume(shape, dtype, segmentation=True, seed=sum(shape))
    got = downsample_mode(vol, step)
    np.testing.assert_array_equal(got, reference_downsample(vol, step, segmentation=True))


def test_mode_is_most_frequent_not_max_or_mean():
    block = np.array([7, 7, 7, 1, 2, 3, 9, 9], np.uint32).reshape(2, 2, 2)
    assert downsample_mode(block, (2, 2, 2)).item() == 7
    tie = np.array([5, 5, 3, 3], np.uint64).reshape(1, 2, 2)
    assert downsample_mode(tie, (2, 2, 1)).item() == 3
    big = np.array([2**63 + 1] * 5 + [1, 1, 1], np.uint64).reshape(2, 2, 2)
    assert downsample_mode(big, (2, 2, 2)).item() == 2**63 + 1
