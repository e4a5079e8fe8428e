"""Chunk stores, one per on-disk format, behind one interface (:class:`ChunkStore`)."""

from __future__ import annotations

import os

from .. import formats
from ..errors import PrecomputedTifError
from .store import ChunkStore


def store_class(format: str) -> type[ChunkStore]:
    """The store class for a format name (or alias), or a user error listing the formats there are."""
    fmt = formats.get(format)
    if not fmt.chunked:
        raise PrecomputedTifError(f"--format {fmt.name} is not a chunked dataset; choose one of: "
                                  f"{', '.join(sorted(formats.names(chunked=True)))}")
    return fmt.store_class()


def open_store(root: str, info: dict, format: str | None = None) -> ChunkStore:
    """The store of an existing dataset; the format is detected when not given."""
    if format is None:
        format = detect_format(root, info)
    cls = store_class(format)
    level_dir = os.path.join(root, info["scales"][0]["key"])
    if not (os.path.isdir(level_dir) and cls.holds(level_dir)):
        found = detect_format(root, info)
        raise PrecomputedTifError(f"{root} holds {found} chunks, not {format}; leave out the format to detect it")
    return cls(root, info)


def detect_format(root: str, info: dict) -> str:
    """Which format the first scale's directory holds, or a user error."""
    level_dir = os.path.join(root, info["scales"][0]["key"])
    if os.path.isdir(level_dir):
        for name in formats.names(chunked=True):
            if formats.get(name).store_class().holds(level_dir):
                return name
    raise PrecomputedTifError(
        f"cannot tell the format of {root}: {level_dir} holds no chunks of any format "
        f"({', '.join(formats.names(chunked=True))})"
    )
