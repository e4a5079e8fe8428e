"""``--format blockfs`` (:mod:`.store`), and blockfs 1.0.0 itself: a 3-D volume as fixed-size
blocks in a few large files plus one directory file.

Byte-compatible with volumes written by the original ``blockfs`` package. See
:mod:`.directory` for the on-disk format.
"""

from __future__ import annotations

from .. import Format
from .directory import BLOCKFS_SUFFIX, Directory, create

__all__ = ["BLOCKFS_SUFFIX", "BlockfsFormat", "Directory", "create"]


class BlockfsFormat(Format):
    """One blockfs volume per level and channel (a directory file and appended block files)."""

    name = "blockfs"
    store = ".blockfs.store:BlockfsStore"

