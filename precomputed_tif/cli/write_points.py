"""``precomputed-write-points``: cell centres (JSON or CSV) to a Neuroglancer point annotation layer."""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import logging
import math
import re
import sys

import numpy as np

from ..annotations import DEFAULT_LIMIT, SHARD_ABOVE, PointSet, Property, check_directory, write_points
from ..errors import PrecomputedTifError
from ..geometry import DEFAULT_VOXEL_SIZE_UM, parse_triple
from ..info import read_volume_info
from ..storage import open_storage
from .support import add_cache_control_argument, add_log_argument, announce_bucket, parse_args, run_main, setup_logging

log = logging.getLogger(__name__)

_PROPERTY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_INT_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32")


def read_points(path: str) -> tuple[np.ndarray, dict[str, list]]:
    """(n, 3) float64 x, y, z and the extra columns by name, from a JSON or CSV file.

    JSON: a list of ``[x, y, z]`` (three JSON numbers; true, false, texts and
    more or fewer numbers are refused), or a list of objects with ``x``, ``y``,
    ``z`` (JSON numbers) and other keys. CSV: a header row naming ``x``, ``y``,
    ``z`` and any other columns; coordinates are decimal numbers. A point that
    breaks these rules is a user error naming the first such point and its value.
    NaN and infinite coordinates pass here and are refused by :func:`point_set`.
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
        except RecursionError:
            raise PrecomputedTifError(
                f"--input {path} nests lists or objects too deeply to be a list of points, "
                "like [[x, y, z], ...]") from None
        except ValueError as exc:
            raise PrecomputedTifError(f"--input {path} is not valid JSON ({exc})") from None
        return _from_json(data, path)
    return _from_csv(text, path)


# What a number looks like in a CSV: a decimal number, or NaN or infinity (which are refused
# later, with all such points counted). Python's float() would also take "1_000" and other digits.
_NUMBER_TEXT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:nan|inf|infinity))")
_MISSING = object()  # a key some JSON objects lack


def _as_number(value) -> float | None:
    """``value`` as a float if it is a number: a JSON number (not true or false; an integer
    beyond the float range is infinite) or a text spelling a decimal number, NaN or infinity."""
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER_TEXT.fullmatch(text):
            return float(text)
    return None


def _show(value, cell: bool = False, limit: int = 60) -> str:
    """``value`` as the user wrote it, cut to about ``limit`` characters: JSON for a JSON value
    (however deep or long), quoted for a CSV ``cell``."""
    if cell:
        return repr(value if len(value) <= limit else value[:limit] + "...")
    text = ""
    try:
        for chunk in json.JSONEncoder().iterencode(value):
            text += chunk
            if len(text) > limit:
                break
    except RecursionError:
        pass
    return text if len(text) <= limit else text[:limit] + "..."


def _triple_problem(point) -> str | None:
    """What keeps a JSON value from being a point ``[x, y, z]``, or None."""
    if type(point) is not list:
        return "not a list [x, y, z]"
    if len(point) != 3:
        return f"{len(point)} value{'s' if len(point) != 1 else ''}, not 3"
    for axis, v in zip("xyz", point):
        if type(v) not in (int, float):
            return f"{axis} = {_show(v)} is not a number"
    return None


def _from_json(data, path: str):
    if not isinstance(data, list):
        raise PrecomputedTifError(f"--input {path} must hold a JSON list of points, like [[x, y, z], ...]")
    if not data:
        raise PrecomputedTifError(f"--input {path} holds no points")
    if isinstance(data[0], dict):
        bad = next((i for i, p in enumerate(data) if not isinstance(p, dict)), None)
        if bad is not None:
            raise PrecomputedTifError(
                f"--input {path}: point {bad} is {_show(data[bad])}; like point 0, every point must be an "
                "object with x, y and z")
        keys = list(dict.fromkeys(k for p in data for k in p))
        columns = {k: [p.get(k, _MISSING) for p in data] for k in keys}
        return _split(columns, path)
    # Checking the types first keeps true, false and texts out (numpy would take them as numbers).
    if (all(type(p) is list and len(p) == 3 for p in data)
            and set(map(type, itertools.chain.from_iterable(data))) <= {int, float}):
        try:
            return np.array(data, np.float64), {}
        except OverflowError:  # an integer beyond the float range: infinite, refused with the others
            return np.array([[_as_number(v) for v in p] for p in data], np.float64), {}
    bad = next(i for i, p in enumerate(data) if _triple_problem(p))
    raise PrecomputedTifError(
        f"--input {path}: point {bad} is {_show(data[bad])} ({_triple_problem(data[bad])}); "
        "every point must be [x, y, z], three numbers")


def _from_csv(text: str, path: str):
    rows, lines = [], []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise PrecomputedTifError(f"--input {path}: line {reader.line_num} is not CSV ({exc})") from None
    if len(rows) < 2:
        raise PrecomputedTifError(f"--input {path} is neither a JSON list of points nor a CSV with x,y,z columns")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise PrecomputedTifError(f"--input {path}: the CSV header repeats a column name")
    for row, line in zip(rows[1:], lines[1:]):
        if len(row) != len(header):
            raise PrecomputedTifError(f"--input {path}: line {line} has {len(row)} values, the header {len(header)}")
    columns = {h: [r[j].strip() for r in rows[1:]] for j, h in enumerate(header)}
    return _split(columns, path, lines[1:])


def _split(columns: dict[str, list], path: str, lines: list[int] | None = None):
    """x, y, z out of ``columns`` (of JSON values, or of CSV texts when ``lines`` gives each
    point's line number) as an (n, 3) array, and the other columns."""
    lower = {k.lower(): k for k in columns}
    if not all(a in lower for a in "xyz"):
        raise PrecomputedTifError(
            f"--input {path} has no x, y and z columns (it has: {', '.join(list(columns)[:8])})")
    xyz = [columns.pop(lower[a]) for a in "xyz"]
    # A CSV cell must spell a number (_NUMBER_TEXT); a JSON value must be a JSON number, not
    # true, false or a text. Both checks run at C speed over a column when all is well.
    if lines is not None:
        def is_coordinate(v):
            return _NUMBER_TEXT.fullmatch(v) is not None

        valid = all(all(map(_NUMBER_TEXT.fullmatch, values)) for values in xyz)
    else:
        def is_coordinate(v):
            return type(v) in (int, float)

        valid = all(set(map(type, values)) <= {int, float} for values in xyz)
    if not valid:
        bad = next(i for i in range(len(xyz[0])) if not all(is_coordinate(values[i]) for values in xyz))
        axis, value = next((a, values[bad]) for a, values in zip("xyz", xyz) if not is_coordinate(values[bad]))
        where = f"point {bad}" + (f" (line {lines[bad]})" if lines is not None else "")
        what = f"no {axis}" if value is _MISSING else f"{axis} = {_show(value, lines is not None)}, not a number"
        raise PrecomputedTifError(f"--input {path}: {where} has {what}")
    try:
        points = np.array(xyz, np.float64)  # numpy parses the checked texts as float() does
    except OverflowError:  # a JSON integer beyond the float range: infinite, refused with the others
        points = np.array([[_as_number(v) for v in values] for values in xyz], np.float64)
    extra = {k: [None if v is _MISSING else v for v in values] for k, values in columns.items()}
    return np.ascontiguousarray(points.T), extra


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
    numbers = [_as_number(v) for v in values]
    if all(v is not None for v in numbers):
        array = np.array(numbers, np.float64)
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
    # Positions are stored as float32: beyond its range a point would be stored as infinite.
    huge = (np.abs(points) > np.finfo(np.float32).max).any(axis=1)
    if huge.any():
        i = int(np.flatnonzero(huge)[0])
        raise PrecomputedTifError(
            f"{path}: {int(huge.sum())} points have coordinates beyond ±3.4e38, which the format cannot store, "
            f"e.g. point {i}: {points[i].tolist()}")
    lo = np.zeros(3) if lower is None else np.asarray(lower, np.float64)
    if upper is None:
        top = points.max(axis=0)
        # Above 2**53, adding 1 changes nothing: then the next float up is the bound.
        hi = np.maximum(np.floor(top) + 1, np.nextafter(top, np.inf))
    else:
        hi = np.asarray(upper, np.float64)
    if upper is None:
        hi = np.maximum(hi, lo + 1)
    if (lo >= hi).any():
        raise PrecomputedTifError(
            f"--lower-bound {lo.tolist()} must be below --upper-bound {hi.tolist()} on every axis")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="precomputed-write-points",
        description="Write cell centres as a Neuroglancer point annotation layer (precomputed format) "
                    "that loads fast at any zoom, even with millions of points.",
        epilog="examples:\n"
               "  precomputed-write-points --input cells.json --dataset /data/precomputed \\\n"
               "      --output-directory /data/cells\n"
               "  precomputed-write-points --input cells.csv --output-directory cells --voxel-size 0.4,0.4,2\n\n"
               "cells.json is [[x, y, z], ...] in voxels of the image; a CSV needs a header with x,y,z and\n"
               "may add columns (intensity, size, class ...) that Neuroglancer shows as properties.\n"
               "--dataset takes the voxel size and bounds from the image the points belong to.\n"
               "Serve the directory (precomputed-webserver --directory DIR) and add it as a layer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", required=True, metavar="POINTS", help="JSON list of [x, y, z], or CSV with x,y,z columns")
    p.add_argument("--output-directory", required=True, metavar="DIR",
                   help="new or empty directory for the layer, or s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")
    p.add_argument("--dataset", metavar="DIR",
                   help="the image dataset the points belong to (a precomputed-tif output directory): "
                        "its voxel size and bounds are used")
    p.add_argument("--voxel-size", metavar="X,Y,Z",
                   help="voxel size in microns, as the image has it (default: the --dataset's; without "
                        "--dataset 1.8,1.8,2.0, with a warning)")
    p.add_argument("--lower-bound", metavar="X,Y,Z",
                   help="lower corner in voxels (default: the --dataset's, else 0,0,0)")
    p.add_argument("--upper-bound", metavar="X,Y,Z",
                   help="upper corner in voxels, exclusive (default: the --dataset's size, else the largest "
                        "coordinate + 1)")
    p.add_argument("--no-by-id", action="store_true", help="do not write the index by annotation id")
    p.add_argument("--sharded", action="store_true", default=None,
                   help=f"store the indexes in a few shard files (default above {SHARD_ABOVE:,} points)")
    p.add_argument("--unsharded", action="store_false", dest="sharded",
                   help="one file per cell and per point, whatever the count")
    add_cache_control_argument(p)
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


