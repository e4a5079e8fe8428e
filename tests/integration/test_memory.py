"""Peak memory must not grow with the number of planes."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

MEASURE = textwrap.dedent("""
    import resource, sys
    from precomputed_tif import convert
    convert(sys.argv[1], sys.argv[2], format=sys.argv[3], n_cores=1, levels=3)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
""")


def peak_rss(tmp_path, n_planes, fmt):
    src = tmp_path / f"src{n_planes}"
    src.mkdir()
    plane = (np.arange(256 * 256, dtype=np.uint32).reshape(256, 256) * 2654435761 % 4099).astype(np.uint16)
    for z in range(n_planes):
        tifffile.imwrite(src / f"p{z:05d}.tif", plane + z)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(src / "*.tif"), str(tmp_path / f"out{n_planes}"), fmt],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_planes(tmp_path):
    # 256 planes are 32 MiB of voxels, 1024 planes 128 MiB: were the stack held
    # in memory, the second run would need about 96 MiB more.
    small = peak_rss(tmp_path, 256, "zarr")
    large = peak_rss(tmp_path, 1024, "zarr")
    assert large - small < 16 * 2**20, (small / 2**20, large / 2**20)
