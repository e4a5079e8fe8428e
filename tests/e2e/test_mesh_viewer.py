"""End to end: real Neuroglancer in headless Chromium draws the meshes of a segmentation.

A label volume is converted with --segmentation and meshed (sharded), then served by
both front doors. The 3-D panel shows selected segments: it changes when the layer is
hidden, every request the viewer makes (mesh info, shard ranges, segment properties)
succeeds, and the segment properties are fetched.
"""

import io
import json
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.meshing import mesh_dataset
from tests.e2e.test_viewer import browser_problem, requests_seen
from tests.helpers.label_cells import cell_volume
from tests.helpers.servers import start_gunicorn, start_webserver

SIZE = (360, 300)
SEGMENTS = ["5", "9", "16", "23", "4000000001"]


@pytest.fixture(scope="module")
def browser():
    problem = browser_problem()
    if problem:
        (pytest.fail if os.environ.get("REQUIRE_BROWSER") else pytest.skip)(problem)
    from precomputed_tif.viewer.screenshot import Browser

    b = Browser(*SIZE)
    yield b
    b.close()


@pytest.fixture(scope="module")
def meshed_site():
    root = tempfile.mkdtemp(prefix="pt-e2e-mesh-")
    try:
        tifffile.imwrite(os.path.join(root, "labels.tif"), cell_volume())
        dest = os.path.join(root, "cells")
        info = convert(os.path.join(root, "labels.tif"), dest, segmentation=True, chunk_size=(32, 32, 32),
                       voxel_size=(0.5, 0.5, 1.0), n_cores=1)
        table = os.path.join(root, "cells.csv")
        with open(table, "w") as f:
            f.write("id,name,tags\n5,big cell,large\n9,cell nine,small\n4000000001,corner cell,small\n")
        mesh_dataset(dest, n_cores=1, node=16, sharded=True, properties=table)
        unsharded = os.path.join(root, "cells-unsharded")
        shutil.copytree(dest, unsharded)
        mesh_dataset(unsharded, n_cores=1, node=16, sharded=False)
        config = os.path.join(root, "sources.json")
        # One name per front door: the viewer caches what it fetched by URL.
        with open(config, "w") as f:
            json.dump([{"name": f"cells-{front}", "directory": dest} for front in ("webserver", "gunicorn")]
                      + [{"name": "cells-unsharded", "directory": unsharded}]
                      + [{"name": f"cells-{d}", "directory": dest} for d in ("near", "far")], f)
        web = start_webserver("--config", config, "--log", "INFO", "--workers", "1")
        web.collect_log()
        wsgi = start_gunicorn(root, config, workers=1, access_log=True)
        wsgi.collect_log()
        yield {"info": info, "servers": {"webserver": web, "gunicorn": wsgi}}
        web.stop()
        wsgi.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def state(base, front, visible):
    """The 3-D view of the selected segments of source ``cells-<front>``."""
    return {
        "dimensions": {"x": [0.5e-6, "m"], "y": [0.5e-6, "m"], "z": [1e-6, "m"]},
        "position": [34.5, 25.5, 18.5],
        "projectionScale": 90,
        "projectionOrientation": [0.3, -0.2, 0.1, 0.92],
        "layers": [{"type": "segmentation", "source": f"precomputed://{base}/cells-{front}", "name": "cells",
                    "segments": SEGMENTS, "visible": visible}],
        "layout": "3d",
        "showAxisLines": False,
    }


