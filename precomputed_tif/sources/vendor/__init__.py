"""Microscope and stitching files read without a TIFF export first, picked by their names.

| name | reader | extra |
|---|---|---|
| ``*.nd2`` | :mod:`.nd2` (Nikon NIS-Elements) | ``nd2`` |
| ``*.lif``, ``*.lof`` | :mod:`.lif` (Leica LAS X) | ``lif`` |
| ``*.czi`` | :mod:`.czi` (Zeiss ZEN) | ``czi`` |
| ``*.ims`` | :mod:`.ims` (Bitplane Imaris) | ``hdf5`` |
| ``*.xml``, or ``*.h5`` with its XML beside | :mod:`.bdv` (BigDataViewer, BigStitcher) | ``hdf5`` (or ``n5``) |
| a ``*.n5`` directory | :mod:`.n5` | ``n5`` |

Each reader's module says how the file's axes become x, y, z, channels and time
points, what is refused, and how the voxel size is computed. All of them give
an :class:`~.base.ArraySource`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ...errors import PrecomputedTifError
from .base import ArraySource, SeriesInfo

__all__ = ["ArraySource", "SeriesInfo", "kind_of", "list_series", "open_vendor"]

_SUFFIXES = {".nd2": "nd2", ".lif": "lif", ".lof": "lif", ".czi": "czi", ".ims": "ims", ".xml": "bdv",
             ".h5": "bdv", ".n5": "n5"}

# What each kind's files hold several of (the word the --series refusal uses).
NOUNS = {"nd2": "positions", "lif": "images", "czi": "scenes", "ims": "images", "bdv": "setups",
         "n5": "datasets"}


def kind_of(source) -> str | None:
    """Which reader reads ``source`` (a path), by its name: ``"nd2"``, ``"lif"``, ... or None
    (not a file this package reads this way: TIFF planes, a dataset, a glob, a list)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = os.path.expanduser(os.fspath(source))
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    kind = _SUFFIXES.get(suffix)
    if kind == "n5":
        return kind if os.path.isdir(path) else None
    if kind is None or os.path.isdir(path):
        return None
    return kind


def _module(kind: str):
    from importlib import import_module

    return import_module(f"{__name__}.{kind}")


def open_vendor(source, series: int | None = None, channel: int | None = None, timepoint: int | str | None = None,
                segmentation: bool = False) -> ArraySource:
    """The source of one series of a microscope file (see the table above)."""
    kind = kind_of(source)
    if kind is None:
        raise PrecomputedTifError(f"{source}: not a file these readers know")
    path = _existing(source)
    opener: Callable = getattr(_module(kind), f"open_{kind}")
    return opener(path, series, channel, timepoint, segmentation)


def list_series(source) -> list[SeriesInfo]:
    """The series (images, scenes, positions, setups) of a microscope file, in order."""
    kind = kind_of(source)
    if kind is None:
        raise PrecomputedTifError(f"{source}: not a file these readers know")
    return _module(kind).list_series(_existing(source))


def _existing(source) -> str:
    path = os.path.expanduser(os.fspath(source))
    if not os.path.exists(path):
        raise PrecomputedTifError(f"{path} does not exist")
    if not (os.path.isfile(path) or os.path.isdir(path)):
        raise PrecomputedTifError(f"{path} is not a regular file")
    return path
