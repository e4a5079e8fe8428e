"""OME-Zarr and OME-TIFF served by precomputed-webserver and by the WSGI app under gunicorn, as a
static server would: metadata, shards and the OME-TIFF by byte range, CORS on every answer, and
nothing hidden or outside the dataset."""

import json
import os
import shutil
import tempfile

import numpy as np
import pytest
import tifffile
import zarr

from precomputed_tif import convert
from tests.helpers.servers import start_gunicorn, start_webserver
from tests.helpers.stacks import make_volume, write_planes

SHAPE = (21, 70, 90)
CHUNK = (16, 16, 16)


@pytest.fixture(scope="module")
def site():
    root = tempfile.mkdtemp(prefix="pt-ome-serving-")
    try:
        volume = make_volume(SHAPE, "uint16", seed=9)
        glob = write_planes(os.path.join(root, "planes"), volume)
        for name, options in (("v5", {"format": "ome-zarr", "chunk_size": CHUNK}),
                              ("v4", {"format": "ome-zarr", "ngff_version": "0.4", "chunk_size": CHUNK}),
                              ("tif", {"format": "ome-tiff", "tile_size": 32})):
            convert(glob, os.path.join(root, name), n_cores=1, **options)
        # The same OME-Zarr without our info, as other tools write it.
        shutil.copytree(os.path.join(root, "v5"), os.path.join(root, "bare"))
        os.unlink(os.path.join(root, "bare", "info"))
        # And one written by ome-zarr-py (levels s0, s2, s4; no info): served as plain files too.
        from ome_zarr.writer import write_image

        write_image(volume, zarr.open_group(os.path.join(root, "foreign"), mode="w"), axes="zyx")
        config = os.path.join(root, "sources.json")
        with open(config, "w") as f:
            json.dump([{"name": n, "directory": os.path.join(root, n)}
                       for n in ("v5", "v4", "tif", "bare", "foreign")], f)
        web = start_webserver("--config", config, "--workers", "1")
        wsgi = start_gunicorn(root, config, workers=1)
        yield {"root": root, "volume": volume, "servers": {"webserver": web, "gunicorn": wsgi}}
        web.stop()
        wsgi.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["webserver", "gunicorn"])
def server(request, site):
    return site["servers"][request.param]


def file_bytes(site, *parts) -> bytes:
    with open(os.path.join(site["root"], *parts), "rb") as f:
        return f.read()


@pytest.mark.parametrize("path", ["v5/zarr.json", "v5/0/zarr.json", "v4/.zattrs", "v4/.zgroup", "v4/0/.zarray",
                                  "bare/zarr.json", "bare/1/zarr.json", "tif/tif.offsets.json"])
def test_metadata_files_are_served_as_they_are(site, server, path):
    status, headers, body = server.request("/" + path)
    assert status == 200, path
    assert body == file_bytes(site, *path.split("/"))
    assert headers["access-control-allow-origin"] == "*"
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("name", ["v5", "bare"])
def test_shards_are_read_by_range(site, server, name):
    shard = os.path.join("0", "c", "0", "0", "0")
    whole = file_bytes(site, name, shard)
    status, headers, body = server.request(f"/{name}/0/c/0/0/0", headers={"Range": "bytes=-100"})
    assert status == 206 and body == whole[-100:]
    assert headers["content-range"] == f"bytes {len(whole) - 100}-{len(whole) - 1}/{len(whole)}"
    status, headers, body = server.request(f"/{name}/0/c/0/0/0", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) == len(whole)


def test_the_ome_tiff_is_read_by_range_as_avivator_does(site, server):
    whole = file_bytes(site, "tif", "tif.ome.tif")
    offsets = json.loads(file_bytes(site, "tif", "tif.offsets.json"))
    start = offsets[3]
    status, headers, body = server.request("/tif/tif.ome.tif", headers={"Range": f"bytes={start}-{start + 99}"})
    assert status == 206 and body == whole[start:start + 100]
    assert headers["access-control-allow-origin"] == "*"
    assert "Content-Range" in headers["access-control-expose-headers"]
    status, headers, _ = server.request("/tif/tif.ome.tif", method="OPTIONS",
                                        headers={"Origin": "https://avivator.gehlenborglab.org",
                                                 "Access-Control-Request-Headers": "range"})
    assert status == 204 and "range" in headers["access-control-allow-headers"].lower()


def test_precomputed_chunks_of_an_ome_zarr_are_translated(site, server):
    """The same directory is also a precomputed:// source through our servers."""
    status, _, body = server.request("/v5/info")
    info = json.loads(body)
    assert status == 200 and [s["key"] for s in info["scales"]][:2] == ["0", "1"]
    status, _, body = server.request("/v5/0/16-32_32-48_0-16")
    assert status == 200
    chunk = np.frombuffer(body, "<u2").reshape(16, 16, 16)
    np.testing.assert_array_equal(chunk, site["volume"][0:16, 32:48, 16:32])


@pytest.mark.parametrize("path", ["v5/.precomputed-tif.json", "v5/.precomputed-tif-done", "v4/0/.precomputed-tif-crc32",
                                  "tif/.precomputed-tif.json", "tif/.ome-tiff-work", "v5/../v4/.zattrs",
                                  "v5/%2e%2e/v4/info", "bare/info"])
def test_hidden_and_outside_files_stay_hidden(server, path):
    status, _, _ = server.request("/" + path)
    assert status == 404, path


def test_zarr_python_reads_the_served_ome_zarr(site, server):
    """An HTTP Zarr reader (zarr-python through fsspec and aiohttp) sees the same array as on disk."""
    g = zarr.open_group(f"{server.url}/v4", mode="r")
    np.testing.assert_array_equal(g["0"][:], site["volume"])


def test_an_ome_zarr_written_by_other_software_is_served_as_it_is(site, server):
    """zarr-python, reading over HTTP from our server, sees what ome-zarr-py wrote; the server
    names it as an OME-Zarr source."""
    g = zarr.open_group(f"{server.url}/foreign", mode="r")
    paths = [d["path"] for d in g.attrs["ome"]["multiscales"][0]["datasets"]]
    np.testing.assert_array_equal(g[paths[0]][:], site["volume"])
    assert g[paths[1]].shape == zarr.open_array(os.path.join(site["root"], "foreign", paths[1]), mode="r").shape


def test_the_webserver_prints_what_to_open(site):
    printed = "".join(site["servers"]["webserver"].printed)
    url = site["servers"]["webserver"].url
    assert f"v5 as OME-Zarr 0.5: zarr://{url}/v5\n" in printed
    assert f"v4 as OME-Zarr 0.4: zarr://{url}/v4\n" in printed
    assert f"foreign as OME-Zarr 0.5: zarr://{url}/foreign\n" in printed
    assert (f"tif.ome.tif in Avivator: https://avivator.gehlenborglab.org/?image_url={url}/tif/tif.ome.tif\n"
            in printed), printed
    assert tifffile.TiffFile(os.path.join(site["root"], "tif", "tif.ome.tif")).series[0].is_pyramidal


def test_a_fifo_for_metadata_does_not_stop_the_server_starting(tmp_path):
    """precomputed-webserver looks for OME metadata in every source when it starts: a FIFO there
    (which would block a plain open forever) is passed over."""
    from precomputed_tif.formats.zarr.ngff import root_version

    os.mkfifo(tmp_path / "zarr.json")
    os.mkfifo(tmp_path / ".zattrs")
    assert root_version(str(tmp_path)) is None