@pytest.mark.parametrize("front", ["webserver", "gunicorn"])
def test_neuroglancer_draws_the_selected_segments_in_3d(browser, meshed_site, front, tmp_path):
    from PIL import Image

    server = meshed_site["servers"][front]
    base = f"http://127.0.0.1:{server.port}"
    before = len(server.log)
    browser.show(state(base, front, True))
    shown = browser.screenshot(*SIZE)
    browser.show(state(base, front, False))
    hidden = browser.screenshot(*SIZE)
    (tmp_path / "shown.png").write_bytes(shown)

    a = np.asarray(Image.open(io.BytesIO(shown)).convert("RGB")).astype(int)
    b = np.asarray(Image.open(io.BytesIO(hidden)).convert("RGB")).astype(int)
    changed = (np.abs(a - b).sum(-1) > 60).mean()
    assert changed > 0.03, f"the 3-D view hardly changes when the segments are hidden ({changed:.1%} of pixels)"
    # Each selected segment has its own colour: several distinct saturated colours are drawn.
    colours = {tuple(c // 32) for c in a.reshape(-1, 3)[(a.reshape(-1, 3).max(1) - a.reshape(-1, 3).min(1)) > 60]}
    assert len(colours) >= 3

    seen = requests_seen(server.log[before:])
    failed = [(p, s) for p, s in seen if s >= 400]
    assert not failed, failed
    paths = [p for p, _ in seen]
    assert f"/cells-{front}/mesh/info" in paths, paths[:30]
    assert any(p.startswith(f"/cells-{front}/mesh/") and p.endswith(".shard") for p in paths), paths[:30]
    assert f"/cells-{front}/segment_properties/info" in paths, paths[:30]


def test_the_segment_list_shows_names_and_voxel_counts(browser, meshed_site):
    """The layer's segment list (its "Seg." tab) shows the names from the CSV file, finds
    segments by tag, and offers the voxel counts to sort by."""
    import time

    from selenium.webdriver.common.by import By

    server = meshed_site["servers"]["webserver"]
    st = state(f"http://127.0.0.1:{server.port}", "webserver", True)
    st["layers"][0]["tab"] = "segments"
    st["layers"][0]["segmentQuery"] = "#small"
    st["selectedLayer"] = {"layer": "cells", "visible": True, "size": 300}
    browser.show(st)
    browser.screenshot(*SIZE)
    text = lambda css: [browser.driver.execute_script("return arguments[0].textContent", e)  # noqa: E731
                        for e in browser.driver.find_elements(By.CSS_SELECTOR, css)]
    deadline = time.time() + 30
    while time.time() < deadline and "cell nine" not in " ".join(text(".neuroglancer-segment-list")):
        time.sleep(0.5)
    matches, *selected = text(".neuroglancer-segment-list")  # the query's matches, then the selected segments
    assert "cell nine" in matches and "corner cell" in matches, matches[:500]
    assert "big cell" not in matches, "the tag query #small should leave out the large cell"
    assert "big cell" in " ".join(selected)
    panel = " ".join(text(".neuroglancer-side-panel"))
    assert "voxels" in panel and "volume_um3" in panel  # the number properties, to sort and filter by


def test_unsharded_meshes_too(browser, meshed_site):
    """Two files per segment: Neuroglancer reads each manifest, then byte ranges of the data file."""
    from PIL import Image

    server = meshed_site["servers"]["webserver"]
    before = len(server.log)
    shots = []
    for visible in (True, False):
        browser.show(state(f"http://127.0.0.1:{server.port}", "unsharded", visible))
        shots.append(np.asarray(Image.open(io.BytesIO(browser.screenshot(*SIZE))).convert("RGB")).astype(int))
    assert (np.abs(shots[0] - shots[1]).sum(-1) > 60).mean() > 0.03, "the segments are not drawn"
    seen = requests_seen(server.log[before:])
    assert not [(p, s) for p, s in seen if s >= 400], seen
    paths = [p for p, _ in seen]
    assert "/cells-unsharded/mesh/5.index" in paths and "/cells-unsharded/mesh/5" in paths, paths[:30]


def test_a_distant_view_loads_coarse_levels_of_detail(browser, meshed_site):
    """Seen from far away, Neuroglancer fetches the coarse surfaces only: fewer mesh bytes than
    close up (two source names, so that nothing comes from the viewer's cache)."""
    server = meshed_site["servers"]["webserver"]
    sent = {}
    for name, scale in (("near", 60), ("far", 2000)):
        before = len(server.log)
        st = state(f"http://127.0.0.1:{server.port}", name, True)
        st["projectionScale"] = scale
        browser.show(st)
        browser.screenshot(*SIZE)
        sizes = [re.search(r'" 20[06] (\d+)', line) for line in server.log[before:] if ".shard" in line]
        sent[name] = sum(int(m.group(1)) for m in sizes if m)
    assert 0 < sent["far"] < sent["near"] / 2, sent
