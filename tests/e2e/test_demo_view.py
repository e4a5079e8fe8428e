"""End to end: the view `make demo` prints, opened in real Neuroglancer in headless Chromium,
shows the image in the slices (the segmentation does not cover it) and a few cells, not a
solid block of colour, in the 3-D panel; every link it prints is short."""

import copy
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import numpy as np
import pytest

from tests.e2e.test_viewer import SIZE, browser  # noqa: F401  (browser: a fixture)
from tests.helpers.servers import free_port, read_until_ready


@pytest.fixture(scope="module")
def demo():
    root = tempfile.mkdtemp(prefix="pt-e2e-demo-")
    proc = subprocess.Popen([sys.executable, "-m", "precomputed_tif.cli.demo", "--dir", "demo", "--shape", "129,113,41",
                             "--port", str(free_port()), "--viewer-port", str(free_port())],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield read_until_ready(proc)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def magenta(shot: np.ndarray) -> np.ndarray:
    """The points' pixels."""
    return (shot[..., 0] > 150) & (shot[..., 1] < 100) & (shot[..., 2] > 150)


def coloured(shot: np.ndarray) -> np.ndarray:
    """Pixels of a saturated colour other than the points' magenta: segment colours (the image
    is grey)."""
    return (shot.max(-1) - shot.min(-1) > 60) & ~magenta(shot)


def test_the_demo_view_shows_the_image_and_a_few_cells(browser, demo):  # noqa: F811
    from precomputed_tif.viewer.screenshot import state_from_url

    links = re.findall(r"^  (https?://\S+)$", demo, re.M)
    assert len(links) == 2 and all(len(link) < 2000 for link in links), (demo, [len(k) for k in links])
    view = state_from_url(links[1])
    every_cell = copy.deepcopy(view)  # the view as it would be with every cell selected, to compare
    cells = view["layers"][2]
    every_cell["layers"][2] = {k: v for k, v in cells.items() if k != "selectedAlpha"}
    with urllib.request.urlopen(cells["source"].removeprefix("precomputed://") + "/segment_properties/info") as r:
        every_cell["layers"][2]["segments"] = json.load(r)["inline"]["ids"]
    image_only = dict(copy.deepcopy(view), layers=view["layers"][:1])

    shots = {}
    for name, state in (("image", image_only), ("view", view), ("every cell", every_cell)):
        for layout in ("xy", "3d"):
            browser.show(dict(state, layout=layout))
            shots[name, layout] = pixels(browser.screenshot(*SIZE))

    # The slice: the image as it is alone, apart from the points and a light tint on a few cells.
    alone = shots["image", "xy"]
    rows, cols = np.nonzero(alone.max(-1) < 40)  # the data's dark background; the panel's own is grey
    inside = np.zeros(alone.shape[:2], bool)
    inside[rows.min() + 3:rows.max() - 2, cols.min() + 3:cols.max() - 2] = True  # within its yellow outline
    blobs = inside & (alone.mean(-1) > 60)
    assert blobs.sum() > 0.05 * inside.sum(), "the image layer alone shows no blobs"

    def recoloured(shot):
        """Blob pixels that the view draws in another colour (the points' magenta aside)."""
        return (np.abs(shot - alone).max(-1) > 25) & (shot.max(-1) - shot.min(-1) > 20) & ~magenta(shot) & blobs

    share = recoloured(shots["view", "xy"]).sum() / blobs.sum()
    assert share < 0.35, f"the segmentation covers {share:.0%} of the image's blobs in the xy panel"
    assert recoloured(shots["every cell", "xy"]).sum() / blobs.sum() > 2 * share  # the measure sees a covering

    # The 3-D panel: some cells drawn, far from the ball of colour every cell makes.
    drawn, ball = coloured(shots["view", "3d"]).mean(), coloured(shots["every cell", "3d"]).mean()
    assert drawn > 0.005, "no cell is drawn in the 3-D panel"
    assert drawn < 0.6 * ball, f"the 3-D panel is {drawn:.0%} cell colour (every cell: {ball:.0%})"
