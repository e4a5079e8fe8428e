"""A storage with an object store's limits, for tests: what works on it works without a local path.

:class:`ObjectLikeStorage` keeps its objects as files under a directory (so tests can look at and
damage them), but offers only what an object store offers: no ``local_root`` (nothing may use a
path), no append. A chunk store or writer that still opens, renames or fsyncs local files itself
fails on it (its ``level_dir`` asserts), which is what a bucket would do.
"""

from __future__ import annotations

import os

from precomputed_tif.storage import LocalStorage


class ObjectLikeStorage(LocalStorage):
    can_append = False

    def __init__(self, root: str | os.PathLike):
        super().__init__(root)
        self.local_root = None  # what an object store has: no path to its objects

    def __repr__(self) -> str:
        return f"ObjectLikeStorage({self.root!r})"

    def location(self, key: str = "") -> str:
        # Named like a bucket's URL, so messages that print a path where a URL belongs show up.
        return "mem://" + "/".join(p for p in (self.root.strip("/"), key) if p)

    def append(self, key: str, data: bytes) -> None:
        raise AssertionError(f"append({key!r}) used on storage without append")

    def path_of(self, key: str) -> str:
        """For tests only: the file holding object ``key`` (to damage it, say)."""
        return os.path.join(self.root, *key.split("/"))
