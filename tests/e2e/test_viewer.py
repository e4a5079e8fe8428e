"""End to end: real Neuroglancer in headless Chromium shows what the servers serve.

For each format (tiff, zarr, blockfs) and each front door (precomputed-webserver
and the WSGI app under gunicorn), the viewer opens the image with a point layer
over it. The evidence comes from the servers' own request logs (Neuroglancer
fetches chunks in a web worker, out of the browser's logs) and from the pixels.
"""

import io
import json
import os
import re
import shutil
import tempfile

import numpy as np
import pytest

from precomputed_tif import convert
from precomputed_tif.annotations import PointSet, write_points
from precomputed_tif.sources.synthetic import blob_centres, write_synthetic_planes
from precomputed_tif.viewer.screenshot import CHROMEDRIVER, CHROMIUM
from tests.helpers.servers import start_gunicorn, start_webserver

SHAPE = (40, 150, 170)  # z, y, x
VOXEL = (1.8, 1.8, 2.0)
CHUNK = (32, 32, 32)
FORMATS = ("tiff", "zarr", "blockfs")
SIZE = (400, 360)


def browser_problem():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return f"{path} is missing: apt-get install chromium chromium-driver (.ci/run does)"
    try:
        import neuroglancer  # noqa: F401
        import selenium  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser():
    problem = browser_problem()
    if problem:
        # CI sets REQUIRE_BROWSER: there a missing browser is a failure, not a skip.
        (pytest.fail if os.environ.get("REQUIRE_BROWSER") else pytest.skip)(problem)
    from precomputed_tif.viewer.screenshot import Browser

    b = Browser(*SIZE)
    yield b
    b.close()


@pytest.fixture(scope="module")
def site():
    root = tempfile.mkdtemp(prefix="pt-e2e-")
    try:
        pattern = write_synthetic_planes(os.path.join(root, "planes"), SHAPE)
        import tifffile

        volume = np.stack([tifffile.imread(os.path.join(root, "planes", f"img_{z:05d}.tif")) for z in range(SHAPE[0])])
        sources = []
        for fmt in FORMATS:
            info = convert(pattern, os.path.join(root, fmt), format=fmt, chunk_size=CHUNK, voxel_size=VOXEL, n_cores=1)
            sources.append({"name": fmt, "directory": os.path.join(root, fmt), "format": fmt})
        centres = blob_centres(SHAPE)
        write_points(PointSet(centres, np.zeros(3), np.array(SHAPE[::-1], float)), os.path.join(root, "points"),
                     VOXEL, limit=20)
        # One name per format: the viewer caches what it fetched by URL.
        sources += [{"name": f"points-{fmt}", "directory": os.path.join(root, "points")} for fmt in FORMATS]
        config = os.path.join(root, "sources.json")
        with open(config, "w") as f:
            json.dump(sources, f)
        web = start_webserver("--config", config, "--log", "INFO", "--workers", "1")
        web.collect_log()
        wsgi = start_gunicorn(root, config, workers=1, access_log=True)
        wsgi.collect_log()
        yield {"volume": volume, "keys": [s["key"] for s in info["scales"]], "info": info,
               "servers": {"webserver": web, "gunicorn": wsgi}}
        web.stop()
        wsgi.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def state(base, fmt, scale):
    z, y, x = SHAPE
    return {
        "dimensions": {a: [v * 1e-6, "m"] for a, v in zip("xyz", VOXEL)},
        "position": [x / 2, y / 2, z / 2 + 0.5],
        "crossSectionScale": scale,
        "layers": [
            {"type": "image", "source": f"precomputed://{base}/{fmt}", "name": "image",
             "shader": "#uicontrol invlerp normalized(range=[0, 3000])\nvoid main() { emitGrayscale(normalized()); }"},
            {"type": "annotation", "source": f"precomputed://{base}/points-{fmt}", "name": "points",
             "annotationColor": "#ff00ff"},
        ],
        "layout": "xy",
    }


