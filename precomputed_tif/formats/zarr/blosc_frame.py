"""Checking a Blosc frame before anything decodes it.

A Blosc (1.x) frame starts with a 16-byte header::

    byte 0     format version        byte 1   compressor version
    byte 2     flags                 byte 3   type size
    bytes 4-7  nbytes: decoded size  bytes 8-11 blocksize
    bytes 12-15 cbytes: the frame's size, header included (all little-endian)

followed, unless the frame is a plain copy (flag 0x02), by one 4-byte start
offset per block. The decoder trusts these fields: handed a frame shorter than
its ``cbytes`` it reads past the end of the buffer (the bytes it returns are
whatever memory followed, or the process crashes). So every frame read from
disk is checked here first: its size fields against the bytes actually read,
its decoded size against the size the chunk must have, and its block offsets
against the frame.
"""

from __future__ import annotations

import struct

from ...errors import DamagedData

HEADER = 16
_MEMCPYED = 0x02


def check_frame(data: bytes, expected_nbytes: int | None, what: str, trailing: int = 0) -> None:
    """Raise :class:`DamagedData` (naming ``what``, e.g. the file) unless ``data`` is one
    whole Blosc frame followed by exactly ``trailing`` bytes, decoding to
    ``expected_nbytes`` bytes (not checked when None)."""
    if len(data) < HEADER + trailing:
        raise DamagedData(f"{what}: {len(data)} bytes, too short to be a compressed chunk")
    version, _, flags, _ = data[:4]
    nbytes, blocksize, cbytes = struct.unpack_from("<III", data, 4)
    if not 1 <= version <= 4:
        raise DamagedData(f"{what}: not a Blosc frame (format version {version})")
    if cbytes + trailing != len(data):
        raise DamagedData(f"{what}: {len(data)} bytes stored where the chunk's header says "
                          f"{cbytes + trailing}; the chunk is truncated or overwritten")
    if expected_nbytes is not None and nbytes != expected_nbytes:
        raise DamagedData(f"{what}: decodes to {nbytes} bytes, the chunk has {expected_nbytes}")
    if nbytes == 0:
        return
    if flags & _MEMCPYED:
        if cbytes != HEADER + nbytes:
            raise DamagedData(f"{what}: a stored (uncompressed) frame of the wrong size")
        return
    if blocksize == 0:
        raise DamagedData(f"{what}: a Blosc header with block size 0")
    nblocks = -(-nbytes // blocksize)
    table_end = HEADER + 4 * nblocks
    if table_end > cbytes:
        raise DamagedData(f"{what}: the Blosc block table runs past the frame")
    for start in struct.unpack_from(f"<{nblocks}I", data, HEADER):
        if not table_end <= start < cbytes:
            raise DamagedData(f"{what}: a Blosc block starts outside the frame")
