"""``blockfs-info`` and ``blockfs2tif``: look inside a blockfs volume, or turn it back into TIFF planes."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ..errors import PrecomputedTifError
from ..formats.blockfs.directory import _STANDARD_KEYS, Directory
from ..storage.atomic import temporary_name
from .support import add_log_argument, parse_args, run_main, setup_logging


def describe(d: Directory) -> str:
    """Human-readable summary of a volume: extent, dtype, blocks, compression, files."""
    (ex, ey, ez), (bx, by, bz) = d.extent, d.block_size
    gx, gy, gz = d.grid()
    total = gx * gy * gz
    lines = [
        f"file:         {d.path}",
        f"extent:       {ex} x {ey} x {ez} voxels (x, y, z), {d.dtype.name}",
        f"block size:   {bx} x {by} x {bz} voxels, {gx} x {gy} x {gz} = {total} blocks",
        f"written:      {d.n_written()} of {total} blocks (unwritten blocks read as zeros)",
        f"compression:  blosc {d.metadata['Compression']} level {d.metadata['CompressionLvl']}",
        f"block files:  {len(d.block_files)}",
    ]
    for recorded, found in zip(d.metadata["BlockFilenames"], d.block_files):
        where = found if os.path.exists(found) else "MISSING"
        note = "" if recorded == found else f"  (recorded as {recorded})"
        size = f"{os.path.getsize(found) / 1e6:.1f} MB" if os.path.exists(found) else ""
        lines.append(f"  {where} {size}{note}")
    extra = {k: v for k, v in d.metadata.items() if k not in _STANDARD_KEYS}
    if extra:
        lines.append(f"application metadata: {extra}")
    return "\n".join(lines)


def build_info_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blockfs-info", description="Describe a blockfs volume.",
                                epilog="example:\n  blockfs-info out/1_1_1/precomputed.blockfs",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="the directory file, e.g. out/1_1_1/precomputed.blockfs")
    add_log_argument(p)
    return p


def info_main(argv=None) -> int:
    args = parse_args(build_info_parser(), argv)
    setup_logging(args.log)
    return run_main("blockfs-info", lambda: print(describe(Directory(_directory_file(args.file)))))


def _directory_file(path: str) -> str:
    """Accept a level directory too, as users often name the folder."""
    if os.path.isdir(path):
        return os.path.join(path, "precomputed.blockfs")
    return path


def write_planes(d: Directory, pattern: str, progress: bool = False) -> int:
    """Write every z plane of the volume as an uncompressed TIFF named ``pattern % z``.

    Works one row of blocks at a time, so memory holds at most one block
    thick band (z block size x y block size x full width), whatever the extent.
    Each plane is written under a temporary name and renamed when complete.
    Returns the number of planes written.
    """
    import tifffile
    from tqdm import tqdm

    (ex, ey, ez), (_, by, bz) = d.extent, d.block_size
    with tqdm(total=ez, unit="plane", desc="writing planes", disable=not progress) as bar:
        for z0 in range(0, ez, bz):
            z1 = min(z0 + bz, ez)
            names = [pattern % z for z in range(z0, z1)]
            tmps = [temporary_name(n) for n in names]
            for n in names:
                os.makedirs(os.path.dirname(os.path.abspath(n)), exist_ok=True)
            planes = [tifffile.memmap(t, shape=(ey, ex), dtype=d.dtype, photometric="minisblack") for t in tmps]
            try:
                for y0 in range(0, ey, by):
                    y1 = min(y0 + by, ey)
                    band = d.read(0, ex, y0, y1, z0, z1)
                    for plane, rows in zip(planes, band):
                        plane[y0:y1] = rows
                for plane in planes:
                    plane.flush()
            finally:
                del planes
            for t, n in zip(tmps, names):
                os.replace(t, n)
            bar.update(z1 - z0)
    return ez


def build_tif_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs2tif",
        description="Write a blockfs volume out as one uncompressed TIFF file per z plane.",
        epilog='example:\n  blockfs2tif --input out/1_1_1/precomputed.blockfs --output-pattern "planes/img_%05d.tiff"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", required=True, metavar="FILE", help="the blockfs directory file (or its folder)")
    p.add_argument("--output-pattern", required=True, metavar="PATTERN",
                   help="file name of each plane with %%d (or %%05d ...) where the z index goes")
    add_log_argument(p)
    return p


def tif_main(argv=None) -> int:
    args = parse_args(build_tif_parser(), argv)
    setup_logging(args.log)

    def body():
        try:
            args.output_pattern % 0
        except (TypeError, ValueError):
            raise PrecomputedTifError(
                f"--output-pattern {args.output_pattern!r} needs one %d (e.g. img_%05d.tiff) for the z index"
            ) from None
        if args.output_pattern % 0 == args.output_pattern % 1:
            raise PrecomputedTifError("--output-pattern must contain %d for the z index, e.g. img_%05d.tiff")
        d = Directory(_directory_file(args.input))
        n = write_planes(d, args.output_pattern, progress=sys.stderr.isatty())
        print(f"wrote {n} planes of {d.extent[0]}x{d.extent[1]} {np.dtype(d.dtype).name}")

    return run_main("blockfs2tif", body)
