"""Which files a ``--source`` names, and in what z order.

A glob's matches are sorted *naturally*: runs of digits compare as numbers, so
``img_2.tif`` comes before ``img_10.tif`` whether or not the numbers are
zero-padded. A path that exists is taken literally even when it holds glob
characters (a folder named ``run[1]``). A folder (that is not a dataset) stands
for the TIFF files directly in it (``.tif``, ``.tiff``, any case; hidden ones left
out), as ``folder/*.tif`` would. A list of files given from Python keeps the
caller's order. Every file must be a regular file: a FIFO, device or socket
among the planes is refused before anything is read (reading one would wait
forever, or never end).

In a bucket (``s3://BUCKET/planes/*.tif``, ``gs://...``) the same holds of its
objects: the glob is matched against a listing of the prefix before its first
glob character (``*`` and ``?`` stay within one part between ``/``, names
starting with ``.`` only match a pattern that does), the matches are sorted the
same natural way, a URL without glob characters names one object (a multi-page
file), or else the TIFF objects directly below it, as a folder does. The planes
are read by byte ranges, never downloaded whole (:mod:`.tiff`).
"""

from __future__ import annotations

import fnmatch
import glob as globmod
import logging
import os
import re
import stat
from collections.abc import Sequence

from ..errors import PrecomputedTifError, param
from ..info import JOB_RECORD
from ..storage import ObjectStorage, is_bucket_url, parse_url

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key in which digit runs compare by value (``a2`` < ``a10``), then as text."""
    parts = _DIGITS.split(name)
    return tuple((0, int(p), p) if i % 2 else (1, 0, p) for i, p in enumerate(parts))


def _glob(pattern: str) -> list[str]:
    """Matches of ``pattern``. Where a leading part of it names an existing folder literally
    (``run[1]``), that part is not read as a glob: the folder the user named wins over
    folders its brackets would match (``run1``)."""
    if os.path.exists(pattern):
        return [pattern]
    head = os.path.dirname(pattern)
    while head and not os.path.isdir(head):
        head = os.path.dirname(head)
    if head and globmod.has_magic(head):
        literal = globmod.glob(os.path.join(globmod.escape(head), os.path.relpath(pattern, head)))
        if literal:
            return literal
    return globmod.glob(pattern)


TIFF_SUFFIXES = (".tif", ".tiff")


def _tiffs_in(folder: str) -> list[str]:
    """The TIFF files directly in ``folder`` (not hidden), or a user error saying what it holds."""
    try:
        names = [n for n in os.listdir(folder) if not n.startswith(".")]
    except OSError as exc:
        raise PrecomputedTifError(f"cannot read {param('source')} {folder}: {exc.strerror}") from None
    tiffs = [os.path.join(folder, n) for n in names if n.lower().endswith(TIFF_SUFFIXES)]
    if tiffs:
        others = len(names) - len(tiffs)
        if others:
            log.info("%s: reading its %d TIFF files, leaving out %d other entries", folder, len(tiffs), others)
        return tiffs
    if os.path.exists(os.path.join(folder, JOB_RECORD)):
        raise PrecomputedTifError(
            f"{param('source')} {folder} is a dataset whose conversion did not finish (it has no info file); "
            "finish it by running its conversion again, then convert from it")
    raise PrecomputedTifError(
        f"{param('source')} {folder} is a folder with no TIFF files (.tif, .tiff) in it and no dataset (no info "
        "file); give the planes' folder, or a glob like 'folder/*.tif'")


def _bucket_objects(url: str) -> list[str]:
    """The URLs of the objects ``url`` names (see the module's docstring), naturally sorted; a
    user error when there are none."""
    scheme, bucket, path = parse_url(url, param("source"))
    parts = path.split("/") if path else []
    magic = next((i for i, p in enumerate(parts) if globmod.has_magic(p)), None)
    if magic is None:
        top = ObjectStorage(f"{scheme}://{bucket}", what=param("source"))
        if path and top.stat(path) is not None:
            return [url]
        literal, patterns = parts, ["*"]
    else:
        literal, patterns = parts[:magic], parts[magic:]
    root = "/".join([f"{scheme}://{bucket}", *literal])
    storage = ObjectStorage(root, what=param("source"))
    found = [key for key in storage.list() if _matches(key.split("/"), patterns)]
    if magic is None:
        tiffs = [key for key in found if key.lower().endswith(TIFF_SUFFIXES)]
        if not tiffs:
            raise PrecomputedTifError(
                f"{param('source')} {url}: no object of that name, no TIFF objects (.tif, .tiff) directly below "
                "it, no dataset (no info) and no OME-Zarr (no zarr.json or .zattrs); give the URL of a dataset or "
                "an OME-Zarr, one TIFF object, or a glob like "
                f"'{scheme}://{bucket}/planes/*.tif'")
        if len(tiffs) < len(found):
            log.info("%s: reading its %d TIFF objects, leaving out %d others", url, len(tiffs), len(found) - len(tiffs))
        found = tiffs
    elif not found:
        raise PrecomputedTifError(f"no object matches {param('source')} {url!r}; check the bucket, the prefix "
                                  "and the pattern (* and ? match within one part of the name)")
    files = sorted((storage.location(key) for key in found), key=natural_key)
    _warn_unpadded(files)
    return files


def _matches(parts: list[str], patterns: list[str]) -> bool:
    """Whether a key's parts match a glob's, one for one, as :mod:`glob` matches file names."""
    return len(parts) == len(patterns) and all(
        fnmatch.fnmatchcase(part, pattern) and (pattern.startswith(".") or not part.startswith("."))
        for part, pattern in zip(parts, patterns))


def resolve(source: str | os.PathLike | Sequence[str]) -> list[str]:
    """The plane files of a source, in z order; a user error when there are none. A bucket's
    objects are URLs (``s3://BUCKET/KEY``)."""
    if isinstance(source, str) and is_bucket_url(source):
        return _bucket_objects(source)
    if isinstance(source, (str, os.PathLike)):
        pattern = os.path.expanduser(str(source))
        if os.path.isdir(pattern):
            files = sorted(_tiffs_in(pattern), key=natural_key)
            _warn_unpadded(files)
            return resolve(files)
        files = sorted(_glob(pattern), key=natural_key)
        if not files:
            raise PrecomputedTifError(
                f"no files match {param('source')} {pattern!r}; check the path and quote the glob")
        _warn_unpadded(files)
    else:
        files = [str(f) for f in source]
        if not files:
            raise PrecomputedTifError("no source files given")
    if all(is_bucket_url(f) for f in files):  # (a list of objects' URLs given from Python)
        return files
    planes = [f for f in files if not os.path.isdir(f)]
    if not planes:
        raise PrecomputedTifError(f"{param('source')} {source!r} matches only directories; use a glob like 'dir/*.tif'")
    for f in planes:
        if not os.path.isfile(f):
            kind = file_kind(f)
            if kind == "missing" or kind.startswith("unreadable"):
                raise PrecomputedTifError(f"{f} is {kind}")
            raise PrecomputedTifError(f"{f} is {kind}, not a regular file; a source names TIFF files only")
    return planes


def file_kind(path: str) -> str:
    """What ``path`` is, in words, for telling a user it is not a regular file: 'a FIFO',
    'a socket', 'a character device', ..., 'a broken symbolic link' or 'missing'."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    for test, words in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return words
    return "not a regular file"


def _warn_unpadded(files: list[str]) -> None:
    alphabetical = sorted(files)
    for natural, plain in zip(files, alphabetical):
        if natural != plain:
            log.warning(
                "plane numbers in the file names are not zero-padded: planes are ordered by number "
                "(%s before %s), not alphabetically", os.path.basename(natural), os.path.basename(plain),
            )
            return