REQUEST = re.compile(r'"GET (\S+) HTTP/1\.[01]" (\d{3})|"GET (\S+)" (\d{3})')


def requests_seen(log):
    out = []
    for line in list(log):
        m = REQUEST.search(line)
        if m:
            path, status = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            out.append((path, int(status)))
    return out


def rendered_matches_source(png: bytes, plane: np.ndarray, scale: float, rgb_index: int = 1) -> float:
    """Correlation of one colour component of the screenshot (default green: the magenta points
    leave it alone) with the source plane laid out as the view shows it, centred, ``scale``
    plane pixels per screen pixel."""
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
    h, w = shot.shape[:2]
    ny, nx = plane.shape
    rows = (np.arange(h) + 0.5 - h / 2) * scale + ny / 2
    cols = (np.arange(w) + 0.5 - w / 2) * scale + nx / 2
    inside_r = (rows >= 2) & (rows < ny - 2)
    inside_c = (cols >= 2) & (cols < nx - 2)
    sub = shot[np.ix_(inside_r, inside_c)][..., rgb_index]
    src = plane[np.ix_(rows[inside_r].astype(int), cols[inside_c].astype(int))].astype(float)
    return float(np.corrcoef(sub.ravel(), src.ravel())[0, 1])


@pytest.mark.parametrize("front", ["webserver", "gunicorn"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_neuroglancer_shows_the_data(browser, site, front, fmt, tmp_path):
    server = site["servers"][front]
    base = f"http://127.0.0.1:{server.port}"
    before = len(server.log)
    browser.show(state(base, fmt, 0.5))
    fine = browser.screenshot(*SIZE)
    browser.show(state(base, fmt, 16))
    coarse = browser.screenshot(*SIZE)
    (tmp_path / f"{front}-{fmt}.png").write_bytes(fine)

    seen = requests_seen(server.log[before:])
    failed = [(p, s) for p, s in seen if s >= 400]
    assert not failed, failed
    keys = {p.split("/")[2] for p, _ in seen if p.startswith(f"/{fmt}/") and p.count("/") == 3}
    assert site["keys"][0] in keys, (keys, seen[:20])        # zoomed in: full resolution
    assert site["keys"][-1] in keys, (keys, seen[:20])       # zoomed out: the coarsest level
    assert any(p.startswith(f"/points-{fmt}/spatial") for p, _ in seen), seen[:20]

    plane = site["volume"][SHAPE[0] // 2]
    r = rendered_matches_source(fine, plane, 0.5)
    assert r > 0.6, f"the rendered slice does not look like plane z={SHAPE[0] // 2} (r={r:.2f})"
    from PIL import Image

    assert np.asarray(Image.open(io.BytesIO(coarse)).convert("L")).std() > 5, "zoomed-out view is blank"


def test_screenshot_command_renders_a_link(site, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    problem = browser_problem()
    if problem:
        (pytest.fail if os.environ.get("REQUIRE_BROWSER") else pytest.skip)(problem)
    from precomputed_tif.viewer.links import layer, neuroglancer_link, viewer_state

    port = site["servers"]["webserver"].port
    layers = [layer(f"precomputed://http://127.0.0.1:{port}/blockfs", site["info"], "image"),
              {"type": "annotation", "source": f"precomputed://http://127.0.0.1:{port}/points-blockfs",
               "name": "points", "annotationColor": "#ff00ff"}]
    link = neuroglancer_link(viewer_state(layers, site["info"]))
    exe = os.path.join(os.path.dirname(sys.executable), "precomputed-screenshot")
    proc = subprocess.run([exe, link, "--out", str(tmp_path / "v.png"), "--size", "640x480"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    image = np.asarray(Image.open(tmp_path / "v.png").convert("RGB"))
    assert image.shape == (480, 640, 3)
    assert image.std() > 10
    magenta = (image[..., 0] > 200) & (image[..., 1] < 80) & (image[..., 2] > 200)
    assert magenta.sum() > 20, "the point layer is not drawn"
    bad = subprocess.run([exe, "not a link", "--out", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# --- what the conversion's own link shows: channels in colour, signed data -----------------


@pytest.fixture(scope="module")
def typed_site():
    """A 2-channel OME-TIFF and an int16 stack with negative values, converted and served."""
    import tifffile

    from precomputed_tif.sources.synthetic import synthetic_planes

    root = tempfile.mkdtemp(prefix="pt-e2e-typed-")
    try:
        green = np.stack(list(synthetic_planes(SHAPE, seed=1)))
        magenta = np.stack(list(synthetic_planes(SHAPE, seed=2)))
        two = np.stack([green, magenta], axis=1)  # z, c, y, x
        tifffile.imwrite(os.path.join(root, "two.ome.tif"), two, ome=True,
                         metadata={"axes": "ZCYX", "PhysicalSizeX": VOXEL[0], "PhysicalSizeY": VOXEL[1],
                                   "PhysicalSizeZ": VOXEL[2]})
        signed = (green.astype(np.int32) - 1200).astype(np.int16)  # background and dim parts negative
        tifffile.imwrite(os.path.join(root, "signed.tif"), signed)
        infos = {}
        for name, source in (("two", "two.ome.tif"), ("signed", "signed.tif")):
            infos[name] = convert(os.path.join(root, source), os.path.join(root, name), format="zarr",
                                  chunk_size=CHUNK, n_cores=1,
                                  voxel_size=None if name == "two" else VOXEL)
        config = os.path.join(root, "sources.json")
        with open(config, "w") as f:
            json.dump([{"name": n, "directory": os.path.join(root, n)} for n in infos], f)
        web = start_webserver("--config", config, "--log", "INFO", "--workers", "1")
        web.collect_log()
        yield {"two": two, "signed": signed, "infos": infos, "server": web}
        web.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def printed_link(server, name: str) -> str:
    """The Neuroglancer link precomputed-webserver printed for a source when it started."""
    m = re.search(rf"^  {name}: (https://\S+)$", "".join(server.printed), re.M)
    assert m, server.printed
    return m.group(1)


def test_the_printed_link_shows_two_channels_in_two_colours(browser, typed_site):
    from precomputed_tif.viewer.screenshot import state_from_url

    info = typed_site["infos"]["two"]
    assert info["num_channels"] == 2
    assert info["scales"][0]["resolution"] == [v * 1000 for v in VOXEL]  # from the OME-XML
    server = typed_site["server"]
    state = state_from_url(printed_link(server, "two"))
    assert state["layers"][0]["source"] == f"precomputed://{server.url}/two"
    state["crossSectionScale"], state["layout"] = 0.5, "xy"
    state["position"][2] = SHAPE[0] // 2 + 0.5
    browser.show(state)
    png = browser.screenshot(*SIZE)
    z = SHAPE[0] // 2
    green, magenta = typed_site["two"][z, 0], typed_site["two"][z, 1]
    # Green shows channel 0, red (half of magenta) channel 1, and not the other way round.
    assert rendered_matches_source(png, green, 0.5, 1) > 0.6
    assert rendered_matches_source(png, magenta, 0.5, 0) > 0.6
    assert rendered_matches_source(png, magenta, 0.5, 1) < 0.3
    assert rendered_matches_source(png, green, 0.5, 0) < 0.3


def test_the_printed_link_shows_negative_values(browser, typed_site):
    from precomputed_tif.viewer.screenshot import state_from_url

    info = typed_site["infos"]["signed"]
    assert info["data_type"] == "int16"
    lo, hi = info["precomputed_tif"]["display_range"][0]
    assert lo < 0 < hi
    server = typed_site["server"]
    state = state_from_url(printed_link(server, "signed"))
    state["crossSectionScale"], state["layout"] = 0.5, "xy"
    state["position"][2] = SHAPE[0] // 2 + 0.5
    browser.show(state)
    png = browser.screenshot(*SIZE)
    plane = typed_site["signed"][SHAPE[0] // 2]
    assert rendered_matches_source(png, plane, 0.5, 1) > 0.6
