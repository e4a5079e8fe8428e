"""Where a dataset's bytes live: one interface (:class:`Storage`) for a local directory today
and an object store next. See :mod:`.base` for the promises every backend keeps."""

from __future__ import annotations

import os
import re
import urllib.parse

from ..errors import PrecomputedTifError
from .base import ObjectReader, ObjectStat, Storage, StreamWriter, check_key
from .local import LocalStorage

__all__ = ["ObjectReader", "ObjectStat", "Storage", "StreamWriter", "LocalStorage", "StorageLike", "open_storage",
           "local_path", "check_key"]

StorageLike = Storage | str | os.PathLike

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def local_path(url_or_path: str | os.PathLike, what: str = "the location") -> str:
    """The local path that ``url_or_path`` names: a path as given, or a ``file://`` URL's path.
    Any other ``scheme://`` (``s3://``, ``gs://``, ``https://``) is a user error, one line
    naming ``what`` (a parameter, e.g. ``errors.param("dest")``), raised before anything is read or written."""
    text = os.fspath(url_or_path)
    match = _SCHEME.match(text)
    if match is None:
        return text
    scheme = match.group(1).lower()
    if scheme == "file":
        parsed = urllib.parse.urlsplit(text)
        if parsed.netloc not in ("", "localhost"):
            raise PrecomputedTifError(f"{what} {text}: a file:// URL on another host is not supported; "
                                      "give a local path")
        return urllib.parse.unquote(parsed.path)
    raise PrecomputedTifError(f"{what} {text}: {scheme}:// storage is not supported yet; give a local path")


def open_storage(url_or_path: StorageLike, what: str = "the location") -> Storage:
    """The :class:`Storage` for a local path or ``file://`` URL (a :class:`LocalStorage`); a
    Storage given is returned as it is. Other schemes are a one-line user error (see
    :func:`local_path`). Opens nothing and makes nothing: the first put makes the directory."""
    if isinstance(url_or_path, Storage):
        return url_or_path
    return LocalStorage(local_path(url_or_path, what))
