"""Chunk stores, one per on-disk format, behind one interface (:class:`ChunkStore`)."""

from __future__ import annotations

from .. import formats
from ..errors import PrecomputedTifError
from ..info import INFO, VolumeInfo
from ..storage import Storage, StorageLike, open_storage
from .store import ChunkStore


def store_class(format: str) -> type[ChunkStore]:
    """The store class for a format name (or alias), or a user error listing the formats there are."""
    fmt = formats.get(format)
    if not fmt.chunked:
        raise PrecomputedTifError(f"--format {fmt.name} is not a chunked dataset; choose one of: "
                                  f"{', '.join(sorted(formats.names(chunked=True)))}")
    return fmt.store_class()


def open_store(root: StorageLike, info: dict | VolumeInfo, format: str | None = None) -> ChunkStore:
    """The store of an existing dataset (a Storage, or a local path or ``file://`` URL) whose
    ``info`` is given (a dict or a :class:`~..info.VolumeInfo`); the format is detected when not
    given."""
    storage = open_storage(root)
    if format is None:
        format = detect_format(storage, info)
    cls = store_class(format)
    if not cls.holds(storage, _first_key(storage, info)):
        found = detect_format(storage, info)
        raise PrecomputedTifError(
            f"{storage.location()} holds {found} chunks, not {format}; leave out the format to detect it")
    return cls(storage, info)


def detect_format(root: StorageLike, info: dict | VolumeInfo) -> str:
    """Which format the first scale holds, or a user error."""
    storage = open_storage(root)
    level_key = _first_key(storage, info)
    for name in formats.names(chunked=True):
        if formats.get(name).store_class().holds(storage, level_key):
            return name
    raise PrecomputedTifError(
        f"cannot tell the format of {storage.location()}: {storage.location(level_key)} holds no chunks of any "
        f"format ({', '.join(formats.names(chunked=True))})"
    )


def _first_key(storage: Storage, info: dict | VolumeInfo) -> str:
    """The key of the finest scale (where a format's chunks are looked for)."""
    return VolumeInfo.of(info, storage.location(INFO)).scales[0].key
