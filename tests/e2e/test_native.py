"""Native precomputed datasets published as plain files by nginx (no Python in the path), opened
by tensorstore over HTTP and by real Neuroglancer in headless Chromium, every encoding, sharded
and not."""

import io
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.sources.synthetic import synthetic_planes
from precomputed_tif.viewer.links import dataset_link
from precomputed_tif.viewer.screenshot import state_from_url
from tests.e2e.test_viewer import SIZE, browser, rendered_matches_source  # noqa: F401  (browser: a fixture)
from tests.helpers.servers import require_nginx, start_static_nginx

SHAPE = (40, 150, 170)  # z, y, x
CHUNK = (32, 32, 32)
DATASETS = {
    # name: (dtype of the source, conversion options)
    "raw-sharded": ("uint16", {"sharded": True}),
    "raw-unsharded": ("uint16", {"sharded": False}),
    "png-sharded": ("uint8", {"encoding": "png", "sharded": True}),
    "png-unsharded": ("uint16", {"encoding": "png", "sharded": False}),
    "jpeg-sharded": ("uint8", {"encoding": "jpeg", "sharded": True}),
    "jpeg-unsharded": ("uint8", {"encoding": "jpeg", "sharded": False}),
    "labels-sharded": ("uint16", {"segmentation": True, "sharded": True}),
}

pytestmark = pytest.mark.nginx  # the module's fixture serves its files with nginx


@pytest.fixture(scope="module")
def published():
    require_nginx()
    root = tempfile.mkdtemp(prefix="pt-e2e-native-")
    try:
        planes = np.stack(list(synthetic_planes(SHAPE, seed=7)))
        volumes = {"uint16": planes, "uint8": (planes // 12).astype(np.uint8)}
        site = os.path.join(root, "site")
        infos = {}
        for name, (dtype, options) in DATASETS.items():
            volume = volumes[dtype] if not options.get("segmentation") else (planes > 1000).astype(np.uint16) * 7
            src = os.path.join(root, f"{name}.tif")
            tifffile.imwrite(src, volume)
            infos[name] = convert(src, os.path.join(site, name), format="precomputed", chunk_size=CHUNK,
                                  voxel_size=(1.8, 1.8, 2.0), n_cores=1, **options)
            infos[name]["volume"] = volume
        server = start_static_nginx(root, site)
        yield server, infos
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def requests_logged(server):
    with open(server.access_log) as f:
        return [(m.group(1), m.group(2), int(m.group(3))) for m in
                re.finditer(r'"(GET|HEAD|OPTIONS) (\S+) HTTP/[\d.]+" (\d{3})', f.read())]


@pytest.mark.parametrize("name", [n for n in DATASETS if not n.startswith("jpeg")])
def test_tensorstore_reads_every_scale_over_http(published, name):
    import tensorstore as ts

    server, infos = published
    info = infos[name]
    volume = info["volume"]
    t = ts.open({"driver": "neuroglancer_precomputed",
                 "kvstore": {"driver": "http", "base_url": f"{server.url}/{name}"}, "scale_index": 0}).result()
    got = np.asarray(t.read().result())[..., 0].transpose(2, 1, 0)
    np.testing.assert_array_equal(got, volume)


@pytest.mark.parametrize("name", list(DATASETS))
def test_neuroglancer_shows_the_published_dataset(browser, published, name):  # noqa: F811
    server, infos = published
    info = infos[name]
    before = len(requests_logged(server))
    state = state_from_url(dataset_link(f"precomputed://{server.url}/{name}", info, name))
    state["crossSectionScale"], state["layout"] = 0.5, "xy"
    state["position"][2] = SHAPE[0] // 2 + 0.5
    browser.show(state)
    png = browser.screenshot(*SIZE)
    seen = requests_logged(server)[before:]
    failed = [r for r in seen if r[2] >= 400]
    assert not failed, failed
    assert any(path.startswith(f"/{name}/{info['scales'][0]['key']}/") for _, path, _ in seen), seen[:20]
    if info["scales"][0].get("sharding"):
        assert any(path.endswith(".shard") and status == 206 for _, path, status in seen), seen[:20]
    if info["type"] == "segmentation":
        from PIL import Image

        assert np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).std() > 5, "the segmentation is not drawn"
        return
    r = rendered_matches_source(png, info["volume"][SHAPE[0] // 2], 0.5)
    assert r > 0.6, f"{name}: the rendered slice does not look like the source plane (r={r:.2f})"
