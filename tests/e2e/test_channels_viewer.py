"""Real Neuroglancer opens the links precomputed-webserver prints for an OME-TIFF whose channels are
named and coloured: the shader with controls named after the channels compiles, and each channel
shows in the colour the OME-XML gives it (blue, red), not the default green and magenta -- also
one channel picked with --channel."""

import io
import json
import os
import re
import shutil
import tempfile
import urllib.parse

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.sources.synthetic import synthetic_planes
from tests.e2e.test_viewer import SIZE, browser, rendered_matches_source  # noqa: F401  (browser: a fixture)
from tests.helpers.servers import start_webserver

SHAPE = (40, 150, 170)  # z, y, x
CHUNK = (32, 32, 32)
VOXEL = (1.8, 1.8, 2.0)


def ome_rgba(r, g, b) -> int:
    v = (r << 24) | (g << 16) | (b << 8) | 0xFF
    return v - (1 << 32) if v >= 1 << 31 else v


@pytest.fixture(scope="module")
def named_site():
    root = tempfile.mkdtemp(prefix="pt-e2e-channels-")
    try:
        dapi = np.stack(list(synthetic_planes(SHAPE, seed=1)))
        membrane = np.stack(list(synthetic_planes(SHAPE, seed=2)))
        source = os.path.join(root, "named.ome.tif")
        tifffile.imwrite(source, np.stack([dapi, membrane], axis=1), ome=True,
                         metadata={"axes": "ZCYX", "PhysicalSizeX": VOXEL[0], "PhysicalSizeY": VOXEL[1],
                                   "PhysicalSizeZ": VOXEL[2],
                                   "Channel": {"Name": ["DAPI", "Membrane (CellMask)"],
                                               "Color": [ome_rgba(0, 0, 255), ome_rgba(255, 0, 0)]}})
        convert(source, os.path.join(root, "cells"), format="tiff", chunk_size=CHUNK, n_cores=1)
        convert(source, os.path.join(root, "membrane"), format="zarr", chunk_size=CHUNK, n_cores=1, channel=1)
        config = os.path.join(root, "sources.json")
        with open(config, "w") as f:
            json.dump([{"name": n, "directory": os.path.join(root, n)} for n in ("cells", "membrane")], f)
        web = start_webserver("--config", config, "--workers", "1")
        yield {"dapi": dapi, "membrane": membrane, "server": web}
        web.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def printed_state(server, name: str) -> dict:
    m = re.search(rf"^  {name}: (https://\S+)$", "".join(server.printed), re.M)
    assert m, server.printed
    state = json.loads(urllib.parse.unquote(m.group(1).split("#!", 1)[1]))
    state["crossSectionScale"], state["layout"] = 0.5, "xy"
    state["position"][2] = SHAPE[0] // 2 + 0.5
    return state


def green_of(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[..., 1]


def test_named_channels_render_in_their_own_colours(browser, named_site):  # noqa: F811
    state = printed_state(named_site["server"], "cells")
    layer = state["layers"][0]
    assert layer["name"] == "cells (DAPI, Membrane (CellMask))"
    assert "#uicontrol invlerp ch_DAPI(" in layer["shader"]
    assert "#uicontrol invlerp ch_Membrane_CellMask(" in layer["shader"]
    browser.show(state)
    png = browser.screenshot(*SIZE)
    z = SHAPE[0] // 2
    dapi, membrane = named_site["dapi"][z], named_site["membrane"][z]
    # Blue shows DAPI, red the membrane, and not the other way round; green (the default colour
    # of channel 0) shows neither.
    assert rendered_matches_source(png, dapi, 0.5, 2) > 0.6
    assert rendered_matches_source(png, membrane, 0.5, 0) > 0.6
    assert rendered_matches_source(png, membrane, 0.5, 2) < 0.3
    assert rendered_matches_source(png, dapi, 0.5, 0) < 0.3
    assert np.median(green_of(png)) == 0


def test_one_picked_channel_renders_in_its_colour(browser, named_site):  # noqa: F811
    state = printed_state(named_site["server"], "membrane")
    assert state["layers"][0]["name"] == "membrane (Membrane (CellMask))"
    browser.show(state)
    png = browser.screenshot(*SIZE)
    membrane = named_site["membrane"][SHAPE[0] // 2]
    assert rendered_matches_source(png, membrane, 0.5, 0) > 0.6  # red, as the OME-XML says
    assert np.median(green_of(png)) == 0  # not grey
