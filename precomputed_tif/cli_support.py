"""What every command-line tool of the project does the same way: logging and errors."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from .errors import PrecomputedTifError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_log_argument(parser) -> None:
    parser.add_argument("--log", default="WARNING", type=str.upper, choices=LOG_LEVELS, metavar="LEVEL",
                        help="how much to log: DEBUG, INFO, WARNING (default) or ERROR")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_main(prog: str, body: Callable[[], None]) -> int:
    """Run a command's body; a user error becomes one line on stderr and status 2."""
    try:
        body()
    except PrecomputedTifError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
