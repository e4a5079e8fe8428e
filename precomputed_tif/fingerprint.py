"""What a conversion's source is, so that a rerun resumes only the same source.

A resumed conversion keeps the chunks an earlier run wrote and writes the rest:
that is right only when the source is the one the earlier run read. Planes
exported again under the same names would otherwise give a dataset whose chunks
(and the coarser levels made from them) mix two sources, with nothing to show it.

Each input file is identified by its size and modification time in nanoseconds
(what ``make`` and ``rsync`` trust), plus, for TIFF input, where each plane was
found in it (page offsets: the page layout). A dataset given as the source is
identified by its ``info``, its conversion record and its full-resolution
level's directory entries (names, sizes, modification times): rewriting a
chunk replaces its file, which changes the entry. Stat calls only: no pixel is
read, so identifying 10,000 planes costs milliseconds next to opening them.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import NamedTuple


class Identity(NamedTuple):
    """``digest`` (hex) covers everything; ``files`` lists [path, size, mtime_ns] of each
    input file, in the source's order, to name the first one that changed."""

    digest: str
    files: list


def _stat(path: str) -> list:
    try:
        st = os.stat(path)
    except OSError:
        return [path, None, None]
    return [path, st.st_size, st.st_mtime_ns]


def identify(source) -> Identity:
    """The identity of an opened source (a :class:`~.source.PlaneStack` or a
    :class:`~.sources.DatasetSource`), as it is on disk now."""
    if hasattr(source, "planes"):  # TIFF planes: the files and where each plane sits in them
        files = [_stat(os.path.abspath(p)) for p in source.files]
        layout = [list(ref) for ref in source.planes]
        extra: list = [list(source.plane_shape), source.stored_dtype, layout]
    else:  # a dataset directory
        root = source.path
        files = [_stat(os.path.join(root, n)) for n in ("info", ".precomputed-tif.json")]
        level = os.path.join(root, source.info["scales"][0]["key"])
        try:
            with os.scandir(level) as it:
                entries = sorted(_stat(e.path) for e in it)
        except OSError:
            entries = []
        files.append(_stat(level))
        extra = [entries]
    blob = json.dumps([files, extra], separators=(",", ":")).encode()
    return Identity(hashlib.sha256(blob).hexdigest(), files)


def first_change(recorded: list, now: list) -> str:
    """What changed between two :attr:`Identity.files` lists, in words: the first file that
    differs, or the source's other contents."""
    for old, new in zip(recorded, now):
        if not (isinstance(old, list) and len(old) == 3):
            break
        if old[0] != new[0]:
            return f"{new[0]} is not the file it was ({old[0]})"
        if new[1] is None:
            return f"{new[0]} is missing"
        if old[1:] != new[1:]:
            what = "is another size" if old[1] != new[1] else "was modified"
            return f"{new[0]} {what} since then"
    if len(recorded) != len(now):
        return f"it had {len(recorded)} files and has {len(now)} now"
    return "the layout of its planes, or the dataset's chunks, changed"
