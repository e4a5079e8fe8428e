"""A time series OME-Zarr in real Neuroglancer, from nginx serving plain files, opened with the
link the project makes: the t dimension picks the time point, and each time point drawn is its
own source plane."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.sources.synthetic import synthetic_planes
from precomputed_tif.viewer.links import viewer_state, zarr_layers
from tests.e2e.test_ome_zarr_viewer import drawn
from tests.e2e.test_viewer import SIZE, browser, rendered_matches_source  # noqa: F401  (browser: a fixture)
from tests.helpers.servers import require_nginx, start_static_nginx

SHAPE = (20, 150, 170)  # z, y, x of each time point

pytestmark = pytest.mark.nginx


@pytest.fixture(scope="module")
def movie():
    require_nginx()
    root = tempfile.mkdtemp(prefix="pt-e2e-time-")
    try:
        frames = np.stack([np.stack(list(synthetic_planes(SHAPE, seed=s))) for s in (11, 12)])  # t, z, y, x
        src = os.path.join(root, "movie.tif")
        tifffile.imwrite(src, frames, imagej=True, metadata={"axes": "TZYX", "finterval": 2.0})
        site = os.path.join(root, "site")
        info = convert(src, os.path.join(site, "movie"), format="ome-zarr", chunk_size=(32, 32, 32), n_cores=1)
        nginx = start_static_nginx(root, site)
        yield {"server": nginx, "frames": frames, "info": dict(info)}
        nginx.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_each_time_point_is_drawn_from_its_own_planes(browser, movie):  # noqa: F811
    info, frames = movie["info"], movie["frames"]
    url = f"zarr://{movie['server'].url}/movie"
    state = viewer_state(zarr_layers(url, info, "movie"), info)
    assert list(state["dimensions"]) == ["x", "y", "z", "t"]
    z = SHAPE[0] // 2
    shots = {}
    for t in range(2):
        x, y, _, first = state["position"]
        assert first == 0  # the link opens at time point 0
        # Time point t is centred at t (NGFF: translation 0), plane z at z + 0.5 (half a voxel).
        shown = {**state, "position": [x, y, z + 0.5, t], "crossSectionScale": 0.5, "layout": "xy",
                 "selectedLayer": {"visible": False}}
        browser.show({"layers": []})
        browser.show(shown)
        for _ in range(40):
            png = browser.screenshot(*SIZE)
            if drawn(png) and rendered_matches_source(png, frames[t, z], 0.5) > 0.6:
                break
            time.sleep(0.25)
        shots[t] = png
    for t in range(2):
        own, other = frames[t, z], frames[1 - t, z]
        r_own = rendered_matches_source(shots[t], own, 0.5)
        r_other = rendered_matches_source(shots[t], other, 0.5)
        assert r_own > 0.6, f"time point {t}: the view is not its plane (r={r_own:.2f})"
        assert r_other < 0.3, f"time point {t}: the view is the other time point's plane (r={r_other:.2f})"
