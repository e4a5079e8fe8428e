"""Digests of every file each format writes for a fixed small input, to prove that a change
meant to leave output alone (a refactor) does.

    python -m tests.helpers.output_digests --write    # record today's digests in tests/data/output-digests.json

The inputs are generated (odd sizes; an image, two channels, a segmentation with meshes, a
point layer), converted in one process with one worker, so every byte is deterministic. The
conversion's own bookkeeping (records of the job and its inputs, done logs) is left out: it
names the machine's paths and times.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile

import numpy as np

from tests.helpers import DATA

RECORDED = os.path.join(DATA, "output-digests.json")
BOOKKEEPING = (".precomputed-tif.json", ".precomputed-tif-inputs.json", ".precomputed-tif-done")

# (name, input, options): every format, the precomputed encodings and sharding, NGFF versions.
CASES = [
    ("tiff", "image", ["--format", "tiff"]),
    ("zarr", "image", ["--format", "zarr"]),
    ("blockfs", "image", ["--format", "blockfs"]),
    ("precomputed-raw", "image", ["--format", "precomputed", "--unsharded"]),
    ("precomputed-sharded", "image", ["--format", "precomputed", "--sharded"]),
    ("precomputed-png", "image", ["--format", "precomputed", "--encoding", "png"]),
    ("ome-zarr", "image", ["--format", "ome-zarr"]),
    ("ome-zarr-0.4", "image", ["--format", "ome-zarr", "--ngff-version", "0.4"]),
    ("ome-tiff", "image", ["--format", "ome-tiff", "--tile-size", "16"]),
    ("two-channels-zarr", "two", ["--format", "zarr"]),
    ("two-channels-precomputed", "two", ["--format", "precomputed"]),
    ("two-channels-ome-zarr", "two", ["--format", "ome-zarr"]),
    ("two-channels-ome-tiff", "two", ["--format", "ome-tiff", "--tile-size", "16"]),
    ("cells", "labels", ["--format", "precomputed", "--segmentation", "--mesh"]),
    ("cells-tiff", "labels", ["--format", "tiff", "--segmentation"]),
]


def _inputs(root: str) -> dict[str, str]:
    import tifffile

    from tests.helpers.stacks import make_volume, write_planes

    image = write_planes(os.path.join(root, "image"), make_volume((19, 45, 37), "uint16", seed=101))
    two = os.path.join(root, "two.ome.tif")
    tifffile.imwrite(two, np.stack([make_volume((13, 29, 35), "uint8", seed=s) for s in (102, 103)], axis=1),
                     ome=True, metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                                         "PhysicalSizeZ": 2.0, "Channel": {"Name": ["DAPI", "Membrane"]}})
    z, y, x = np.indices((17, 41, 39))
    labels = ((z // 6) * 9 + (y // 14) * 3 + x // 13 + 1).astype(np.uint32)
    labels[(z + y + x) % 11 == 0] = 0
    cells = write_planes(os.path.join(root, "labels"), labels)
    return {"image": image, "two": two, "labels": cells}


_UUID = re.compile(rb"urn:uuid:[0-9a-fA-F-]{36}")


def _digest_tree(root: str, tmp: str) -> dict[str, str]:
    """sha256 of every file under ``root`` but the bookkeeping, with what differs by nature from
    run to run made equal: the temporary directory ``tmp`` (source paths in info, block file
    paths in blockfs headers; replaced by as many characters, so lengths stay) and OME UUIDs."""
    placeholder = b"/" * len(tmp.encode())
    out = {}
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted(names):
            if n in BOOKKEEPING:
                continue
            path = os.path.join(base, n)
            with open(path, "rb") as f:
                data = _UUID.sub(b"urn:uuid:" + b"0" * 36, f.read().replace(tmp.encode(), placeholder))
            out[os.path.relpath(path, root)] = hashlib.sha256(data).hexdigest()
    return out


LIBRARIES = ("numpy", "tifffile", "imagecodecs", "zarr", "numcodecs", "compressed-segmentation", "zmesh", "DracoPy")


def library_versions() -> dict[str, str]:
    """The versions of the libraries whose encoders make the bytes (a new release may change them)."""
    from importlib.metadata import version

    return {name: version(name) for name in LIBRARIES}


def current_digests() -> dict[str, dict[str, str]]:
    """{case: {relative path: sha256}} of what this checkout writes for every case."""
    from precomputed_tif.cli.convert import main
    from precomputed_tif.cli.write_points import main as write_points

    out = {}
    with tempfile.TemporaryDirectory() as root:
        inputs = _inputs(root)
        for name, source, options in CASES:
            dest = os.path.join(root, "out", name)
            code = main(["--source", inputs[source], "--dest", dest, "--chunk-size", "16,16,16", "--n-cores", "1",
                         "--no-progress", *options] if "ome-tiff" not in options else
                        ["--source", inputs[source], "--dest", dest, "--n-cores", "1", "--no-progress", *options])
            assert code == 0, name
            out[name] = _digest_tree(dest, root)
        points = os.path.join(root, "points.json")
        rng = np.random.default_rng(104)
        with open(points, "w") as f:
            json.dump((rng.random((301, 3)) * [37, 45, 19]).round(3).tolist(), f)
        dest = os.path.join(root, "out", "points")
        assert write_points(["--input", points, "--output-directory", dest, "--voxel-size", "1,1,2"]) == 0
        out["points"] = _digest_tree(dest, root)
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    digests = current_digests()
    with open(RECORDED, "w") as f:
        json.dump({"libraries": library_versions(), "digests": digests}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {RECORDED}: {sum(len(v) for v in digests.values())} files in {len(digests)} cases")
