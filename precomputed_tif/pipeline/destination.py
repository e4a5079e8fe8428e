"""Deciding whether a ``--dest`` directory may be written, and clearing it on ``--overwrite``.

A conversion records what it is making in ``.precomputed-tif.json`` before it
writes any chunk, and writes ``info`` only when every chunk is written. So a
directory with ``info`` is a complete dataset, and one with only the record is
a conversion that did not finish.

The record also holds the source's fingerprint (:mod:`.fingerprint`), and
``.precomputed-tif-inputs.json`` the size and modification time of every input
file: a rerun resumes only when the source is unchanged, and otherwise names
the first file that changed.

A conversion that makes files rather than a precomputed dataset (``--format
ome-tiff``) lists them in its record under ``files``, the first being the one
that appears only when the conversion finished; ``--overwrite`` removes them
as it removes ``info`` and the scale directories.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re

from .. import formats
from ..errors import PrecomputedTifError, param, setting
from ..info import INFO, JOB_RECORD
from ..sources.fingerprint import Identity, comparable, first_change
from ..storage import Storage, StorageLike, open_storage
from ..storage.atomic import is_temporary_name
from ..storage.trees import holds, local_location, remove_tree, top_names
from .progress import DONE_LOG, DONE_OBJECTS

log = logging.getLogger(__name__)

INPUTS = ".precomputed-tif-inputs.json"
_SCALE_DIR = re.compile(r"^(\d+_\d+_\d+|\d+)$")  # factor keys, or OME-Zarr's numbered levels


def _load_json(storage: Storage, key: str):
    """The JSON object ``key`` holds: None when there is none, ``{}`` when it does not read or parse
    (a record that says nothing matches no job). A FIFO or a symlink out of the directory in its
    place is a user error (:class:`~.storage.LocalStorage` refuses it)."""
    try:
        data = storage.get(key)
    except OSError:
        return {}
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {}


def prepare(dest: StorageLike, job: dict, overwrite: bool, identity: Identity | None = None) -> None:
    """Make ``dest`` (a directory's path or URL, or a :class:`~.storage.Storage`) ready for
    ``job`` on a source whose :func:`~.fingerprint.identify` is ``identity``, or raise a user
    error and change nothing.

    Allowed without ``overwrite``: a new or empty directory, or one holding the
    same job on the same, unchanged source (finished or not: the run resumes). With ``overwrite`` the
    precomputed dataset there, different or not, is replaced: its own files
    (``info``, its scale directories, the conversion's records) are removed and
    nothing else, so a point layer or notes beside it stay. Everything is
    checked before anything is deleted: if the new dataset could not be written
    (a scale directory it needs holds something that is not the old dataset's,
    a file cannot be removed), nothing is touched. A directory holding other
    files and no dataset is never written into, with or without ``overwrite``.
    On storage that is not a local directory the same holds of its objects (a
    name stands for the object of that name and every object below it).
    """
    storage = open_storage(dest, param("dest"))
    shown = storage.location()
    root = storage.local_root
    entries: list[str] = []
    if root is not None and os.path.exists(root) and not os.path.isdir(root):
        raise PrecomputedTifError(f"{param('dest')} {shown} is a file; give a directory (it is created if missing)")
    if root is not None and not os.path.isdir(root):
        try:
            os.makedirs(root)
        except OSError as exc:
            raise PrecomputedTifError(f"cannot create {param('dest')} {shown}: {exc.strerror}") from None
    else:
        # A Zarr group's metadata is hidden but not nothing: such a directory is not empty.
        kept = {JOB_RECORD, *formats.root_names()}
        entries = [e for e in top_names(storage) if not e.startswith(".") or e in kept]
    if entries:
        _check_existing(storage, job, overwrite, identity)
    if root is not None and not os.access(root, os.W_OK):
        raise PrecomputedTifError(f"{param('dest')} {shown} is not writable")
    if identity is not None:
        # The per-file list first: a record with a fingerprint always has the list beside it.
        storage.put(INPUTS, json.dumps(identity.files, separators=(",", ":")).encode(), durable=True)
        job = {**job, "source": {**job.get("source", {}), "fingerprint": identity.digest}}
    # Durable before any chunk is written: a chunk on disk always has its job's record.
    storage.put(JOB_RECORD, json.dumps(job, indent=1).encode(), durable=True)


def _without_fingerprint(record):
    if not (isinstance(record, dict) and isinstance(record.get("source"), dict)):
        return record
    return {**record, "source": {k: v for k, v in record["source"].items() if k != "fingerprint"}}


def _older_record_of(record, job) -> bool:
    """Whether ``record``, written by an older version (it has no source fingerprint), is of the
    same conversion as ``job``: every value it holds is the job's, and what it lacks are only keys
    newer versions record (channel names, for instance)."""
    def within(old, new) -> bool:
        if isinstance(old, dict) and isinstance(new, dict):
            return all(k in new and within(v, new[k]) for k, v in old.items())
        if isinstance(old, list) and isinstance(new, list):
            return len(old) == len(new) and all(within(a, b) for a, b in zip(old, new))
        return old == new

    source = record.get("source") if isinstance(record, dict) else None
    return isinstance(source, dict) and "fingerprint" not in source and within(record, job)


def _check_source(storage: Storage, record: dict, identity: Identity | None, finished: bool) -> None:
    """Raise a user error, naming what changed, if the source is not the one ``record`` was made from."""
    dest = storage.location()
    recorded = record["source"].get("fingerprint") if isinstance(record.get("source"), dict) else None
    if identity is None or recorded == identity.digest:
        return
    if not isinstance(recorded, str) or not comparable(recorded):
        log.warning("%s was begun by another version, which identified the source otherwise: cannot check that "
                    "the source is unchanged", dest)
        return
    files = _load_json(storage, INPUTS)
    change = first_change(files if isinstance(files, list) else None, identity.files)
    made = "made" if finished else "begun"
    raise PrecomputedTifError(
        f"{param('source')} changed since the conversion in {param('dest')} {dest} was {made}: {change}. "
        f"Resuming would mix the old and new data; add {setting('overwrite', True)} to convert it again from the start")


def _check_existing(storage: Storage, job: dict, overwrite: bool, identity: Identity | None) -> None:
    dest = storage.location()
    record = _load_json(storage, JOB_RECORD)
    info = _load_json(storage, INFO)
    if record is None and info is None:
        raise PrecomputedTifError(
            f"{param('dest')} {dest} is not empty and holds no precomputed dataset; "
            f"choose a new or empty {_place(storage)}"
        )
    if not overwrite and (_without_fingerprint(record) == job or _older_record_of(record, job)):
        _check_source(storage, record, identity, finished=info is not None)
        _remove_temporaries(storage)
        return
    if not overwrite:
        finished = _own_files(record)[:1]
        if info is not None:
            what = "a different precomputed dataset"
        elif finished and holds(storage, finished[0]):
            what = f"a different conversion ({finished[0]})"
        else:
            what = "an unfinished conversion of different input or settings"
        raise PrecomputedTifError(
            f"{param('dest')} {dest} already holds {what}; choose another {_place(storage)} or add "
            f"{setting('overwrite', True)} to replace it"
        )
    doomed = _dataset_entries(storage, info, record)
    _check_removable(storage, doomed, job)
    _remove(storage, doomed)


def _place(storage: Storage) -> str:
    """What a user calls the kind of place ``storage`` is."""
    return "directory" if storage.local_root is not None else "prefix"


def _remove_temporaries(storage: Storage) -> None:
    """Files a killed run left half written under temporary names (see :mod:`.atomic`): a local
    directory's alone (an object store's writes leave no temporary objects)."""
    if storage.local_root is None:
        return
    for base, _, files in os.walk(storage.local_root):
        for name in files:
            if is_temporary_name(name):
                _unlink(os.path.join(base, name))


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _scale_keys(source) -> set[str]:
    keys = set()
    for s in source.get("scales", []) if isinstance(source, dict) else []:
        if isinstance(s, dict) and _SCALE_DIR.match(str(s.get("key", ""))):
            keys.add(s["key"])
    return keys


def _own_files(record) -> list[str]:
    """The files a job record says its conversion makes (plain names in ``dest``), if it lists any."""
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list):
        return []
    return [f for f in files if isinstance(f, str) and f not in ("", ".", "..", JOB_RECORD, INFO)
            and "/" not in f and os.sep not in f and "\0" not in f]


def _root_names(storage: Storage, info, record) -> list[str]:
    """The top-level names the format of the dataset in ``storage`` keeps besides its levels
    (an NGFF root group's metadata), by its record's format, or for a dataset without one,
    by its first level's objects; none when neither tells (someone else's files, then)."""
    recorded = record.get("format") if isinstance(record, dict) else None
    recorded = recorded if isinstance(recorded, str) and recorded.strip() else None
    if recorded is None and not (isinstance(info, dict) and _scale_keys(info)):
        return []
    fmt = formats.of_dataset(storage, info, recorded)
    return list(fmt.root_names()) if fmt is not None else []


def _dataset_entries(storage: Storage, info, record) -> list[str]:
    """Names in ``storage`` that belong to the dataset there, in the order they are removed:
    ``info`` or the finished file first (so the directory stops looking complete), the job record last."""
    keys = _scale_keys(info) | _scale_keys((record or {}).get("info") if isinstance(record, dict) else None)
    # The NGFF root metadata only when the dataset there is a Zarr one (someone else's otherwise).
    names = [INFO] + _own_files(record) + sorted(keys) + _root_names(storage, info, record)
    names += [DONE_LOG, DONE_OBJECTS, INPUTS]
    # What precomputed-mesh adds to a segmentation: its meshes, segment properties and work files.
    names += [n for n in ("mesh", "segment_properties") if isinstance(info, dict) and info.get(n) == n]
    names.append(".mesh-work")
    names += [n for n in top_names(storage) if is_temporary_name(n)]
    return [n for n in names + [JOB_RECORD] if holds(storage, n)]


def _check_removable(storage: Storage, doomed: list[str], job: dict) -> None:
    """Raise a user error, having deleted nothing, unless removing ``doomed`` makes room for ``job``.
    (Whether each file may be removed can be told beforehand only on a local disk.)"""
    dest = storage.location()
    for key in sorted(_scale_keys(job.get("info"))) + _own_files(job):
        if key not in doomed and holds(storage, key):
            raise PrecomputedTifError(
                f"{param('dest')} {dest} holds {key}, which the new dataset needs and which is not part of the "
                f"dataset there; nothing was removed. Move it away or choose another {_place(storage)}"
            )
    root = storage.local_root
    if root is None:
        return
    if not os.access(root, os.W_OK | os.X_OK):
        raise PrecomputedTifError(f"{param('dest')} {dest} is not writable; nothing was removed")
    for name in doomed:
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            for base, _dirs, _ in os.walk(path):
                if not os.access(base, os.W_OK | os.X_OK):
                    raise PrecomputedTifError(
                        f"cannot remove the old dataset: {local_location(storage, base)} is not writable; "
                        "nothing was removed")


def _remove(storage: Storage, doomed: list[str]) -> None:
    """Remove every name in ``doomed`` (a local directory with everything in it; elsewhere every
    object under the name), going on past failures and then naming the first."""
    failed: list[str] = []
    for name in doomed:
        remove_tree(storage, name, lambda where, exc: failed.append(where))
    if failed:
        raise PrecomputedTifError(
            f"could not remove {failed[0]} (and {len(failed) - 1} more) of the old dataset in {param('dest')} "
            f"{storage.location()}; fix the permissions and run again"
        )
