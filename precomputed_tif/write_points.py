"""``precomputed-write-points``: cell centres (JSON or CSV) to a Neuroglancer point annotation layer."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys

import numpy as np

from .annotations import DEFAULT_LIMIT, SHARD_ABOVE, PointSet, Property, write_points
from .cli_support import add_log_argument, run_main, setup_logging
from .errors import PrecomputedTifError
from .geometry import DEFAULT_VOXEL_SIZE_UM, parse_triple

_PROPERTY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_INT_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32")


def read_points(path: str) -> tuple[np.ndarray, dict[str, list]]:
    """(n, 3) float64 x, y, z and the extra columns by name, from a JSON or CSV file.

    JSON: a list of ``[x, y, z]`` (more numbers per point are not allowed), or a
    list of objects with ``x``, ``y``, ``z`` and other keys. CSV: a header row
    naming ``x``, ``y``, ``z`` and any other columns.
    """
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise PrecomputedTifError(f"--input {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PrecomputedTifError(f"--input {path} is not readable text ({exc})") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PrecomputedTifError(f"--input {path} is not valid JSON ({exc})") from None
        return _from_json(data, path)
    return _from_csv(text, path)


def _from_json(data, path: str):
    if not isinstance(data, list):
        raise PrecomputedTifError(f"--input {path} must hold a JSON list of points, like [[x, y, z], ...]")
    if not data:
        raise PrecomputedTifError(f"--input {path} holds no points")
    if all(isinstance(p, dict) for p in data):
        keys = list(dict.fromkeys(k for p in data for k in p))
        columns = {k: [p.get(k) for p in data] for k in keys}
        return _split(columns, path)
    try:
        points = np.array(data, dtype=np.float64)
    except (ValueError, TypeError):
        points = None
    if points is None or points.ndim != 2 or points.shape[1] != 3:
        bad = next((i for i, p in enumerate(data)
                    if not (isinstance(p, list) and len(p) == 3
                            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p))), 0)
        raise PrecomputedTifError(
            f"--input {path}: point {bad} is {json.dumps(data[bad])[:60]}; every point must be [x, y, z] numbers")
    return points, {}


def _from_csv(text: str, path: str):
    rows = list(csv.reader(line for line in text.splitlines() if line.strip()))
    if len(rows) < 2:
        raise PrecomputedTifError(f"--input {path} is neither a JSON list of points nor a CSV with x,y,z columns")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise PrecomputedTifError(f"--input {path}: the CSV header repeats a column name")
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise PrecomputedTifError(f"--input {path}: line {i} has {len(row)} values, the header {len(header)}")
    columns = {h: [r[j].strip() for r in rows[1:]] for j, h in enumerate(header)}
    return _split(columns, path)


def _split(columns: dict[str, list], path: str):
    lower = {k.lower(): k for k in columns}
    if not all(a in lower for a in "xyz"):
        raise PrecomputedTifError(
            f"--input {path} has no x, y and z columns (it has: {', '.join(list(columns)[:8])})")
    xyz = []
    for a in "xyz":
        values = columns.pop(lower[a])
        try:
            xyz.append(np.array([float(v) for v in values], np.float64))
        except (TypeError, ValueError):
            bad = next(i for i, v in enumerate(values) if not _is_number(v))
            raise PrecomputedTifError(f"--input {path}: point {bad} has {a} = {values[bad]!r}, not a number") from None
    return np.stack(xyz, axis=1), columns


def _is_number(v) -> bool:
    try:
        float(v)
        return not isinstance(v, bool) and v is not None
    except (TypeError, ValueError):
        return False


def make_property(name: str, values: list, path: str) -> Property:
    """A property from a column: integers get the smallest type that holds them, other numbers
    float32, text becomes an enumeration (values 0, 1, ... with the texts as labels)."""
    pid = re.sub(r"[^a-zA-Z0-9_]", "_", name.strip())
    if not pid or not pid[0].isalpha():
        pid = "p_" + pid
    pid = pid[0].lower() + pid[1:]
    description = None if pid == name else name
    if not _PROPERTY_ID.match(pid):
        raise PrecomputedTifError(f"--input {path}: column {name!r} cannot be named as a property")
    if all(_is_number(v) for v in values):
        array = np.array([float(v) for v in values])
        if not np.isfinite(array).all():
            raise PrecomputedTifError(f"--input {path}: column {name!r} holds NaN or infinite values")
        if (array == np.round(array)).all():
            for t in _INT_TYPES:
                info = np.iinfo(t)
                if array.min() >= info.min and array.max() <= info.max:
                    return Property(pid, t, array.astype(t), description)
        return Property(pid, "float32", array.astype(np.float32), description)
    if any(v is None or isinstance(v, (dict, list, bool)) for v in values):
        raise PrecomputedTifError(f"--input {path}: column {name!r} must hold numbers or text for every point")
    labels = sorted({str(v) for v in values})
    if len(labels) > 65536:
        raise PrecomputedTifError(f"--input {path}: column {name!r} has {len(labels)} different texts; at most 65536")
    codes = {label: i for i, label in enumerate(labels)}
    t = "uint8" if len(labels) <= 256 else "uint16"
    return Property(pid, t, np.array([codes[str(v)] for v in values], t), description, labels)


def point_set(points: np.ndarray, extra: dict, lower=None, upper=None, path: str = "input") -> PointSet:
    """Check points and bounds; a user error says what is wrong, with counts and an example."""
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PrecomputedTifError(
            f"{path}: {int(bad.sum())} points have NaN or infinite coordinates, e.g. point {i}: {points[i].tolist()}")
    lo = np.zeros(3) if lower is None else np.asarray(lower, np.float64)
    hi = (np.floor(points.max(axis=0)) + 1 if upper is None else np.asarray(upper, np.float64))
    if upper is None:
        hi = np.maximum(hi, lo + 1)
    if (lo >= hi).any():
        raise PrecomputedTifError(f"--lower-bound {lo.tolist()} must be below --upper-bound {hi.tolist()} on every axis")
    outside = ((points < lo) | (points >= hi)).any(axis=1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise PrecomputedTifError(
            f"{path}: {int(outside.sum())} of {len(points)} points lie outside [{lo.tolist()}, {hi.tolist()}) "
            f"(upper bound exclusive), e.g. point {i}: {points[i].tolist()}")
    props = [make_property(name, values, path) for name, values in extra.items()]
    ids = [p.id for p in props]
    if len(set(ids)) != len(ids):
        raise PrecomputedTifError(f"{path}: two columns give the same property name ({', '.join(ids)})")
    return PointSet(points, lo, hi, props)


def _check_output(directory: str) -> None:
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise PrecomputedTifError(f"--output-directory {directory} is a file")
    if os.path.isdir(directory) and [e for e in os.listdir(directory) if not e.startswith(".")]:
        raise PrecomputedTifError(
            f"--output-directory {directory} is not empty; choose a new or empty directory")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="precomputed-write-points",
        description="Write cell centres as a Neuroglancer point annotation layer (precomputed format) "
                    "that loads fast at any zoom, even with millions of points.",
        epilog="examples:\n"
               "  precomputed-write-points --input cells.json --output-directory /data/precomputed/cells\n"
               "  precomputed-write-points --input cells.csv --output-directory cells --voxel-size 0.4,0.4,2\n\n"
               "cells.json is [[x, y, z], ...] in voxels of the image; a CSV needs a header with x,y,z and\n"
               "may add columns (intensity, size, class ...) that Neuroglancer shows as properties.\n"
               "Serve the directory (precomputed-webserver --directory DIR) and add it as a layer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", required=True, metavar="POINTS", help="JSON list of [x, y, z], or CSV with x,y,z columns")
    p.add_argument("--output-directory", required=True, metavar="DIR", help="new or empty directory for the layer")
    p.add_argument("--voxel-size", default="1.8,1.8,2.0", metavar="X,Y,Z",
                   help="voxel size in microns, as given to precomputed-tif (default: 1.8,1.8,2.0)")
    p.add_argument("--lower-bound", metavar="X,Y,Z", help="lower corner in voxels (default: 0,0,0)")
    p.add_argument("--upper-bound", metavar="X,Y,Z",
                   help="upper corner in voxels, exclusive (default: largest coordinate + 1); "
                        "the image size is a good choice")
    p.add_argument("--no-by-id", action="store_true", help="do not write the index by annotation id")
    p.add_argument("--sharded", action="store_true", default=None,
                   help=f"store the indexes in a few shard files (default above {SHARD_ABOVE:,} points)")
    p.add_argument("--unsharded", action="store_false", dest="sharded",
                   help="one file per cell and per point, whatever the count")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"points per cell (default {DEFAULT_LIMIT:,})")
    add_log_argument(p)
    return p


def _bound(text: str | None, what: str):
    if text is None:
        return None
    parts = [t.strip() for t in text.split(",")]
    try:
        values = [float(t) for t in parts]
    except ValueError:
        values = []
    if len(values) != 3 or not all(np.isfinite(values)):
        raise PrecomputedTifError(f"{what} must be three numbers x,y,z; got {text!r}")
    return values


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)

    def body():
        voxel_size = parse_triple(args.voxel_size, "--voxel-size", integer=False)
        lower, upper = _bound(args.lower_bound, "--lower-bound"), _bound(args.upper_bound, "--upper-bound")
        if args.limit < 1:
            raise PrecomputedTifError("--limit must be at least 1")
        _check_output(args.output_directory)
        points, extra = read_points(args.input)
        ps = point_set(points, extra, lower, upper, args.input)
        info = write_points(ps, args.output_directory, voxel_size, sharded=args.sharded,
                            by_id=not args.no_by_id, limit=args.limit)
        kind = "sharded" if "sharding" in info["spatial"][0] else "unsharded"
        print(f"wrote {len(points):,} points in {len(info['spatial'])} spatial levels ({kind}) to "
              f"{args.output_directory}")

    return run_main("precomputed-write-points", body)


if __name__ == "__main__":
    sys.exit(main())
