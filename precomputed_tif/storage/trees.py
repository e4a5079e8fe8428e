"""Whole parts of a dataset by name -- what ``--overwrite`` and a writer starting over remove.

A name is a key at the top of a storage (``mesh``, ``spatial0``, ``info``) standing for the
object of that name and every object below it. On a local directory these are files and
directories, and they are handled as such: a directory goes with everything in it (the
temporary files a killed writer left, empty directories), as ``rm -r`` would. Elsewhere (an
object store) there are only objects: the listed keys are deleted one by one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable

from .base import Storage, check_key

# Told what could not be removed: (a path or location, the error).
OnError = Callable[[str, OSError], None]


def top_names(storage: Storage) -> list[str]:
    """The names at the top of ``storage``, sorted: on a local directory every entry of it
    (empty directories and hidden files included; none when it does not exist, or a file is
    where a directory above it should be), elsewhere the first part of every key. An
    ``OSError`` when a local directory cannot be read."""
    root = storage.local_root
    if root is None:
        return sorted({key.split("/", 1)[0] for key in storage.list()})
    try:
        return sorted(os.listdir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []


def holds(storage: Storage, name: str) -> bool:
    """Whether anything is under ``name``: a local file, directory or symlink (broken or not);
    elsewhere an object ``name`` or below it."""
    check_key(name)
    root = storage.local_root
    if root is None:
        return next(iter(storage.list(name)), None) is not None
    return os.path.lexists(os.path.join(root, *name.split("/")))


def local_location(storage: Storage, path: str) -> str:
    """How a user would name ``path``, a file or directory inside the local root of
    ``storage``: as :meth:`~.base.Storage.location` names it (the root as the user gave it)."""
    assert storage.local_root is not None, "only storage in a local directory has paths"
    rel = os.path.relpath(path, storage.local_root)
    return storage.location() if rel == "." else storage.location(rel.replace(os.sep, "/"))


def _raise(where: str, exc: OSError) -> None:
    raise exc


def remove_tree(storage: Storage, name: str, onerror: OnError | None = None) -> None:
    """Remove ``name`` and everything below it (see the module's docstring); nothing there is
    fine. Each failure is passed to ``onerror`` (a path or location, the ``OSError``) and the
    rest is still removed; without ``onerror`` the first failure is raised."""
    report = onerror or _raise
    check_key(name)
    root = storage.local_root
    if root is None:
        for key in list(storage.list(name)):
            try:
                storage.delete(key)
            except OSError as exc:
                report(storage.location(key), exc)
        return
    path = os.path.join(root, *name.split("/"))
    if os.path.isdir(path) and not os.path.islink(path):
        def failed(fn, where: str, info) -> None:
            exc = info[1]
            if not isinstance(exc, OSError):  # only OSErrors are the file system's answer; others are bugs
                raise exc
            report(local_location(storage, where), exc)

        shutil.rmtree(path, onerror=failed)
    else:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        except OSError as exc:
            report(storage.location(name), exc)
