"""OME-Zarr opened by real Neuroglancer as zarr://, from nginx serving plain files and from
precomputed-webserver: the rendered slice is the source plane at full resolution and at a coarse
level, with the contrast and channel colours the NGFF metadata carries (no shader given)."""

import io
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
from tests.helpers.servers import require_nginx, start_static_nginx, start_webserver

SHAPE = (40, 150, 170)  # z, y, x
CHUNK = (32, 32, 32)
VOXEL = (1.8, 1.8, 2.0)
DATASETS = {
    # name: (format, NGFF version)
    "ome5": ("ome-zarr", "0.5"),
    "ome4": ("ome-zarr", "0.4"),
    "zarr": ("zarr", None),
}
METADATA = {"zarr.json", ".zattrs", ".zgroup", ".zarray"}

pytestmark = pytest.mark.nginx  # the module's fixture serves its files with nginx


@pytest.fixture(scope="module")
def published():
    require_nginx()
    root = tempfile.mkdtemp(prefix="pt-e2e-omezarr-")
    try:
        green = np.stack(list(synthetic_planes(SHAPE, seed=1)))
        magenta = np.stack(list(synthetic_planes(SHAPE, seed=2)))
        site = os.path.join(root, "site")
        src = os.path.join(root, "one.tif")
        tifffile.imwrite(src, green)
        ranges = {}
        for name, (fmt, version) in DATASETS.items():
            ranges[name] = convert(src, os.path.join(site, name), format=fmt, ngff_version=version, chunk_size=CHUNK,
                    voxel_size=VOXEL, n_cores=1)["precomputed_tif"]["display_range"]
        two = os.path.join(root, "two.ome.tif")
        tifffile.imwrite(two, np.stack([green, magenta], axis=1), ome=True,
                         metadata={"axes": "ZCYX", "PhysicalSizeX": VOXEL[0], "PhysicalSizeY": VOXEL[1],
                                   "PhysicalSizeZ": VOXEL[2]})
        ranges["two"] = convert(two, os.path.join(site, "two"), format="ome-zarr", chunk_size=CHUNK,
                                n_cores=1)["precomputed_tif"]["display_range"]
        # An OME-Zarr with no info file (as other tools write them) is served as plain files.
        shutil.copytree(os.path.join(site, "ome5"), os.path.join(site, "bare"))
        os.unlink(os.path.join(site, "bare", "info"))
        config = os.path.join(root, "sources.json")
        with open(config, "w") as f:
            json.dump([{"name": n, "directory": os.path.join(site, n)} for n in [*DATASETS, "two", "bare"]], f)
        web = start_webserver("--config", config, "--log", "INFO", "--workers", "1")
        web.log = web.collect_log()
        nginx = start_static_nginx(root, site)
        yield {"servers": {"nginx": nginx, "webserver": web}, "green": green, "magenta": magenta, "ranges": ranges}
        web.stop()
        nginx.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


REQUEST = re.compile(r'"(?:GET|HEAD) (\S+)(?: HTTP/[\d.]+)?" (\d{3})')


def requests_seen(server) -> list[tuple[str, int]]:
    if hasattr(server, "access_log"):
        with open(server.access_log) as f:
            text = f.read()
    else:
        text = "".join(server.log)
    return [(m.group(1), int(m.group(2))) for m in REQUEST.finditer(text)]


