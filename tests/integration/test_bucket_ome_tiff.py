"""--format ome-tiff into a bucket on a real S3 server (SeaweedFS): one image/tiff object uploaded in
parts, read back by tifffile equal to the source and its means; a conversion killed while tiling
and while assembling resumes to the same bytes; a full temporary directory is one line; peak
memory does not grow with the file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.cli.convert import main
from precomputed_tif.pipeline.progress import DONE_OBJECTS
from precomputed_tif.storage.objects import PART_SIZE, PARTS_IN_FLIGHT
from tests.helpers.full_disk import small_disk
from tests.helpers.peak_rss import pattern_planes, source_conversion_peak_rss
from tests.helpers.readback import ome_tiff_levels
from tests.helpers.stacks import make_volume, reference_downsample, write_planes

EXE = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")


def keys(server, bucket: str, prefix: str = "") -> list[str]:
    pages = server.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def download(server, bucket: str, key: str, path) -> dict:
    """The object into the file ``path``; returns its HEAD (content type, encoding, ETag)."""
    server.client.download_file(bucket, key, str(path))
    return server.client.head_object(Bucket=bucket, Key=key)


def reference_levels(volume: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """(c, z, y, x) levels: the source, then each the x/y 2 x 2 mean of the one before."""
    levels = [volume]
    for _ in range(n_levels - 1):
        levels.append(np.stack([reference_downsample(ch, (2, 2, 1), False) for ch in levels[-1]]))
    return levels


def test_ome_tiff_in_a_bucket_is_one_tiff_object_uploaded_in_parts(tmp_path, s3):
    server, bucket = s3
    # 2 channels of 9 planes of 409 x 613 uint16, uncompressed: over 9 MiB at full resolution,
    # so the upload takes more than one 8 MiB part.
    volume = make_volume((9, 2, 409, 613), "uint16", seed=21)  # z, c, y, x
    source = tmp_path / "stack.ome.tif"
    tifffile.imwrite(source, volume, ome=True, metadata={"axes": "ZCYX"})
    dest = f"s3://{bucket}/brain"
    assert main(["--source", str(source), "--dest", dest, "--format", "ome-tiff", "--tile-size", "128",
                 "--compression", "none", "--n-cores", "2", "--memory-limit", "400M", "--no-progress"]) == 0
    assert keys(server, bucket) == ["brain/.precomputed-tif-inputs.json", "brain/.precomputed-tif.json",
                                    "brain/brain.offsets.json", "brain/brain.ome.tif"]  # no work files left
    head = download(server, bucket, "brain/brain.ome.tif", tmp_path / "got.ome.tif")
    assert head["ContentType"] == "image/tiff" and "ContentEncoding" not in head
    parts = -(-head["ContentLength"] // PART_SIZE)
    assert parts >= 2 and head["ETag"].strip('"').endswith(f"-{parts}"), head  # one multipart upload
    got = ome_tiff_levels(tmp_path / "got.ome.tif")
    want = reference_levels(volume.transpose(1, 0, 2, 3), 4)
    assert [g.shape for g in got] == [w.shape for w in want] == [(2, 9, 409, 613), (2, 9, 205, 307),
                                                                (2, 9, 103, 154), (2, 9, 52, 77)]
    for level, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g, w), level
    with tifffile.TiffFile(tmp_path / "got.ome.tif") as tif:
        offsets = [page.offset for page in tif.pages]
    assert json.loads(server.client.get_object(Bucket=bucket, Key="brain/brain.offsets.json")["Body"].read()) \
        == offsets
    assert server.multipart_uploads(bucket) == []


CONVERT = textwrap.dedent("""
    import sys
    from precomputed_tif import convert
    if __name__ == "__main__":
        convert(sys.argv[1], sys.argv[2], format="ome-tiff", tile_size=32, compression="none", n_cores=2,
                block_bytes=1)
