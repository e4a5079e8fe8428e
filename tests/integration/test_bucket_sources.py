"""TIFF planes read from a bucket (``--source "s3://BUCKET/planes/*.tif"``, gs://, one multi-page
object) on real object-store servers: the dataset is the one the same files give from a local
folder, object for object; a plane uploaded again after a kill is refused by name; a glob that
matches nothing and an object that is no TIFF are one line each."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import tifffile

from precomputed_tif import convert
from precomputed_tif.cli.convert import main
from tests.helpers.readback import files_of
from tests.helpers.stacks import make_volume, write_planes
from tests.integration.test_changed_source import killed_run

EXE = os.path.join(os.path.dirname(sys.executable), "precomputed-tif")
SHAPE = (11, 45, 71)  # z, y, x: odd, no multiple of the chunk size
CHUNK = (16, 16, 8)


def upload(server, bucket: str, folder, prefix: str) -> None:
    """Every file of ``folder`` as an object ``prefix/NAME``."""
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            server.put_object(bucket, f"{prefix}/{name}", f.read(), content_type="image/tiff")


def unpadded_planes(folder, volume, **options) -> None:
    """One file per z plane named img_1.tif ... img_11.tif: only a natural sort puts img_2 before img_10."""
    os.makedirs(folder, exist_ok=True)
    for z, plane in enumerate(volume):
        tifffile.imwrite(os.path.join(folder, f"img_{z + 1}.tif"), plane, **options)


def same_conversion(tmp_path, remote_source, local_source, **options) -> dict:
    """Convert both sources into directories of the same name; assert the datasets are the same
    files (the runs' own records, which name the sources, left out; ``info`` may name the file
    its voxel size came from); returns them."""
    options = {"chunk_size": CHUNK, "n_cores": 2, "block_bytes": 1, "progress": False, **options}
    convert(remote_source, str(tmp_path / "from-bucket" / "out"), **options)
    convert(local_source, str(tmp_path / "from-folder" / "out"), **options)
    got, want = files_of(tmp_path / "from-bucket" / "out"), files_of(tmp_path / "from-folder" / "out")
    got["info"] = got["info"].replace(remote_source.encode(), local_source.encode())
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name
    return got


CASES = [
    # (name, volume's dtype, channels, tifffile options, format)
    ("uint16 deflate strips", "uint16", 1, {"compression": "zlib", "rowsperstrip": 8}, "precomputed"),
    ("uint8 rgb tiles", "uint8", 3, {"photometric": "rgb", "tile": (16, 16), "compression": "lzw"}, "zarr"),
    ("float32 uncompressed", "float32", 1, {}, "precomputed"),
]


@pytest.mark.parametrize("name,dtype,channels,options,fmt", CASES, ids=[c[0] for c in CASES])
def test_planes_in_a_bucket_convert_as_from_a_local_folder(tmp_path, s3, name, dtype, channels, options, fmt):
    server, bucket = s3
    shape = (*SHAPE, channels) if channels > 1 else SHAPE
    unpadded_planes(tmp_path / "planes", make_volume(shape, dtype, seed=5), **options)
    upload(server, bucket, tmp_path / "planes", "run 1/planes")  # (a space: keys are not paths)
    server.put_object(bucket, "run 1/planes/notes.txt", b"not a plane")
    server.put_object(bucket, "run 1/planes/.img_0.tif", b"hidden: not a plane either")
    server.put_object(bucket, "run 1/planes/old/img_5.tif", b"below the folder: not matched by *")
    same_conversion(tmp_path, f"s3://{bucket}/run 1/planes/img_*.tif", str(tmp_path / "planes" / "img_*.tif"),
                    format=fmt)


def test_a_multipage_object_with_channels_converts_as_the_local_file(tmp_path, s3):
    server, bucket = s3
    volume = make_volume((7, 2, 37, 53), "uint16", seed=6)  # z, c, y, x
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, volume, ome=True, metadata={"axes": "ZCYX", "PhysicalSizeX": 0.4, "PhysicalSizeY": 0.4,
                                                      "PhysicalSizeZ": 2.5, "Channel": {"Name": ["dapi", "gfp"]}},
                     tile=(16, 16), compression="zlib")
    server.put_object(bucket, "stack.ome.tif", path.read_bytes())
    got = same_conversion(tmp_path, f"s3://{bucket}/stack.ome.tif", str(path), format="precomputed")
    assert b'"dapi"' in got["info"] and b"400.0" in got["info"]  # names and voxel size from its OME-XML


def test_a_folder_in_a_bucket_stands_for_its_tiff_objects(tmp_path, s3):
    server, bucket = s3
    glob = write_planes(tmp_path / "planes", make_volume(SHAPE, "uint16", seed=7))
    upload(server, bucket, tmp_path / "planes", "planes")
    server.put_object(bucket, "planes/README.txt", b"left out")
    same_conversion(tmp_path, f"s3://{bucket}/planes", glob)


def test_planes_in_a_gcs_bucket(tmp_path, fake_gcs, bucket, monkeypatch):
    for name, value in fake_gcs.env().items():
        monkeypatch.setenv(name, value)
    name = bucket(fake_gcs)
    unpadded_planes(tmp_path / "planes", make_volume(SHAPE, "uint16", seed=8), compression="zlib")
    upload(fake_gcs, name, tmp_path / "planes", "planes")
    same_conversion(tmp_path, f"gs://{name}/planes/*.tif", str(tmp_path / "planes" / "*.tif"))


# --- resuming --------------------------------------------------------------------------------

@pytest.mark.slow
def test_after_a_kill_unchanged_planes_resume_and_a_plane_uploaded_again_is_named(tmp_path, s3, capsys):
    server, bucket = s3
    shape = (33, 71, 59)
    volume = make_volume(shape, "uint16", seed=9)
    write_planes(tmp_path / "planes", volume)
    upload(server, bucket, tmp_path / "planes", "planes")
    source = f"s3://{bucket}/planes/*.tif"
    dest = str(tmp_path / "out")
    args = ["--source", source, "--dest", dest, "--chunk-size", "8,8,8", "--n-cores", "2",
            "--memory-limit", "280M", "--no-progress"]
    killed_run([EXE, *args], dest)
    assert main(args) == 0  # the same planes: resumed
    assert main(["--source", str(tmp_path / "planes" / "*.tif"), "--dest", str(tmp_path / "clean"), *args[4:]]) == 0
    assert files_of(dest) == files_of(tmp_path / "clean")

    other = str(tmp_path / "again")
    killed_run([EXE, "--source", source, "--dest", other, *args[4:]], other)
    volume[17, 3, 4] ^= 1  # the same size, other bytes
    tifffile.imwrite(tmp_path / "planes" / "img_0017.tif", volume[17], photometric="minisblack")
    server.put_object(bucket, "planes/img_0017.tif", (tmp_path / "planes" / "img_0017.tif").read_bytes())
    capsys.readouterr()
    assert main(["--source", source, "--dest", other, *args[4:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"s3://{bucket}/planes/img_0017.tif was modified" in err and "--overwrite" in err, err
    assert not os.path.exists(os.path.join(other, "info"))


# --- mistakes -----------------------------------------------------------------------------------

def test_a_glob_matching_no_object_is_one_line(tmp_path, s3, capsys):
    server, bucket = s3
    server.put_object(bucket, "planes/img_1.tif", b"II*\0")
    code = main(["--source", f"s3://{bucket}/planes/plane_*.tif", "--dest", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"no object matches --source 's3://{bucket}/planes/plane_*.tif'" in err, err
    code = main(["--source", f"s3://{bucket}/elsewhere", "--dest", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "no object of that name, no TIFF objects" in err and "dataset" in err, err
    assert not os.path.exists(tmp_path / "out")


def test_an_object_that_is_no_tiff_is_one_line(tmp_path, s3, capsys):
    server, bucket = s3
    write_planes(tmp_path / "planes", make_volume((3, 9, 11), "uint8", seed=10))
    upload(server, bucket, tmp_path / "planes", "planes")
    server.put_object(bucket, "planes/img_0001.tif", b"<html>not found</html>" * 20)  # a plane replaced by junk
    code = main(["--source", f"s3://{bucket}/planes/*.tif", "--dest", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"s3://{bucket}/planes/img_0001.tif is not a readable TIFF file" in err, err
    assert not os.path.exists(tmp_path / "out")


def test_reads_are_ranges_of_the_object_not_whole_downloads(tmp_path, s3):
    # One 300 x 1100 uint16 plane in 4-row strips; a 16 x 16 corner of it needs a few strips, never the plane.
    server, bucket = s3
    plane = make_volume((1, 300, 1100), "uint16", seed=11)[0]
    tifffile.imwrite(tmp_path / "big.tif", plane, rowsperstrip=4, compression="zlib")
    server.put_object(bucket, "big.tif", (tmp_path / "big.tif").read_bytes())
    from precomputed_tif.geometry import Box
    from precomputed_tif.sources import open_source
    from precomputed_tif.storage import ObjectStorage

    stack = open_source(f"s3://{bucket}/big.tif")
    fetched = []
    original = ObjectStorage._ranged

    def counting(self, key, start, end, etag=None):
        data = original(self, key, start, end, etag)
        fetched.append(len(data))
        return data

    ObjectStorage._ranged = counting
    try:
        corner = stack.read(Box(0, 16, 0, 16, 0, 1))
    finally:
        ObjectStorage._ranged = original
    assert np.array_equal(corner[0], plane[:16, :16])
    size = os.path.getsize(tmp_path / "big.tif")
    assert fetched and sum(fetched) < size / 4, (fetched, size)


@pytest.mark.parametrize("fmt", ["precomputed", "ome-zarr"])
def test_a_published_dataset_is_a_source_to_anyone_though_the_bucket_cannot_be_listed(tmp_path, seaweedfs, bucket,
                                                                                       fmt):
    """A dataset published as the commands advise (anonymous s3:GetObject, no listing): a
    collaborator without credentials converts from it, with one warning that a rerun could not
    notice changed voxels; without that grant, one line saying access is denied."""
    import subprocess

    from precomputed_tif import open_volume

    volume = make_volume(SHAPE, "uint16", seed=17)
    planes = write_planes(str(tmp_path / "planes"), volume)
    public, private = bucket(seaweedfs, public_read=True), bucket(seaweedfs)
    env = {**os.environ, **seaweedfs.env()}
    for name in (public, private):
        done = subprocess.run([EXE, "--source", planes, "--dest", f"s3://{name}/brain", "--format", fmt,
                               "--chunk-size", "16,16,8", "--no-progress"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    anonymous = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    # S3 answers a missing object with 403, not 404, where listing is not granted; SeaweedFS
    # answers 404. Keys the reader may probe for and the dataset lacks are denied explicitly, so
    # that the server answers them as S3 would.
    absent = [f"brain/{level}/{name}" for level in ("1_1_1", "0") for name in (".zarray", "zarr.json")]
    absent += ["brain/.zattrs", "brain/zarr.json", "brain/.zgroup"]
    import json

    seaweedfs.client.put_bucket_policy(Bucket=public, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{public}/*"]},
        {"Effect": "Deny", "Principal": "*", "Action": ["s3:GetObject"],
         "Resource": [f"arn:aws:s3:::{public}/{key}" for key in absent
                      if seaweedfs.client.list_objects_v2(Bucket=public, Prefix=key).get("KeyCount", 0) == 0]}]}))
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError, match="403"):  # a probe for an absent key, as S3 answers it
        urllib.request.urlopen(f"{seaweedfs.endpoint}/{public}/brain/1_1_1/.zarray")
    with pytest.raises(urllib.error.HTTPError, match="403"):  # the server does refuse an anonymous listing
        urllib.request.urlopen(f"{seaweedfs.endpoint}/{public}?list-type=2")
    dest = tmp_path / "copy"
    done = subprocess.run([EXE, "--source", f"s3://{public}/brain", "--dest", str(dest), "--format", "zarr",
                           "--no-progress"], env=anonymous, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "cannot be listed" in warnings[0], done.stderr
    np.testing.assert_array_equal(open_volume(str(dest)).read("1_1_1"), volume)
    done = subprocess.run([EXE, "--source", f"s3://{private}/brain", "--dest", str(tmp_path / "no"), "--format",
                           "zarr", "--no-progress"], env=anonymous, capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "access denied" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "no").exists()
