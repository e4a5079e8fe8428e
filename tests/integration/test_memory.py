"""Peak memory must not grow with the number of planes."""

import pytest

from tests.helpers.peak_rss import pattern_planes, source_conversion_peak_rss


def peak_rss(tmp_path, n_planes, fmt):
    source = pattern_planes(tmp_path / f"src{n_planes}", n_planes)
    return source_conversion_peak_rss(source, str(tmp_path / f"out{n_planes}"), f'{{"format": "{fmt}", "levels": 3}}')


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_planes(tmp_path):
    # 256 planes are 32 MiB of voxels, 1024 planes 128 MiB: were the stack held
    # in memory, the second run would need about 96 MiB more.
    small = peak_rss(tmp_path, 256, "zarr")
    large = peak_rss(tmp_path, 1024, "zarr")
    assert large - small < 16 * 2**20, (small / 2**20, large / 2**20)
