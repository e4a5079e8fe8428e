"""The mesh and segment-property files served as Neuroglancer fetches them: by
precomputed-webserver, the WSGI app under gunicorn, and a plain nginx, with byte
ranges for the shard files."""

import json
import os

import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.meshing import mesh_dataset
from tests.helpers.label_cells import cell_volume
from tests.helpers.mesh_reader import parse_manifest, shard_entries
from tests.helpers.servers import require_nginx, start_gunicorn, start_static_nginx, start_webserver

pytestmark = pytest.mark.nginx  # the module's fixture serves its files with nginx


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("mesh-serving")
    tifffile.imwrite(root / "labels.tif", cell_volume())
    dest = str(root / "cells")
    convert(str(root / "labels.tif"), dest, segmentation=True, chunk_size=(32, 32, 32), n_cores=1, format="blockfs")
    mesh_dataset(dest, n_cores=1, node=16, sharded=True)
    config = root / "sources.json"
    config.write_text(json.dumps([{"name": "cells", "directory": dest}]))
    servers = {"webserver": start_webserver("--config", str(config), "--workers", "1"),
               "gunicorn": start_gunicorn(str(root), str(config), workers=1)}
    require_nginx()
    servers["nginx"] = start_static_nginx(str(root), str(root))
    yield dest, servers
    for s in servers.values():
        s.stop()


@pytest.mark.parametrize("front", ["webserver", "gunicorn", "nginx"])
def test_mesh_files_are_served_with_ranges(site, front):
    dest, servers = site
    server = servers[front]
    status, headers, body = server.request("/cells/mesh/info")
    assert status == 200 and json.loads(body) == json.load(open(os.path.join(dest, "mesh", "info")))
    status, _, body = server.request("/cells/segment_properties/info")
    assert status == 200 and json.loads(body)["@type"] == "neuroglancer_segment_properties"
    status, _, body = server.request("/cells/info")
    assert status == 200 and json.loads(body)["mesh"] == "mesh"
    # What Neuroglancer does for one segment: the shard index, the minishard index, the
    # manifest, then one fragment -- each a byte range of the one shard file.
    spec = json.loads(open(os.path.join(dest, "mesh", "info")).read())["sharding"]
    entries = shard_entries(os.path.join(dest, "mesh"), spec)
    data, start, end = entries[5]
    manifest = parse_manifest(data[start:end])
    first = int(manifest["lods"][0]["sizes"][0])
    total = sum(int(level["sizes"].sum()) for level in manifest["lods"])
    for lo, hi in ((0, 16), (start, end), (start - total, start - total + first)):
        status, headers, body = server.request("/cells/mesh/0.shard", headers={"Range": f"bytes={lo}-{hi - 1}"})
        assert status == 206, (front, status)
        assert body == data[lo:hi]
        assert headers["content-range"] == f"bytes {lo}-{hi - 1}/{len(data)}"
        assert headers.get("access-control-allow-origin") == "*"
