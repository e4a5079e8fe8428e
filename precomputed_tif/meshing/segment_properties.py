"""Segment properties (``segment_properties.md``): what Neuroglancer's segment list shows.

Every label of the segmentation gets its voxel count and volume; a CSV file
the user gives adds names, tags, a description and further columns. The
properties are written inline, in the object ``segment_properties/info`` of the
dataset's storage.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any

import numpy as np

from ..errors import PrecomputedTifError
from ..storage import StorageLike, open_storage

PROPERTIES_DIR = "segment_properties"
ID_COLUMNS = ("id", "segment", "segment_id", "label")
NUMBER_TYPES = (("uint8", 0, 2**8 - 1), ("int8", -2**7, 2**7 - 1), ("uint16", 0, 2**16 - 1),
                ("int16", -2**15, 2**15 - 1), ("uint32", 0, 2**32 - 1), ("int32", -2**31, 2**31 - 1))


def read_properties_csv(path: str) -> dict:
    """``{"ids": [int], "name": [str] | None, "tags": [[str]] | None, "description": [...] | None,
    "columns": {column: [str]}}`` from a CSV file with a header row and an ``id`` column.

    ``name``, ``tags`` (separated by ``;``) and ``description`` are Neuroglancer's label,
    tags and description; every other column becomes a number property if all its
    values are numbers, else a text property. Columns may also be separated by tabs, or
    by semicolons as spreadsheets write CSV in some countries; tags are then separated by
    commas, and numbers may have a decimal comma.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise PrecomputedTifError(f"properties file {path} does not exist") from None
    except UnicodeDecodeError:
        raise PrecomputedTifError(f"properties file {path} is not UTF-8 text; save it as CSV (UTF-8)") from None
    except OSError as exc:
        raise PrecomputedTifError(f"cannot read properties file {path} ({exc.strerror})") from None
    first = text.split("\n", 1)[0]
    delimiter = next((d for d in (",", "\t", ";") if d in first), ",")
    tag_separator = "," if delimiter == ";" else ";"
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise PrecomputedTifError(f"cannot read properties file {path} ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise PrecomputedTifError(f"properties file {path} is empty; it needs a header row like: id,name,tags")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    id_col = next((lower.index(c) for c in ID_COLUMNS if c in lower), None)
    if id_col is None:
        raise PrecomputedTifError(
            f"properties file {path} has no id column; its header must name one (id, segment or label), "
            f"got {','.join(header)}")
    out: dict[str, Any] = {"ids": [], "name": None, "tags": None, "description": None, "columns": {}}
    special = {"name": "name", "tags": "tags", "description": "description"}
    cols = {}
    for i, h in enumerate(lower):
        if i == id_col or not header[i]:
            continue
        cols[i] = special.get(h, header[i])
    seen = set()
    values: dict[str, list[str]] = {c: [] for c in cols.values()}
    for n, row in enumerate(rows[1:], start=2):
        row = row + [""] * (len(header) - len(row))
        text = row[id_col].strip()
        try:
            seg = int(text)
            if seg <= 0 or seg >= 2**64:
                raise ValueError
        except ValueError:
            raise PrecomputedTifError(
                f"properties file {path}, line {n}: segment id {text!r} is not a whole number from 1 up") from None
        if seg in seen:
            raise PrecomputedTifError(f"properties file {path}, line {n}: segment {seg} appears twice")
        seen.add(seg)
        out["ids"].append(seg)
        for i, c in cols.items():
            values[c].append(row[i].strip())
    for c, v in values.items():
        if c == "tags":
            out["tags"] = [[re.sub(r"\s+", "_", t.strip()) for t in s.split(tag_separator) if t.strip()] for s in v]
        elif c in ("name", "description"):
            out[c] = v
        elif delimiter == ";":  # such spreadsheets also write decimal commas: 12,5
            out["columns"][c] = [re.sub(r"^(-?\d+),(\d+)$", r"\1.\2", t) for t in v]
        else:
            out["columns"][c] = v
    return out


def _number_property(name: str, texts: list[str]) -> dict | None:
    """A number property if every value is a number, else None (a column with empty cells
    stays text: Neuroglancer's numbers have no "missing")."""
    try:
        nums = [float(t) for t in texts]
    except ValueError:
        return None
    if not nums or not all(math.isfinite(x) for x in nums):
        return None
    if all(x.is_integer() for x in nums):
        lo, hi = min(nums), max(nums)
        for dtype, a, b in NUMBER_TYPES:
            if a <= lo and hi <= b:
                return {"id": name, "type": "number", "data_type": dtype, "values": [int(x) for x in nums]}
    return {"id": name, "type": "number", "data_type": "float32", "values": nums}


def build_properties(counts: dict[int, int], voxel_um3: float, user: dict | None) -> dict:
    """The ``info`` of the segment properties directory: every counted segment (and every segment
    the user's file names) with its voxel count, volume and the user's columns."""
    ids = sorted(set(counts) | set(user["ids"] if user else []))
    n = np.array([counts.get(i, 0) for i in ids], np.float64)
    props = []
    if user:
        row = {seg: r for r, seg in enumerate(user["ids"])}
        pick = lambda column, empty: [column[row[i]] if i in row else empty for i in ids]  # noqa: E731
        if user["name"] is not None:
            props.append({"id": "name", "type": "label", "values": pick(user["name"], "")})
        if user["description"] is not None:
            props.append({"id": "description", "type": "description", "values": pick(user["description"], "")})
        if user["tags"] is not None:
            per_segment = pick(user["tags"], [])
            tags = sorted({t for ts in per_segment for t in ts}, key=str.lower)
            number = {t: k for k, t in enumerate(tags)}
            props.append({"id": "tags", "type": "tags", "tags": tags,
                          "values": [sorted({number[t] for t in ts}) for ts in per_segment]})
        for column, texts in user["columns"].items():
            prop = _number_property(column, texts)
            if prop is None:
                props.append({"id": column, "type": "string", "values": pick(texts, "")})
            else:  # segments the file does not list get 0
                prop["values"] = pick(prop["values"], 0)
                props.append(prop)
    voxel_type = "uint32" if n.max(initial=0) < 2**32 else "float32"
    props.append({"id": "voxels", "type": "number", "data_type": voxel_type,
                  "description": "number of voxels at full resolution",
                  "values": [int(x) if voxel_type == "uint32" else float(x) for x in n]})
    props.append({"id": "volume_um3", "type": "number", "data_type": "float32",
                  "description": "volume in cubic microns (voxels times the voxel volume)",
                  "values": [float(np.float32(x * voxel_um3)) for x in n]})
    return {"@type": "neuroglancer_segment_properties",
            "inline": {"ids": [str(i) for i in ids], "properties": props}}


def write_properties(where: StorageLike, properties: dict) -> str:
    """Put ``properties`` (:func:`build_properties`) durably as ``segment_properties/info`` in
    ``where`` (a :class:`~precomputed_tif.storage.Storage`, or the dataset's path or URL);
    returns where the properties directory is, for messages."""
    storage = open_storage(where)
    storage.put(f"{PROPERTIES_DIR}/info", json.dumps(properties).encode() + b"\n", durable=True)
    return storage.location(PROPERTIES_DIR)