def zarr_state(url: str, name: str, scale: float) -> dict:
    """What a user gets by pasting ``zarr://<url>`` into Neuroglancer's source box (a layer of
    type "auto"): no shader, no contrast of ours; what is shown comes from the OME metadata."""
    z, y, x = SHAPE
    return {
        "dimensions": {a: [v * 1e-6, "m"] for a, v in zip("xyz", VOXEL)},
        "position": [x / 2, y / 2, z // 2 + 0.5],
        "crossSectionScale": scale,
        "layers": [{"type": "auto", "source": f"zarr://{url}", "name": name}],
        "layout": "xy",
    }


def opened(browser, state) -> list[dict]:  # noqa: F811
    """Show ``state`` and wait until Neuroglancer has made its "auto" layer into image layers
    (one per channel) set up from the OME metadata; returns those layers."""
    for _attempt in range(5):
        # Opening an "auto" layer now and then does not finish in the viewer (it stays "auto"
        # with its data loaded); showing it afresh does. One that finishes does so within a
        # second or so: waiting longer for one that has not only wastes time.
        browser.show({"layers": []})
        browser.show(state)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            now = browser.viewer.state.to_json()
            layers = now.get("layers", [])
            if layers and all(la["type"] == "image" and "contrast" in la.get("shaderControls", {})
                              for la in layers):
                break
            time.sleep(0.1)
        else:
            continue
        break
    else:
        raise AssertionError(f"the zarr:// layer did not open: {layers}")
    # Shown again in a fresh viewer: the layer panel and the shader-control palette that opening
    # the layer brought up would cover part of the view.
    browser.show({"layers": []})
    browser.show({**state, "layers": layers, "selectedLayer": {"visible": False}})
    return layers


def drawn(png: bytes) -> bool:
    """Whether the middle of the view shows data (the dataset sits there), not an empty panel."""
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    h, w = shot.shape
    return len(np.unique(shot[h // 2 - 15:h // 2 + 15, w // 2 - 15:w // 2 + 15])) > 5


def shown(browser, server, name, scale):  # noqa: F811
    before = len(requests_seen(server))
    layers = opened(browser, zarr_state(f"{server.url}/{name}", name, scale))
    for _ in range(10):
        # Right after its layers were made anew the viewer may capture before drawing them.
        png = browser.screenshot(*SIZE)
        if drawn(png):
            break
        time.sleep(0.5)
    seen = requests_seen(server)[before:]
    # Neuroglancer probes for both Zarr versions' metadata: a 404 there is an answer, not a failure.
    failed = [r for r in seen if r[1] >= 400 and r[0].rsplit("/", 1)[-1] not in METADATA]
    assert not failed, failed
    return png, seen, layers


# "bare" (no info file) matters only to our server: for nginx it is the same files as ome5.
@pytest.mark.parametrize("name,front", [(n, f) for n in DATASETS for f in ("nginx", "webserver")]
                         + [("bare", "webserver")])
def test_neuroglancer_shows_full_resolution_and_a_coarse_level(browser, published, front, name):  # noqa: F811
    server = published["servers"][front]
    plane = published["green"][SHAPE[0] // 2]
    finest = "1_1_1" if name == "zarr" else "0"
    png, seen, layers = shown(browser, server, name, 0.5)
    # The contrast Neuroglancer chose is the range measured at conversion, carried by the metadata.
    assert [la["shaderControls"]["contrast"]["range"] for la in layers] == published["ranges"]["ome5"]
    assert any(path.startswith(f"/{name}/{finest}/") and status < 300 for path, status in seen
               if path.rsplit("/", 1)[-1] not in METADATA), seen[:30]
    if name in ("ome5", "bare"):
        assert any(status == 206 for _, status in seen), "shards are read by range"
    r = rendered_matches_source(png, plane, 0.5)
    assert r > 0.6, f"{name} via {front}: the rendered slice is not the source plane (r={r:.2f})"

    # Zoomed out 4 times: Neuroglancer draws the level of 2x2x2 means (or 4x4x4), not the full
    # resolution, and the view is that level's picture of the plane.
    levels = ["2_2_2", "4_4_4"] if name == "zarr" else ["1", "2"]
    png, more, _ = shown(browser, server, name, 2.0)
    fetched = {path.split("/")[2] for path, _ in seen + more if path.count("/") > 2}
    assert fetched & set(levels), fetched
    r = rendered_matches_source(png, block_mean(plane, 2), 2.0)
    assert r > 0.6, f"{name} via {front}, coarse level: the rendered slice is not the source plane (r={r:.2f})"


def block_mean(plane: np.ndarray, f: int) -> np.ndarray:
    """The plane as a level of f x f means shows it, at the plane's own size."""
    ny, nx = plane.shape
    padded = np.pad(plane.astype(float), ((0, -ny % f), (0, -nx % f)), mode="edge")
    means = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).mean(axis=(1, 3))
    return np.repeat(np.repeat(means, f, axis=0), f, axis=1)[:ny, :nx]


@pytest.mark.parametrize("front", ["nginx", "webserver"])
def test_channels_show_in_the_colours_of_the_metadata(browser, published, front):  # noqa: F811
    server = published["servers"][front]
    png, _, layers = shown(browser, server, "two", 0.5)
    assert [la["shaderControls"]["color"] for la in layers] == ["#00ff00", "#ff00ff"]
    assert [la["shaderControls"]["contrast"]["range"] for la in layers] == published["ranges"]["two"]
    z = SHAPE[0] // 2
    green, magenta = published["green"][z], published["magenta"][z]
    # Green shows channel 0, red (half of magenta) channel 1, and not the other way round.
    assert rendered_matches_source(png, green, 0.5, 1) > 0.6
    assert rendered_matches_source(png, magenta, 0.5, 0) > 0.6
    assert rendered_matches_source(png, magenta, 0.5, 1) < 0.3
    assert rendered_matches_source(png, green, 0.5, 0) < 0.3


def test_the_webserver_prints_the_zarr_sources(published):
    server = published["servers"]["webserver"]
    printed = "".join(server.printed)
    for name, version in (("ome5", "0.5"), ("ome4", "0.4"), ("zarr", "0.4"), ("bare", "0.5")):
        assert f"{name} as OME-Zarr {version}: zarr://{server.url}/{name}\n" in printed, printed
