"""``precomputed-screenshot``: render a Neuroglancer view to a PNG (:mod:`precomputed_tif.viewer.screenshot`)."""

from __future__ import annotations

import argparse
import sys

from ..errors import PrecomputedTifError
from ..viewer.screenshot import screenshot
from .support import add_log_argument, parse_args, run_main, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="precomputed-screenshot",
        description="Render a Neuroglancer view to a PNG file, in a headless browser on this machine.",
        epilog="example:\n"
               "  precomputed-screenshot precomputed://http://127.0.0.1:9000/image --out view.png\n\n"
               "URL is a Neuroglancer link (as precomputed-tif's demo prints, with #! and the state) or a\n"
               "precomputed:// source. Needs Debian's chromium and chromium-driver, and the neuroglancer\n"
               "and selenium Python packages.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", metavar="URL")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--size", default="1200x900", help="WIDTHxHEIGHT in pixels (default 1200x900)")
    add_log_argument(p)
    return p


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.log)

    def body():
        try:
            width, height = (int(v) for v in args.size.lower().split("x"))
            assert width > 0 and height > 0
        except (ValueError, AssertionError):
            raise PrecomputedTifError(f"--size must be WIDTHxHEIGHT, like 1200x900; got {args.size!r}") from None
        screenshot(args.url, args.out, width, height)
        print(f"wrote {args.out}")

    return run_main("precomputed-screenshot", body)


if __name__ == "__main__":
    sys.exit(main())
