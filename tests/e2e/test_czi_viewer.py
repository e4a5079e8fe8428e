"""Real Neuroglancer opens the link precomputed-webserver prints for a Zeiss CZI file converted
without a TIFF export (written here by Zeiss's own libCZI, pylibCZIrw): two channels, named and
coloured (blue, red) by the file's display settings, each drawn in its own colour from its own
voxels."""

import json
import os
import shutil
import tempfile

import numpy as np
import pytest

from precomputed_tif import convert
from precomputed_tif.sources.synthetic import synthetic_planes
from tests.e2e.test_channels_viewer import green_of, printed_state
from tests.e2e.test_viewer import SIZE, browser, rendered_matches_source  # noqa: F401  (browser: a fixture)
from tests.helpers.servers import start_webserver
from tests.integration.test_vendor_sources import _write_czi

SHAPE = (40, 150, 170)  # z, y, x: what printed_state positions the view for


@pytest.fixture(scope="module")
def czi_site():
    root = tempfile.mkdtemp(prefix="pt-e2e-czi-")
    try:
        dapi = np.stack(list(synthetic_planes(SHAPE, seed=1)))
        membrane = np.stack(list(synthetic_planes(SHAPE, seed=2)))
        source = os.path.join(root, "cells.czi")
        _write_czi(source, [np.stack([dapi, membrane])], names=["DAPI", "Membrane"], colors=["#0000ff", "#ff0000"],
                   scale=(1.8e-6, 1.8e-6, 2.0e-6))
        convert(source, os.path.join(root, "cells"), format="precomputed", chunk_size=(32, 32, 32), n_cores=1)
        config = os.path.join(root, "sources.json")
        with open(config, "w") as f:
            json.dump([{"name": "cells", "directory": os.path.join(root, "cells")}], f)
        web = start_webserver("--config", config, "--workers", "1")
        yield {"dapi": dapi, "membrane": membrane, "server": web}
        web.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_czi_renders_its_channels_in_the_files_colours(browser, czi_site):  # noqa: F811
    state = printed_state(czi_site["server"], "cells")
    layer = state["layers"][0]
    assert layer["name"] == "cells (DAPI, Membrane)"
    browser.show(state)
    png = browser.screenshot(*SIZE)
    z = SHAPE[0] // 2
    dapi, membrane = czi_site["dapi"][z], czi_site["membrane"][z]
    assert rendered_matches_source(png, dapi, 0.5, 2) > 0.6  # blue: DAPI
    assert rendered_matches_source(png, membrane, 0.5, 0) > 0.6  # red: the membrane
    assert rendered_matches_source(png, membrane, 0.5, 2) < 0.3
    assert rendered_matches_source(png, dapi, 0.5, 0) < 0.3
    assert np.median(green_of(png)) == 0  # not the default green and magenta
