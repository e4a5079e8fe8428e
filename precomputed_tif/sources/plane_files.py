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
"""

from __future__ import annotations

import glob as globmod
import logging
import os
import re
import stat
from collections.abc import Sequence

from ..errors import PrecomputedTifError, param
from ..info import JOB_RECORD

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


def resolve(source: str | os.PathLike | Sequence[str]) -> list[str]:
    """The plane files of a source, in z order; a user error when there are none."""
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
