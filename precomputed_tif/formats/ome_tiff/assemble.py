"""Stage 2: one sequential pass that streams the encoded tiles into the OME-TIFF.

tifffile writes the file from iterators of already-encoded tiles: first the
full-resolution page of every (z, channel) plane with room for its SubIFDs,
then each coarser level, one SubIFD per plane. It is a BigTIFF (as raw2ometiff
writes), little-endian, with the OME-XML in the first page's ImageDescription.
Memory stays that of one tile: tiles are read one at a time from the work
files.

tifffile goes back to patch offsets in what it wrote, so the file is assembled
in a local file, then its offsets index is put into the destination's storage,
and only then does the image appear under its final name -- so ``X.ome.tif``
exists only whole, with ``X.offsets.json`` beside it. On a local destination
the file is assembled under a hidden temporary name beside its final one and
renamed onto it (no second copy of a file as large as the dataset); on other
storage (a bucket) it is assembled in an anonymous file of the system's temporary
directory (``TMPDIR``; :func:`~...storage.scratch.scratch_file`, gone with the
process however it ends) and streamed into the storage as a multipart upload,
where it appears when complete; that directory needs room for the whole file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

import tifffile
from tqdm import tqdm

from ...storage import Storage
from ...storage.atomic import sync_directory, temporary_name
from ...storage.scratch import scratch_file, spilling
from .codecs import tifffile_compression
from .layout import Layout
from .metadata import ome_metadata
from .offsets import top_level_ifd_offsets, write_offsets
from .spill import SpillReader, spill_key

# Streamed into non-local storage this much at a time. Small on purpose: the stream gathers
# its own parts (8 MiB), and reading the file in pieces as large as a part or more made peak
# memory grow with the file (freed large buffers raise malloc's mmap threshold, so the next
# ones come from a fragmenting heap): 1 MiB pieces kept a 132 MB upload as flat as a 44 MB one.
COPY_BYTES = 1 << 20


def _level_tiles(layout: Layout, storage: Storage, level: int, bar) -> Iterator[bytes]:
    """Encoded tiles of one level, plane after plane in file order (z, then channel)."""
    first = sum(layout.n_tiles(lv) for lv in range(level))
    n = layout.n_tiles(level)
    for z in range(layout.size[2]):
        with SpillReader(storage, spill_key(z), layout.channels * layout.tiles_per_plane) as tiles:
            for c in range(layout.channels):
                yield from tiles.tiles(c * layout.tiles_per_plane + first, n)
        bar.update(1)


def assemble(plan, progress: bool = False) -> str:
    """Put ``X.ome.tif`` and ``X.offsets.json`` into the destination ``plan.storage`` from the work
    files (see the module's docstring); returns where the image is, as the user would name it."""
    storage = plan.storage
    root = storage.local_root
    if root is None:
        # An anonymous file: a killed run leaves nothing behind in the temporary directory. (Its
        # closing flushes what is buffered, so a full directory may first be found there.)
        with spilling(f"assembling {storage.location(plan.names.image)}"), scratch_file() as scratch:
            _write(plan, scratch, progress)
            scratch.flush()
            write_offsets(storage, plan.names.offsets, top_level_ifd_offsets(scratch))
            scratch.seek(0)
            _stream_into(storage, plan.names.image, scratch)
        storage.flush()
        return storage.location(plan.names.image)
    final = os.path.join(root, plan.names.image)
    tmp = temporary_name(final)
    try:
        _write(plan, tmp, progress)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        with open(tmp, "rb") as f:
            offsets = top_level_ifd_offsets(f)
        write_offsets(storage, plan.names.offsets, offsets)
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    sync_directory(root)
    return storage.location(plan.names.image)


def _write(plan, out: str | BinaryIO | tifffile.FileHandle, progress: bool) -> None:
    """The whole OME-TIFF into ``out`` (a path, or a seekable file open for reading and writing)."""
    layout, storage = plan.layout, plan.storage
    metadata = ome_metadata(plan.voxel_size, plan.channel_names, plan.channel_colors, plan.names.image, plan.job,
                            plan.dest)
    options = dict(dtype=layout.dtype, tile=(layout.tile, layout.tile), photometric="minisblack",
                   compression=tifffile_compression(plan.compression), software="precomputed-tif")
    if not isinstance(out, str):
        out = tifffile.FileHandle(out, name=plan.names.image)  # (an anonymous file has no name of its own)
    with tqdm(total=layout.size[2] * layout.n_levels, desc="writing OME-TIFF", unit="plane",
              disable=not progress) as bar, \
            tifffile.TiffWriter(out, bigtiff=True, byteorder="<", ome=True) as tif:
        for level, (x, y) in enumerate(layout.levels):
            if level == 0:
                extra = dict(metadata=metadata, subifds=layout.n_levels - 1 or None)
            else:
                extra = dict(metadata=None, subfiletype=1)  # FILETYPE.REDUCEDIMAGE
            tif.write(_level_tiles(layout, storage, level, bar), shape=(layout.size[2], layout.channels, y, x),
                      **options, **extra)


def _stream_into(storage: Storage, key: str, f: BinaryIO) -> None:
    """Copy the rest of the open file ``f`` into the object ``key``, which appears when complete
    (a multipart upload: a few parts in memory at a time, never the file)."""
    with storage.open_stream(key) as out:
        while True:
            part = f.read(COPY_BYTES)
            if not part:
                break
            out.write(part)
