"""The mesh and segment-property files served as Neuroglancer fetches them: by
precomputed-webserver, the WSGI app under gunicorn, and a plain nginx, with byte
ranges for the shard files."""

import json
import os
import shutil
import subprocess

import pytest
import tifffile

from label_cells import cell_volume
from mesh_reader import parse_manifest, shard_entries
from precomputed_tif import convert
from precomputed_tif.meshing import mesh_dataset
from servers import Server, free_port, start_gunicorn, start_webserver, wait_for_port

NGINX_CONF = """daemon off;
worker_processes 1;
user root;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        location /cells/ {{
            alias {dataset}/;
            add_header Access-Control-Allow-Origin * always;
        }}
    }}
}}
"""


def start_nginx(root, dataset) -> Server:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(exe):
        (pytest.fail if os.environ.get("REQUIRE_TOOLS") else pytest.skip)("nginx is not installed (apt-get install nginx)")
    port = free_port()
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(root=root, port=port, dataset=dataset))
    proc = subprocess.Popen([exe, "-c", conf, "-p", root], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_port(port, proc)
    return Server(proc, port)


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
    servers["nginx"] = start_nginx(str(root), dest)
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
