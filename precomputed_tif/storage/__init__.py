"""Where a dataset's bytes live: one interface (:class:`Storage`) for a local directory and a
bucket (``s3://``, ``gs://``). See :mod:`.base` for the promises every backend keeps."""

from __future__ import annotations

import os
import re
import urllib.parse

from ..errors import PrecomputedTifError, param
from .base import ObjectChanged, ObjectReader, ObjectStat, ReaderFile, Storage, StreamWriter, check_key, open_file
from .local import LocalStorage
from .objects import SCHEMES, AccessDenied, ObjectStorage, StorageError, object_at, parse_url

__all__ = ["ObjectChanged", "ObjectReader", "ObjectStat", "Storage", "StreamWriter", "LocalStorage", "StorageLike",
           "open_storage", "local_path", "check_key", "ObjectStorage", "StorageError", "AccessDenied", "is_bucket_url",
           "nested", "absolute", "ReaderFile", "open_file", "object_at", "parse_url"]

StorageLike = Storage | str | os.PathLike

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# A scheme of two or more letters and a colon, without the two slashes.
_URLISH = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(?!//)")


def local_path(url_or_path: str | os.PathLike, what: str = "the location") -> str:
    """The local path that ``url_or_path`` names: a path as given, or a ``file://`` URL's path.
    Any other ``scheme://`` (``s3://``, ``gs://``, ``https://``) is a user error, one line
    naming ``what`` (a parameter, e.g. ``errors.param("dest")``), raised before anything is read or written."""
    text = os.fspath(url_or_path)
    match = _SCHEME.match(text)
    if match is None:
        typo = _URLISH.match(text)
        if typo:  # "s3:/bucket", "gs:bucket": a URL mistyped, not a directory named "s3:"
            raise PrecomputedTifError(f"{what} {text}: looks like a mistyped URL; write {typo.group(1)}://..., "
                                      f"or ./{text} for a local directory of that name")
        return text
    scheme = match.group(1).lower()
    if scheme == "file":
        parsed = urllib.parse.urlsplit(text)
        if parsed.netloc not in ("", "localhost"):
            raise PrecomputedTifError(f"{what} {text}: a file:// URL on another host is not supported; "
                                      "give a local path")
        return urllib.parse.unquote(parsed.path)
    if scheme in SCHEMES:
        raise PrecomputedTifError(f"{what} {text}: must be a local path here; a bucket ({scheme}://) is not "
                                  "supported for it")
    raise PrecomputedTifError(f"{what} {text}: {scheme}:// is not a kind of storage this tool reads or writes; "
                              "give a local path, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")


def is_bucket_url(url_or_path: StorageLike) -> bool:
    """Whether ``url_or_path`` names a bucket (``s3://``, ``gs://``)."""
    if isinstance(url_or_path, Storage):
        return isinstance(url_or_path, ObjectStorage)
    match = _SCHEME.match(os.fspath(url_or_path))
    return match is not None and match.group(1).lower() in SCHEMES


def absolute(location: str | os.PathLike) -> str:
    """How a record names ``location`` for good: a local path made absolute, a bucket's URL as it is."""
    return os.fspath(location) if is_bucket_url(location) else os.path.abspath(location)


def open_storage(url_or_path: StorageLike, what: str = "the location", *,
                 cache_control: str | None = None) -> Storage:
    """The :class:`Storage` for a local path or ``file://`` URL (a :class:`LocalStorage`), or
    for ``s3://BUCKET/PREFIX`` and ``gs://BUCKET/PREFIX`` (an :class:`ObjectStorage`, whose
    objects get ``cache_control`` as their ``Cache-Control``); a Storage given is returned as it
    is. Other schemes are a one-line user error (see :func:`local_path`), as is a
    ``cache_control`` for a local directory (its files carry no headers: the web server that
    serves them sets its own). Opens nothing and makes nothing: the first put makes the
    directory or the objects."""
    if isinstance(url_or_path, Storage):
        return url_or_path
    if is_bucket_url(url_or_path):
        return ObjectStorage(os.fspath(url_or_path), cache_control=cache_control, what=what)
    path = local_path(url_or_path, what)
    if cache_control is not None:
        raise PrecomputedTifError(f"{param('cache_control')} sets a header of objects in a bucket; {what} {path} is "
                                  "a local directory, whose web server sets its own")
    return LocalStorage(path)


def nested(a: Storage, b: Storage) -> bool:
    """Whether ``a`` and ``b`` are the same place or one lies inside the other: local
    directories by their real paths, anything else by location (a bucket's URL, whose
    prefix ``""`` holds every other in that bucket)."""
    if a.local_root is not None and b.local_root is not None:
        first, second = os.path.realpath(a.local_root), os.path.realpath(b.local_root)
        sep = os.sep
    elif a.local_root is None and b.local_root is None:
        first, second = a.location().rstrip("/"), b.location().rstrip("/")
        sep = "/"
    else:
        return False
    return first == second or first.startswith(second.rstrip(sep) + sep) or second.startswith(first.rstrip(sep) + sep)
