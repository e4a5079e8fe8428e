"""Whole-file writes that readers and crashes never see half done."""

from __future__ import annotations

import os
import secrets


def temporary_name(path: str) -> str:
    """A name beside ``path`` that no other writer picks and no reader looks for."""
    directory, base = os.path.split(path)
    return os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename.

    A crash leaves either the previous file (or none) or the complete new one,
    plus perhaps a stray ``.tmp`` file that no reader looks at. The file gets
    the usual permissions (umask applies), so a web server can read it.
    """
    tmp = temporary_name(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
