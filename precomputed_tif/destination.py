"""Deciding whether a ``--dest`` directory may be written, and clearing it on ``--overwrite``.

A conversion records what it is making in ``.precomputed-tif.json`` before it
writes any chunk, and writes ``info`` only when every chunk is written. So a
directory with ``info`` is a complete dataset, and one with only the record is
a conversion that did not finish.
"""

from __future__ import annotations

import json
import os
import re
import shutil

from .atomic import write_atomic
from .errors import PrecomputedTifError
from .info import INFO
from .progress import DONE_LOG

JOB_RECORD = ".precomputed-tif.json"
_SCALE_DIR = re.compile(r"^\d+_\d+_\d+$")


def _load_json(path: str):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def prepare(dest: str, job: dict, overwrite: bool) -> None:
    """Make ``dest`` ready for ``job``, or raise a user error and change nothing.

    Allowed without ``overwrite``: a new or empty directory, or one holding the
    same job (finished or not: the run resumes). With ``overwrite`` the
    precomputed dataset there, different or not, is removed first. A directory holding other files is never
    written into, with or without ``overwrite``: it is not ours to delete.
    """
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise PrecomputedTifError(f"--dest {dest} is a file; give a directory (it is created if missing)")
    if not os.path.isdir(dest):
        try:
            os.makedirs(dest)
        except OSError as exc:
            raise PrecomputedTifError(f"cannot create --dest {dest}: {exc.strerror}") from None
    else:
        entries = [e for e in os.listdir(dest) if not e.startswith(".") or e == JOB_RECORD]
        if entries:
            _check_existing(dest, job, overwrite)
    if not os.access(dest, os.W_OK):
        raise PrecomputedTifError(f"--dest {dest} is not writable")
    write_atomic(os.path.join(dest, JOB_RECORD), json.dumps(job, indent=1).encode())


def _check_existing(dest: str, job: dict, overwrite: bool) -> None:
    record = _load_json(os.path.join(dest, JOB_RECORD))
    info = _load_json(os.path.join(dest, INFO))
    if record is None and info is None:
        raise PrecomputedTifError(
            f"--dest {dest} is not empty and holds no precomputed dataset; "
            "choose a new or empty directory"
        )
    if record == job and not overwrite:
        _remove_temporaries(dest)
        return
    if not overwrite:
        what = "a different precomputed dataset" if info is not None else "an unfinished conversion of different input or settings"
        raise PrecomputedTifError(
            f"--dest {dest} already holds {what}; choose another directory or add --overwrite to replace it"
        )
    _remove_dataset(dest, info, record)


_TEMPORARY = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")


def _remove_temporaries(dest: str) -> None:
    """Files a killed run left half written under temporary names (see :mod:`.atomic`)."""
    for base, _, files in os.walk(dest):
        for name in files:
            if _TEMPORARY.match(name):
                _unlink(os.path.join(base, name))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_dataset(dest: str, info, record) -> None:
    """Remove a dataset's ``info`` (first, so it stops looking complete), scale directories and record."""
    keys = set()
    for source in (info, (record or {}).get("info")):
        for s in (source or {}).get("scales", []) if isinstance(source, dict) else []:
            if isinstance(s, dict) and _SCALE_DIR.match(str(s.get("key", ""))):
                keys.add(s["key"])
    _unlink(os.path.join(dest, INFO))
    # What precomputed-mesh adds to a segmentation: its meshes, segment properties and work files.
    for name in ("mesh", "segment_properties", ".mesh-work"):
        if name == ".mesh-work" or (isinstance(info, dict) and info.get(name) == name):
            shutil.rmtree(os.path.join(dest, name), ignore_errors=True)
    for key in sorted(keys):
        shutil.rmtree(os.path.join(dest, key), ignore_errors=True)
    _unlink(os.path.join(dest, JOB_RECORD))
    _unlink(os.path.join(dest, DONE_LOG))
    left = [e for e in os.listdir(dest) if not e.startswith(".")]
    if left:
        raise PrecomputedTifError(
            f"--dest {dest} still holds {', '.join(sorted(left)[:3])} after removing the old dataset; "
            "choose a new or empty directory"
        )
