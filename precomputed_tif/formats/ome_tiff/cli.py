"""The command-line options only ``--format ome-tiff`` takes."""

from __future__ import annotations

import argparse

from .codecs import COMPRESSIONS, DEFAULT_COMPRESSION
from .layout import DEFAULT_TILE_SIZE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tile-size", type=int, default=None, metavar="N",
                        help=f"with --format ome-tiff: tiles of N x N pixels, a power of two "
                             f"(default: {DEFAULT_TILE_SIZE})")
    parser.add_argument("--compression", default=None, metavar="NAME",
                        help=f"with --format ome-tiff: {', '.join(COMPRESSIONS)} (default: {DEFAULT_COMPRESSION})")
