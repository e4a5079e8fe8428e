"""Damaged stores are never served as data: every probe through both front doors.

precomputed-webserver and gunicorn (behind nginx, as the README deploys it)
serve datasets damaged on purpose; a damaged chunk must be a 5xx that names no
file, and the server log must name the file, once.
"""

import json
import os
import shutil
import time

import numpy as np
import pytest

from precomputed_tif import convert
from precomputed_tif.formats.blockfs import Directory
from tests.helpers.servers import start_gunicorn_behind_nginx, start_webserver
from tests.helpers.stacks import make_volume, write_planes

SHAPE = (40, 64, 64)
# The front doors: precomputed-webserver, and gunicorn behind nginx (marked nginx).
FRONTS = ["web", pytest.param("proxied", marks=pytest.mark.nginx)]


def chunk_bytes(volume, x0, x1, y0, y1, z0, z1):
    return np.ascontiguousarray(volume[z0:z1, y0:y1, x0:x1]).astype("<u2").tobytes()


def flip(path, offset, n=16):
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(n)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    volume = make_volume(SHAPE, "uint16", seed=8)
    glob = write_planes(root / "planes", volume)
    made = {}
    for fmt in ("zarr", "blockfs", "tiff"):
        made[fmt] = str(root / f"clean-{fmt}")
        convert(glob, made[fmt], format=fmt, chunk_size=(32, 32, 32), n_cores=1)
    sources = []

    def damaged(name, fmt):
        path = str(root / name)
        shutil.copytree(made[fmt], path)
        sources.append({"name": name, "directory": path})
        return path

    # Zarr chunks truncated to 16 bytes, 100 bytes, and half their size.
    z = damaged("zarr-truncated", "zarr")
    truncate(f"{z}/1_1_1/0/0/0", 16)
    truncate(f"{z}/1_1_1/0/0/1", 100)
    truncate(f"{z}/1_1_1/0/1/0", os.path.getsize(f"{z}/1_1_1/0/1/0") // 2)
    # 16 bytes flipped inside a zarr chunk and inside a TIFF chunk.
    zf = damaged("zarr-flipped", "zarr")
    flip(f"{zf}/1_1_1/0/0/0", os.path.getsize(f"{zf}/1_1_1/0/0/0") // 2)
    tfl = damaged("tiff-flipped", "tiff")
    flip(f"{tfl}/1_1_1/0-32_0-32_0-32.tiff", os.path.getsize(f"{tfl}/1_1_1/0-32_0-32_0-32.tiff") // 2)
    # blockfs: one entry claims fewer bytes than its frame, one more than its block file holds,
    # and one block has 16 bytes flipped.
    b = damaged("blockfs-damaged", "blockfs")
    d = Directory(f"{b}/1_1_1/precomputed.blockfs")
    for (x0, y0, z0), change in (((0, 0, 0), -100), ((32, 0, 0), 10**5)):
        slot = d.slot(x0, y0, z0)
        offset, size = d.entry(slot)
        value = offset | ((size + change) << d.n_offset_bits)
        with open(d.path, "r+b") as f:
            f.seek(d.dir_offset + slot * d.entry_size)
            f.write(value.to_bytes(d.entry_size, "little"))
    offset, size = d.entry(d.slot(0, 32, 0))
    flip(d.block_files[d.slot(0, 32, 0) % len(d.block_files)], offset + size // 2)
    d.close()
    # blockfs directory file truncated: it lost its last entries.
    t = damaged("blockfs-truncated", "blockfs")
    truncate(f"{t}/1_1_1/precomputed.blockfs", os.path.getsize(f"{t}/1_1_1/precomputed.blockfs") - 12)
    # A copy of a blockfs dataset, after which the original is converted again from other data.
    copy = str(root / "blockfs-copy")
    shutil.copytree(made["blockfs"], copy, symlinks=True)
    sources.append({"name": "blockfs-copy", "directory": copy})
    other = make_volume(SHAPE, "uint16", seed=9)
    convert(write_planes(root / "planes2", other), made["blockfs"], format="blockfs", chunk_size=(32, 32, 32),
            n_cores=1, overwrite=True)
    # A uint8 TIFF chunk inside a uint16 dataset, and a TIFF chunk of the wrong shape.
    import tifffile

    tf = damaged("tiff-mismatch", "tiff")
    os.unlink(f"{tf}/1_1_1/.precomputed-tif-crc32")  # as written by another tool: no checksums
    tifffile.imwrite(f"{tf}/1_1_1/0-32_0-32_0-32.tiff", (volume[:32, :32, :32] % 256).astype(np.uint8))
    tifffile.imwrite(f"{tf}/1_1_1/32-64_0-32_0-32.tiff", volume[:32, :32, :32].reshape(16, 64, 32))
    config = root / "sources.json"
    config.write_text(json.dumps(sources))
    return {"root": root, "config": str(config), "volume": volume, "other": other}


@pytest.fixture(scope="module")
def web(site):
    server = start_webserver("--config", site["config"], "--workers", "1")
    server.collect_log()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxied(site):
    front = start_gunicorn_behind_nginx(site["root"], site["config"])
    yield front
    front.stop()


@pytest.fixture(params=FRONTS)
def server(request):
    return request.getfixturevalue(request.param)


def assert_damaged(server, site, path, twice=True):
    for _ in range(2 if twice else 1):
        status, headers, body = server.request(path)
        assert status == 500, (path, status, body[:100])
        assert headers["access-control-allow-origin"] == "*"
        assert len(body) < 200 and str(site["root"]).encode() not in body and b"Traceback" not in body


def logged(server, text, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = [line for line in server.log if text in line]
        if hits:
            return hits
        time.sleep(0.05)
    return []


@pytest.mark.parametrize("chunk, file", [
    ("0-32_0-32_0-32", "1_1_1/0/0/0"), ("32-64_0-32_0-32", "1_1_1/0/0/1"), ("0-32_32-64_0-32", "1_1_1/0/1/0")])
def test_truncated_zarr_chunk_is_an_error_not_heap_bytes(server, site, chunk, file):
    assert_damaged(server, site, f"/zarr-truncated/1_1_1/{chunk}")
    hits = logged(server, f"zarr-truncated/{file}")
    assert hits and len(hits) <= 2  # once per worker process at most
    status, _, body = server.request("/zarr-truncated/1_1_1/32-64_32-64_0-32")
    assert status == 200 and body == chunk_bytes(site["volume"], 32, 64, 32, 64, 0, 32)


@pytest.mark.parametrize("name", ["zarr-flipped", "tiff-flipped"])
def test_flipped_bytes_are_detected_not_served(server, site, name):
    assert_damaged(server, site, f"/{name}/1_1_1/0-32_0-32_0-32")
    assert logged(server, f"{name}/1_1_1/0") and logged(server, "checksum mismatch")
    status, _, body = server.request(f"/{name}/1_1_1/32-64_32-64_32-40")
    assert status == 200 and body == chunk_bytes(site["volume"], 32, 64, 32, 64, 32, 40)


def test_damaged_blockfs_entries_and_blocks(server, site):
    for chunk in ("0-32_0-32_0-32", "32-64_0-32_0-32", "0-32_32-64_0-32"):
        assert_damaged(server, site, f"/blockfs-damaged/1_1_1/{chunk}")
    assert logged(server, "checksum mismatch")
    status, _, body = server.request("/blockfs-damaged/1_1_1/32-64_32-64_0-32")
    assert status == 200 and body == chunk_bytes(site["volume"], 32, 64, 32, 64, 0, 32)


def test_truncated_blockfs_directory_is_an_error_not_zeros(server, site):
    assert_damaged(server, site, "/blockfs-truncated/1_1_1/32-64_32-64_32-40")
    assert logged(server, "is truncated")


def test_a_blockfs_copy_serves_its_own_blocks(server, site):
    for box in ((0, 32, 0, 32, 0, 32), (32, 64, 32, 64, 32, 40)):
        status, _, body = server.request("/blockfs-copy/1_1_1/{}-{}_{}-{}_{}-{}".format(*box))
        assert status == 200 and body == chunk_bytes(site["volume"], *box)
        assert body != chunk_bytes(site["other"], *box)


def test_a_tiff_chunk_of_another_type_or_shape_is_an_error_not_a_cast(server, site):
    assert_damaged(server, site, "/tiff-mismatch/1_1_1/0-32_0-32_0-32")
    assert logged(server, "uint8 voxels in a uint16 dataset")
    assert_damaged(server, site, "/tiff-mismatch/1_1_1/32-64_0-32_0-32")
