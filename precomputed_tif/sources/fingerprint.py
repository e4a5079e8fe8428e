"""What a conversion's source is, so that a rerun resumes only the same source.

A resumed conversion keeps the chunks an earlier run wrote and writes the rest:
that is right only when the source is the one the earlier run read. Planes
exported again under the same names would otherwise give a dataset whose chunks
(and the coarser levels made from them) mix two sources, with nothing to show it.

Each input file is identified by its size and modification time in nanoseconds
(what ``make`` and ``rsync`` trust), plus, for TIFF input, where each plane was
found in it (page offsets: the page layout). A dataset given as the source is
identified by the contents of its ``info`` and conversion record (a rerun of
the conversion that made it rewrites them, byte for byte the same) and by the
name, size and modification time of every file of its full-resolution level,
at any depth (Zarr keeps chunks in nested directories). Stat calls only, no
pixel is read: a stat per plane or chunk file, streamed into the digest.

A plane in a bucket is identified by its URL, size and ETag (a new upload of the
same bytes may keep it; of other bytes never does), or its modification time
where the store gives no ETag, taken from one listing of the objects beside it
rather than a request per plane; an OME-Zarr in a bucket by its metadata's
contents and the key, size and ETag of every object of its full-resolution level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import NamedTuple

from ..errors import PrecomputedTifError
from ..info import INFO, JOB_RECORD
from ..storage import AccessDenied, ObjectStat, Storage, is_bucket_url, object_at, open_storage
from ..storage.regular_files import open_regular
from .ome_zarr import OmeZarrSource

log = logging.getLogger(__name__)

# Which way of identifying a source a recorded digest was made by ("1:<sha256>"): a version that
# identifies sources otherwise cannot compare, and says so rather than call the source changed.
SCHEME = "1"


class Identity(NamedTuple):
    """``digest`` (hex) covers everything; ``files`` lists [path, size, mtime_ns] of each
    input file, in the source's order, to name the first one that changed."""

    digest: str
    files: list


def _stat(path: str) -> list:
    """[path, size, mtime_ns] of a local file ([path, None, None] when it cannot be stat'ed)."""
    try:
        st = os.stat(path)
    except OSError:
        return [path, None, None]
    return [path, st.st_size, st.st_mtime_ns]


def _object_stats(urls) -> dict[str, list]:
    """[url, size, ETag (or mtime_ns)] of each object URL ([url, None, None] when absent): one
    listing per folder holding several of them, one request for an object alone in its folder."""
    folders: dict[str, list[str]] = {}
    for url in urls:
        folders.setdefault(url.rsplit("/", 1)[0], []).append(url)
    stats: dict[str, list] = {}
    for folder, members in folders.items():
        if len(members) == 1:
            bucket, key = object_at(members[0])
            found = {members[0]: bucket.stat(key)}
        else:
            storage = open_storage(folder)
            found = {storage.location(key): st for key, st in storage.list_stats() if "/" not in key}
        for url in members:
            st = found.get(url)
            stats[url] = [url, None, None] if st is None else [url, st.size, _object_version(st)]
    return stats


def _object_version(st: ObjectStat):
    """An object's ETag, or its modification time (ns) where the store gives none."""
    etag = st.version[0] if isinstance(st.version, tuple) else None
    return etag if etag else st.mtime_ns


def _content(storage: Storage, key: str) -> list:
    """[location, size, sha256 of the bytes] of a small metadata object ([location, None, None]
    when absent or unreadable)."""
    path = storage.location(key)
    try:
        data = storage.get(key)
    except (OSError, PrecomputedTifError):
        data = None
    if data is None:
        return [path, None, None]
    return [path, len(data), hashlib.sha256(data).hexdigest()]


def identify(source) -> Identity:
    """The identity of an opened source (a :class:`~.source.PlaneStack`, a
    :class:`~.sources.DatasetSource` or an :class:`~.ome_zarr.OmeZarrSource`), as it is on disk now."""
    digest = hashlib.sha256()
    if hasattr(source, "planes"):  # TIFF planes: the files and where each plane sits in them
        objects = _object_stats([p for p in source.files if is_bucket_url(p)])
        files = [objects[p] if p in objects else _stat(os.path.abspath(p)) for p in source.files]
        layout = [list(ref) for ref in source.planes]
        digest.update(json.dumps([files, list(source.plane_shape), source.stored_dtype, layout],
                                 separators=(",", ":")).encode())
    elif isinstance(source, OmeZarrSource):
        files = _identify_ome_zarr(source, digest)
    elif hasattr(source, "image"):  # a microscope file: the files, and which of its images is read
        files = [_stat(os.path.abspath(p)) for p in source.files]
        image = source.image
        digest.update(json.dumps([files, source.series, list(image.shape), image.dtype, image.n_channels,
                                  image.n_timepoints, repr(image.key)], separators=(",", ":")).encode())
        for path in source.files:
            if os.path.isdir(path):  # an N5 container: every file in it, by stat
                for root, dirs, names in os.walk(path):
                    dirs.sort()
                    for name in sorted(names):
                        full = os.path.join(root, name)
                        digest.update(json.dumps([os.path.relpath(full, path), *_stat(full)[1:]]).encode())
    else:  # a dataset: its metadata by content, its full-resolution files by stat
        storage = source.storage
        files = [_content(storage, n) for n in (INFO, JOB_RECORD)]
        digest.update(json.dumps(files, separators=(",", ":")).encode())
        level = source.volume_info.keys[0]
        # In the order of a walk of the level's directory (a directory's files, then its
        # subdirectories, each sorted), which digests made before the storage seam followed.
        entries = sorted(_listed(storage, level), key=lambda e: _walk_order(e[0][len(level) + 1:]))
        for key, st in entries:
            name = key.rsplit("/", 1)[-1]
            if not name.startswith("."):  # the store's own records (checksums) say nothing new
                digest.update(json.dumps([st.size, st.mtime_ns, name]).encode())
    return Identity(f"{SCHEME}:{digest.hexdigest()}", files)


