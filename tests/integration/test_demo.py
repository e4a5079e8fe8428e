"""`make demo`'s program: converts its sample, serves it, prints links that point at it."""

import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request

import numpy as np
import pytest

from tests.helpers.servers import read_until_ready


@pytest.mark.slow
def test_demo_converts_serves_and_prints_links(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "precomputed_tif.cli.demo", "--dir", str(tmp_path), "--port", "0",
                             "--viewer-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = read_until_ready(proc)
        source = re.search(r"Neuroglancer source: (precomputed://(http://127\.0\.0\.1:\d+/image))", out)
        points = re.search(r"Points source: (precomputed://(http://127\.0\.0\.1:\d+/points))", out)
        assert source, out
        link = re.search(r"(https://neuroglancer-demo\.appspot\.com/#!\S+)", out).group(1)
        state = json.loads(urllib.parse.unquote(link.split("#!", 1)[1]))
        assert state["layers"][0]["source"] == source.group(1)
        assert state["layers"][1]["source"] == points.group(1) and state["layers"][1]["type"] == "annotation"
        with urllib.request.urlopen(points.group(2) + "/info") as r:
            assert json.load(r)["@type"] == "neuroglancer_annotations_v1"
        assert state["dimensions"]["x"] == [pytest.approx(1.8e-6), "m"]
        cells = re.search(r"Segmentation source \(with meshes\): precomputed://(http://127\.0\.0\.1:\d+/cells)", out)
        assert cells and state["layers"][2]["source"] == "precomputed://" + cells.group(1), out
        assert state["layers"][2]["type"] == "segmentation" and len(state["layers"][2]["segments"]) == 8
        with urllib.request.urlopen(cells.group(1) + "/info") as r:
            assert json.load(r)["mesh"] == "mesh"
        with urllib.request.urlopen(cells.group(1) + "/segment_properties/info") as r:
            names = {p["id"]: p for p in json.load(r)["inline"]["properties"]}["name"]["values"]
            assert names[0].startswith("cell ")
        local = re.search(r"(http://127\.0\.0\.1:\d+/v/\S+)", out)
        assert local, out  # the neuroglancer package's own client, served by the demo
        with urllib.request.urlopen(local.group(1)) as r:
            assert b"neuroglancer" in r.read().lower()
        with urllib.request.urlopen(source.group(2) + "/info") as r:
            info = json.load(r)
            assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert info["scales"][0]["size"] == [512, 448, 160]
        with urllib.request.urlopen(source.group(2) + "/1_1_1/192-256_192-256_64-128") as r:
            chunk = np.frombuffer(r.read(), "<u2")
        assert chunk.size == 64 ** 3 and chunk.max() > 1000 and chunk.min() < 200  # blobs on a background
    finally:
        proc.terminate()
        proc.wait(10)
    assert len(os.listdir(tmp_path / "planes")) == 160
