"""End to end: the Neuroglancer link precomputed-webserver prints for the zarr:// source of an
OME-Zarr opens it in real Neuroglancer (headless Chromium) with x, y, z display dimensions and
the channels in their colours with the measured contrast; and what Neuroglancer itself makes of
the bare zarr:// source, which the README describes."""

import json
import os
import re
import shutil
import tempfile
import time

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.sources.synthetic import synthetic_planes
from tests.e2e.test_viewer import SIZE, browser, rendered_matches_source  # noqa: F401  (browser: a fixture)
from tests.helpers.servers import start_webserver

SHAPE = (40, 150, 170)  # z, y, x
VOXEL = (1.8, 1.8, 2.0)


@pytest.fixture(scope="module")
def served():
    root = tempfile.mkdtemp(prefix="pt-e2e-zarrlink-")
    try:
        green = np.stack(list(synthetic_planes(SHAPE, seed=1)))
        magenta = np.stack(list(synthetic_planes(SHAPE, seed=2)))
        tifffile.imwrite(os.path.join(root, "two.ome.tif"), np.stack([green, magenta], axis=1), ome=True,
                         metadata={"axes": "ZCYX", "PhysicalSizeX": VOXEL[0], "PhysicalSizeY": VOXEL[1],
                                   "PhysicalSizeZ": VOXEL[2], "Channel": {"Name": ["DAPI", "GFP"]}})
        info = convert(os.path.join(root, "two.ome.tif"), os.path.join(root, "two"), format="ome-zarr",
                       chunk_size=(32, 32, 32), n_cores=1)
        web = start_webserver("--directory", os.path.join(root, "two"), "--workers", "1")
        yield {"server": web, "info": info, "green": green, "magenta": magenta}
        web.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def printed_zarr_link(server) -> str:
    printed = "".join(server.printed)
    assert f"dataset as OME-Zarr 0.5: zarr://{server.url}\n" in printed, printed  # the bare source stays
    m = re.search(r"^  dataset as OME-Zarr 0\.5 in Neuroglancer: (https://\S+)$", printed, re.M)
    assert m, printed
    return m.group(1)


def test_the_printed_zarr_link_names_the_axes_colours_and_contrast(served):
    from precomputed_tif.viewer.screenshot import state_from_url

    link = printed_zarr_link(served["server"])
    assert len(link) < 2000
    state = state_from_url(link)
    assert list(state["dimensions"]) == ["x", "y", "z"]
    assert [la["source"] for la in state["layers"]] == [f"zarr://{served['server'].url}"] * 2
    assert [la["localPosition"] for la in state["layers"]] == [[0], [1]]
    assert [la["name"] for la in state["layers"]] == ["image (DAPI)", "image (GFP)"]
    for la, colour, (lo, hi) in zip(state["layers"], ("#00ff00", "#ff00ff"),
                                    served["info"]["precomputed_tif"]["display_range"]):
        assert f'color(default="{colour}")' in la["shader"] and f"range=[{lo}, {hi}]" in la["shader"]


def test_the_printed_zarr_link_shows_the_channels_in_their_colours(browser, served):  # noqa: F811
    from precomputed_tif.viewer.screenshot import state_from_url

    state = state_from_url(printed_zarr_link(served["server"]))
    state["crossSectionScale"], state["layout"] = 0.5, "xy"
    state["position"][2] = SHAPE[0] // 2 + 0.5
    browser.show(state)
    png = browser.screenshot(*SIZE)
    z = SHAPE[0] // 2
    green, magenta = served["green"][z], served["magenta"][z]
    assert rendered_matches_source(png, green, 0.5, 1) > 0.6
    assert rendered_matches_source(png, magenta, 0.5, 0) > 0.6
    assert rendered_matches_source(png, green, 0.5, 0) < 0.3


def test_what_neuroglancer_makes_of_the_bare_zarr_source(browser, served):  # noqa: F811
    """As pasted into an empty viewer: no dimensions, no shader of ours."""
    browser.show({"layers": []})
    browser.show({"layers": [{"type": "auto", "source": f"zarr://{served['server'].url}", "name": "two"}]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = browser.viewer.state.to_json()
        layers = state.get("layers", [])
        if "dimensions" in state and layers and all(la["type"] == "image" for la in layers):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the zarr:// layer did not open: {json.dumps(state)[:500]}")
    # x, y, z displayed (the xy panel shows x across), one layer per channel, each with the
    # omero colour and window as its contrast.
    assert list(state["dimensions"]) == ["x", "y", "z"]
    assert [la["shaderControls"]["color"] for la in layers] == ["#00ff00", "#ff00ff"]
    assert [la["shaderControls"]["contrast"]["range"] for la in layers] \
        == served["info"]["precomputed_tif"]["display_range"]
    assert [la["localPosition"] for la in layers] == [[0], [1]]
