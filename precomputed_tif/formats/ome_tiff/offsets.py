"""``X.offsets.json``: where each top-level IFD of ``X.ome.tif`` starts, for Viv.

Viv (and its Avivator) read a JSON list of byte offsets, one per top-level
page in file order (``[page.offset for page in tifffile.TiffFile(x).pages]``,
as Viv's generate-tiff-offsets writes it), so that reaching plane ``i`` costs
one request instead of following ``i`` next-IFD pointers over HTTP. SubIFDs
(the coarser levels) are not listed: a plane's IFD points to them.
"""

from __future__ import annotations

import json
import struct
from typing import BinaryIO

from ...errors import DamagedData
from ...storage import Storage


def top_level_ifd_offsets(f: BinaryIO) -> list[int]:
    """Offsets of the main IFD chain of a (Big)TIFF file open for reading (``f``), following its
    next-IFD pointers."""
    name = getattr(f, "name", None)
    path = name if isinstance(name, str) else "the OME-TIFF being assembled"
    f.seek(0)
    header = f.read(16)
    order = {b"II": "<", b"MM": ">"}.get(header[:2])
    if order is None:
        raise DamagedData(f"{path} is not a TIFF file")
    (version,) = struct.unpack(order + "H", header[2:4])
    if version == 43:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        first, count_fmt, entry, next_fmt = struct.unpack(order + "Q", header[8:16])[0], "Q", 20, "Q"
    else:
        first, count_fmt, entry, next_fmt = struct.unpack(order + "I", header[4:8])[0], "H", 12, "I"
    count_size, next_size = struct.calcsize(count_fmt), struct.calcsize(next_fmt)
    offsets, seen = [], set()
    ifd = first
    while ifd:
        if ifd in seen:
            raise DamagedData(f"{path}: its IFD chain loops back to {ifd}")
        seen.add(ifd)
        offsets.append(ifd)
        f.seek(ifd)
        (n,) = struct.unpack(order + count_fmt, f.read(count_size))
        f.seek(ifd + count_size + n * entry)
        raw = f.read(next_size)
        if len(raw) != next_size:
            raise DamagedData(f"{path} ends inside the IFD at {ifd}")
        (ifd,) = struct.unpack(order + next_fmt, raw)
    return offsets


def write_offsets(storage: Storage, key: str, offsets: list[int]) -> None:
    """Put ``offsets`` as the JSON list Viv reads, durably, as the object ``key``."""
    storage.put(key, json.dumps(offsets).encode(), durable=True)