def _listed(storage: Storage, level: str) -> list[tuple[str, ObjectStat]]:
    """``storage.list_stats(level)``; empty, with a warning, where a bucket lets its objects be
    read but not listed: the source is then known by its metadata alone."""
    try:
        return list(storage.list_stats(level))
    except AccessDenied:
        log.warning("%s cannot be listed (its bucket lets objects be read, not listed): the source is known by "
                    "its metadata alone, so were its voxels replaced between this run and a rerun, the rerun "
                    "would not notice", storage.location(level))
        return []


def _identify_ome_zarr(source: OmeZarrSource, digest) -> list:
    """Adds an OME-Zarr's identity to ``digest``: its metadata by content, its full-resolution
    level's files by stat (objects in a bucket by key, size and ETag); returns the metadata's
    [path, size, sha256] list."""
    if is_bucket_url(source.path):
        storage = open_storage(source.path)
        files = [_content(storage, name) for name in _ome_zarr_metadata(source)]
        digest.update(json.dumps(files, separators=(",", ":")).encode())
        level = source.array
        for key, stat in sorted(_listed(storage, level)):
            digest.update(json.dumps([stat.size, _object_version(stat), key[len(level) + 1:]]).encode())
        return files
    files = [_file_content(source.path, name) for name in _ome_zarr_metadata(source)]
    digest.update(json.dumps(files, separators=(",", ":")).encode())
    level = source.location
    for dirpath, dirnames, names in os.walk(level):
        dirnames.sort()
        for name in sorted(names):
            st = os.stat(os.path.join(dirpath, name))
            digest.update(json.dumps([st.st_size, st.st_mtime_ns, os.path.relpath(os.path.join(dirpath, name),
                                                                                   level)]).encode())
    return files


def _file_content(root: str, relative: str) -> list:
    """[path, size, sha256 of the bytes] of a small local metadata file ([path, None, None] when
    absent or unreadable)."""
    path = os.path.join(root, relative)
    f = open_regular(path)
    if f is None:
        return [path, None, None]
    try:
        with f:
            data = f.read()
    except OSError:
        return [path, None, None]
    return [path, len(data), hashlib.sha256(data).hexdigest()]


def _ome_zarr_metadata(source: OmeZarrSource) -> list[str]:
    """The metadata files (relative paths) of an OME-Zarr source: of every group from the top to
    its full-resolution level, and of the level's array, in either Zarr version."""
    parts = source.array.split("/")
    names = []
    for depth in range(len(parts) + 1):
        for name in ("zarr.json", ".zattrs", ".zarray"):
            names.append("/".join([*parts[:depth], name]))
    return names


def _walk_order(relative_key: str) -> tuple:
    """Sort key putting a directory's objects before its subdirectories' (``os.walk``'s
    top-down order with sorted names)."""
    *dirs, name = relative_key.split("/")
    return (*((1, d) for d in dirs), (0, name))


def comparable(recorded: str) -> bool:
    """Whether a recorded digest was made the way :func:`identify` makes them now."""
    return recorded.partition(":")[0] == SCHEME and ":" in recorded
def first_change(recorded: list | None, now: list) -> str:
    """What changed between two :attr:`Identity.files` lists, in words: the first file that
    differs, or the source's other contents. ``recorded`` None: the list was lost."""
    if recorded is None:
        return "its record of the input files is missing, so it cannot be told what changed"
    for old, new in zip(recorded, now):
        if not (isinstance(old, list) and len(old) == 3):
            break
        if old[0] != new[0]:
            return f"{new[0]} is not the file it was ({old[0]})"
        if old[1:] == new[1:]:
            continue  # (a file absent then as now, too: a metadata file of the other Zarr version)
        if new[1] is None:
            return f"{new[0]} is missing"
        if old[1] is None:
            return f"{new[0]} was added since then"
        what = "is another size" if old[1] != new[1] else "was modified"
        if os.path.basename(new[0]) in (INFO, JOB_RECORD):
            what = "changed"  # a dataset's metadata, identified by content
        return f"{new[0]} {what} since then"
    if len(recorded) != len(now):
        return f"it had {len(recorded)} files and has {len(now)} now"
    return "the layout of its planes, or the dataset's full-resolution files, changed"