""")


def run_and_kill(source: str, dest: str, when) -> bool:
    """Start a conversion in another process and SIGKILL it (all its processes) once ``when()``
    holds; False if it finished first."""
    proc = subprocess.Popen([sys.executable, "-c", CONVERT, source, dest], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not when():
        time.sleep(0.02)
    finished = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return not finished


@pytest.mark.slow
def test_killed_while_tiling_and_while_assembling_then_rerun_gives_the_same_object(tmp_path, s3):
    server, bucket = s3
    source = write_planes(tmp_path / "planes", make_volume((60, 230, 270), "uint16", seed=22))
    dest = f"s3://{bucket}/out"
    # The UUID in the OME-XML depends on the destination: compare runs into the same one.
    convert(source, dest, format="ome-tiff", tile_size=32, compression="none", n_cores=2, block_bytes=1)
    clean = {k: server.client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys(server, bucket)}
    assert len(clean["out/out.ome.tif"]) > 8 << 20  # uploaded in parts
    for k in clean:
        server.client.delete_object(Bucket=bucket, Key=k)

    def tasks_done(n):
        return lambda: len(keys(server, bucket, f"out/{DONE_OBJECTS}/")) >= n

    def assembling():  # the offsets are put just before the image is streamed in
        return "out/out.offsets.json" in keys(server, bucket, "out/")

    kills = 0
    for when in (tasks_done(2), tasks_done(20), assembling):
        if not run_and_kill(source, dest, when):
            break
        kills += 1
        assert "out/out.ome.tif" not in keys(server, bucket)  # never there before it is whole
    assert kills >= 2, "the conversion finished before it could be killed"
    convert(source, dest, format="ome-tiff", tile_size=32, compression="none", n_cores=2, block_bytes=1)
    again = {k: server.client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys(server, bucket)}
    assert sorted(again) == sorted(clean)  # no work files or done records left
    for k in clean:
        assert again[k] == clean[k], k


def test_a_full_temporary_directory_is_one_line(tmp_path, s3):
    server, bucket = s3
    source = write_planes(tmp_path / "planes", make_volume((12, 250, 300), "uint16", seed=23))  # 1.8 MB
    with small_disk(tmp_path / "tmp", "1M") as scratch:
        env = {**os.environ, "TMPDIR": scratch}
        done = subprocess.run([EXE, "--source", source, "--dest", f"s3://{bucket}/out", "--format", "ome-tiff",
                               "--compression", "none", "--n-cores", "1", "--no-progress"], env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"temporary directory {scratch}" in done.stderr and "TMPDIR" in done.stderr, done.stderr
    assert "out/out.ome.tif" not in keys(server, bucket)
    assert server.multipart_uploads(bucket) == []


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_file(tmp_path, s3):
    server, bucket = s3

    def peak(n_planes: int) -> int:
        source = pattern_planes(tmp_path / f"src{n_planes}", n_planes)
        return source_conversion_peak_rss(source, f"s3://{bucket}/out{n_planes}",
                                          '{"format": "ome-tiff", "tile_size": 64, "compression": "none", '
                                          '"block_bytes": 2**20}')

    # Files of about 11 and 46 MiB, uploaded in parts of PART_SIZE (8 MiB), PARTS_IN_FLIGHT at
    # once: the larger file fills the window the smaller does not, and no more. Were the file held
    # in memory as it is uploaded, the larger would need its 46 MiB on top of the window.
    small, large = peak(64), peak(320)
    window = (PARTS_IN_FLIGHT + 1) * PART_SIZE
    assert large - small < window, (small / 2**20, large / 2**20)


STREAM = textwrap.dedent("""
    import sys
    from precomputed_tif.storage import open_storage
    storage = open_storage(sys.argv[1])
    piece = bytes(range(256)) * 4096  # 1 MiB
    with storage.open_stream("big") as out:
        for _ in range(int(sys.argv[2])):
            out.write(piece)
    with open("/proc/self/status") as f:
        print(next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")))
""")


def test_a_stream_into_a_bucket_holds_a_few_parts_whatever_its_length(s3):
    """An object streamed in 1 MiB writes (a shard, an OME-TIFF): peak memory is the same for
    48 and 144 MiB, both past the window of parts in flight."""
    server, bucket = s3

    def peak(mib: int) -> int:
        out = subprocess.run([sys.executable, "-c", STREAM, f"s3://{bucket}/s{mib}", str(mib)],
                             capture_output=True, text=True, check=True)
        assert server.client.head_object(Bucket=bucket, Key=f"s{mib}/big")["ContentLength"] == mib << 20
        return int(out.stdout.split()[-1])

    small, large = peak(48), peak(144)
    assert abs(large - small) < 8 * 2**20, (small / 2**20, large / 2**20)