def dataset_frame(directory: str) -> tuple[tuple[float, float, float], list[float], list[float]]:
    """(voxel size in µm, lower and upper bound in voxels, x, y, z, upper exclusive) of the
    full-resolution scale of the image dataset in ``directory`` (from its ``info``)."""
    info = read_volume_info(directory)  # a user error naming the field when it is not readable
    if info.volume_type not in (None, "image", "segmentation"):
        raise PrecomputedTifError(f"--dataset {directory} is not an image dataset")
    scale = info.scales[0]
    offset = [float(v) for v in scale.voxel_offset]
    size = [float(v) for v in scale.size]
    return info.voxel_size_um, offset, [o + n for o, n in zip(offset, size)]


def _frame(args) -> tuple[tuple[float, float, float] | None, list[float] | None, list[float] | None]:
    """The voxel size and bounds to write with: the flags', else the --dataset's, else (voxel
    size None) the default."""
    given = parse_triple(args.voxel_size, "--voxel-size", integer=False) if args.voxel_size else None
    lower, upper = _bound(args.lower_bound, "--lower-bound"), _bound(args.upper_bound, "--upper-bound")
    if args.dataset is None:
        return given, lower, upper
    voxel, d_lower, d_upper = dataset_frame(args.dataset)
    if given is not None and not all(abs(a - b) <= 1e-6 * max(abs(a), abs(b)) for a, b in zip(given, voxel)):
        raise PrecomputedTifError(
            f"--voxel-size {args.voxel_size} differs from the voxel size of --dataset {args.dataset} "
            f"({','.join(f'{v:g}' for v in voxel)} µm); leave one of them out")
    return voxel, d_lower if lower is None else lower, d_upper if upper is None else upper


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.log)

    def body():
        voxel_size, lower, upper = _frame(args)
        if not 1 <= args.limit <= 2**32 - 1:
            raise PrecomputedTifError(f"--limit must be from 1 to {2**32 - 1:,}; got {args.limit}")
        output = open_storage(args.output_directory, "--output-directory", cache_control=args.cache_control)
        check_directory(output, "--output-directory")
        points, extra = read_points(args.input)
        ps = point_set(points, extra, lower, upper, args.input)
        info = write_points(ps, output, voxel_size or DEFAULT_VOXEL_SIZE_UM, sharded=args.sharded,
                            by_id=not args.no_by_id, limit=args.limit)
        kind = "sharded" if "sharding" in info["spatial"][0] else "unsharded"
        print(f"wrote {len(points):,} points in {len(info['spatial'])} spatial levels ({kind}) to "
              f"{args.output_directory}")
        if voxel_size is None:
            # Said after the layer is written: a mistake or a fault stays the one line printed.
            log.warning("no --dataset or --voxel-size: assumed %s µm voxels; if the image's differ, write the "
                        "layer again into an empty directory with --dataset DIR (or --voxel-size X,Y,Z)",
                        ",".join(f"{v:g}" for v in DEFAULT_VOXEL_SIZE_UM))
        announce_bucket("precomputed-write-points", output, info, None, points=True)

    return run_main("precomputed-write-points", body)


if __name__ == "__main__":
    sys.exit(main())
