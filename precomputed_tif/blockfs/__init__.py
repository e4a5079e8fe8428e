"""blockfs 1.0.0: a 3-D volume as fixed-size blocks in a few large files plus one directory file.

Byte-compatible with volumes written by the original ``blockfs`` package. See
:mod:`.directory` for the on-disk format.
"""

from .directory import BLOCKFS_SUFFIX, Directory, create

__all__ = ["Directory", "create", "BLOCKFS_SUFFIX"]
