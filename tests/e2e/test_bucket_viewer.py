"""End to end: real Neuroglancer in headless Chromium opens datasets straight from an S3 bucket.

Images (unsharded, with gzip-encoded chunks, and sharded), a meshed segmentation and a point
layer are written with ``s3://`` destinations into a real S3 server (moto on 127.0.0.1, whose
request log shows every request the viewer makes), in a bucket that reads anonymously and
answers browsers by its CORS rule, as a published bucket does. No server of this project is
involved: the viewer reads the bucket's own URLs.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.annotations import PointSet, write_points
from precomputed_tif.meshing import mesh_dataset
from precomputed_tif.sources.synthetic import blob_centres, write_synthetic_planes
from tests.e2e.test_viewer import SHAPE, SIZE, VOXEL, browser, rendered_matches_source, state  # noqa: F401
from tests.helpers.label_cells import cell_volume
from tests.helpers.object_servers import start_moto, unique_bucket_name

# From test_viewer: browser (a fixture) and state (the view of an image DATASET beside the point
# layer points-DATASET), with its SHAPE and VOXEL.
CHUNK = (32, 32, 32)
SEGMENTS = ["5", "9", "16", "23"]

REQUEST = re.compile(r'"(GET|HEAD|OPTIONS) (\S+) HTTP/1\.[01]" (\d{3})')


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the server's log colours some lines (206, 304)


def requests_in(log: str) -> list[tuple[str, str, int]]:
    """(method, path, status) of every request a server's log names."""
    return [(m.group(1), m.group(2), int(m.group(3))) for m in REQUEST.finditer(ANSI.sub("", log))]


@pytest.fixture(scope="module")
def bucket_site():
    root = tempfile.mkdtemp(prefix="pt-e2e-bucket-")
    server = None
    saved = dict(os.environ)
    try:
        server = start_moto(os.path.join(root, "moto.log"))
        os.environ.update(server.env())
        name = server.make_bucket(unique_bucket_name(), public_read=True, cors=True)
        pattern = write_synthetic_planes(os.path.join(root, "planes"), SHAPE)
        volume = np.stack([tifffile.imread(os.path.join(root, "planes", f"img_{z:05d}.tif")) for z in range(SHAPE[0])])
        infos = {}
        for dataset, sharded in (("unsharded", False), ("sharded", True)):
            infos[dataset] = convert(pattern, f"s3://{name}/lab/{dataset}", format="precomputed", sharded=sharded,
                                     chunk_size=CHUNK, voxel_size=VOXEL, n_cores=1)
        # One point layer per image: the viewer caches what it fetched by URL.
        for dataset in infos:
            write_points(PointSet(blob_centres(SHAPE), np.zeros(3), np.array(SHAPE[::-1], float)),
                         f"s3://{name}/lab/points-{dataset}", VOXEL, limit=20)
        tifffile.imwrite(os.path.join(root, "labels.tif"), cell_volume())
        convert(os.path.join(root, "labels.tif"), f"s3://{name}/lab/cells", format="precomputed", segmentation=True,
                chunk_size=CHUNK,
                voxel_size=(0.5, 0.5, 1.0), n_cores=1)
        mesh_dataset(f"s3://{name}/lab/cells", n_cores=1, node=16, sharded=True)
        yield {"server": server, "base": f"{server.endpoint}/{name}/lab", "bucket": name, "volume": volume,
               "infos": infos}
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("dataset", ["unsharded", "sharded"])
def test_neuroglancer_shows_an_image_straight_from_the_bucket(browser, bucket_site, dataset, tmp_path):  # noqa: F811
    from PIL import Image

    server, base = bucket_site["server"], bucket_site["base"]
    before = len(server.log())
    browser.show(state(base, dataset, 0.5))
    fine = browser.screenshot(*SIZE)
    browser.show(state(base, dataset, 16))
    coarse = browser.screenshot(*SIZE)
    (tmp_path / f"{dataset}.png").write_bytes(fine)

    seen = requests_in(server.log()[before:])
    failed = [r for r in seen if r[2] >= 400]
    assert not failed, failed
    prefix = f"/{bucket_site['bucket']}/lab/{dataset}/"
    keys = {p[len(prefix):].split("/")[0] for _, p, _ in seen if p.startswith(prefix)}
    scales = [s["key"] for s in bucket_site["infos"][dataset]["scales"]]
    assert scales[0] in keys and scales[-1] in keys, (keys, seen[:20])
    assert any(p.startswith(f"/{bucket_site['bucket']}/lab/points-{dataset}/spatial") for _, p, _ in seen), seen[:20]
    if dataset == "unsharded":  # what the viewer read were gzip-encoded chunks
        chunk = next(p for _, p, _ in seen if p.startswith(prefix + scales[0] + "/"))
        status, headers, _ = server.request("GET", chunk)
        assert status == 200 and headers.get("content-encoding") == "gzip"

    plane = bucket_site["volume"][SHAPE[0] // 2]
    r = rendered_matches_source(fine, plane, 0.5)
    assert r > 0.6, f"the rendered slice does not look like plane z={SHAPE[0] // 2} (r={r:.2f})"
    assert np.asarray(Image.open(io.BytesIO(coarse)).convert("L")).std() > 5, "zoomed-out view is blank"


def test_neuroglancer_draws_meshes_straight_from_the_bucket(browser, bucket_site, tmp_path):  # noqa: F811
    from PIL import Image

    server, base = bucket_site["server"], bucket_site["base"]

    def state(visible):
        return {"dimensions": {"x": [0.5e-6, "m"], "y": [0.5e-6, "m"], "z": [1e-6, "m"]},
                "position": [34.5, 25.5, 18.5], "projectionScale": 90,
                "projectionOrientation": [0.3, -0.2, 0.1, 0.92],
                "layers": [{"type": "segmentation", "source": f"precomputed://{base}/cells", "name": "cells",
                            "segments": SEGMENTS, "visible": visible}],
                "layout": "3d", "showAxisLines": False}

    before = len(server.log())
    browser.show(state(True))
    shown = browser.screenshot(*SIZE)
    browser.show(state(False))
    hidden = browser.screenshot(*SIZE)
    (tmp_path / "meshes.png").write_bytes(shown)
    a = np.asarray(Image.open(io.BytesIO(shown)).convert("RGB")).astype(int)
    b = np.asarray(Image.open(io.BytesIO(hidden)).convert("RGB")).astype(int)
    assert (np.abs(a - b).sum(-1) > 60).mean() > 0.03, "the 3-D view hardly changes when the segments are hidden"
    seen = requests_in(server.log()[before:])
    assert not [r for r in seen if r[2] >= 400], seen
    paths = [p for _, p, _ in seen]
    mesh = f"/{bucket_site['bucket']}/lab/cells/mesh/"
    assert mesh + "info" in paths, paths[:30]
    assert any(p.startswith(mesh) and p.endswith(".shard") for p in paths), paths[:30]
