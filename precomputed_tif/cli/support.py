"""What every command-line tool of the project does the same way: logging and errors."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable

from .. import errors
from ..errors import PrecomputedTifError, for_command_line
from ..process import STOP_SIGNALS, Interrupted, ignore_signals, interrupt, loaded

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_log_argument(parser) -> None:
    parser.add_argument("--log", default="WARNING", type=str.upper, choices=LOG_LEVELS, metavar="LEVEL",
                        help="how much to log: DEBUG, INFO, WARNING (default) or ERROR")


def add_cache_control_argument(parser) -> None:
    parser.add_argument("--cache-control", metavar="VALUE", default=None,
                        help="with an s3:// or gs:// destination: the Cache-Control header every object written "
                             "gets, e.g. \"public, max-age=86400\" (default: none, the bucket's own default)")


def announce_bucket(prog: str, storage, info, fmt, points: bool = False) -> None:
    """After a command wrote to a bucket: the link that opens it from there, and a warning
    block if a browser could not read it (:func:`precomputed_tif.viewer.publish.announce`)."""
    from ..viewer.publish import announce

    announce(storage, info, fmt, prog, sys.stdout, sys.stderr, points=points)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, where a Ctrl-C (the command started and stopped at once)
    is the same one line as later on, status 130, not a traceback."""
    loaded()
    try:
        return parser.parse_args(argv)
    except KeyboardInterrupt:
        ignore_signals(STOP_SIGNALS)
        print(f"{parser.prog}: interrupted (SIGINT)", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncio").addFilter(_drop_sibling_write_errors)


def _drop_sibling_write_errors(record: logging.LogRecord) -> bool:
    """False for asyncio's "Task (or Future) exception was never retrieved" about an ``OSError``.

    zarr-python writes a group's or array's metadata files in concurrent tasks: when the
    disk is full (or not writable) they all fail, the first failure is raised and reported
    as the command's one line, and the others end as these records, tracebacks and all, at
    some later garbage collection. They add nothing to the line already printed."""
    exc = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exc, OSError) and record.getMessage().startswith(
        ("Task exception was never retrieved", "Future exception was never retrieved")))


def quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker from adding lines to a command's one: when the
    run ends by an error or a signal it may report semaphores a stopped worker made (a
    library's lock) as leaked while it removes them, in warnings around the command's line.
    The tracker is started with this process's ``-W`` options, so this must come before it."""
    option = "ignore::UserWarning:multiprocessing.resource_tracker"
    if option not in sys.warnoptions:
        sys.warnoptions.append(option)


def run_main(prog: str, body: Callable[[], None], resumable: bool = False) -> int:
    """Run a command's body; a user error becomes one line on stderr and status 2, naming
    parameters by their flags (:func:`~precomputed_tif.errors.for_command_line`).

    SIGTERM (``kill``, ``timeout``, a batch scheduler) and SIGHUP (a closed
    terminal or SSH session) are treated like Ctrl-C: the body's ``finally``
    blocks run (stopping worker processes), then one line says "interrupted"
    (and, for a ``resumable`` command, how to resume) and the status is 128 +
    the signal's number: 130, 143 or 129. The previous signal handlers are put
    back before returning, for callers that run the body in their own process.
    """
    # Handlers can be set only in the main thread; elsewhere (a caller's thread) leave them.
    main_thread = threading.current_thread() is threading.main_thread()
    loaded()
    quiet_resource_tracker()
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if main_thread else {}
    errors.speak_command_line(True)  # log lines name flags, as the error line does
    try:
        if main_thread:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, interrupt)
        try:
            body()
        except PrecomputedTifError as exc:
            print(f"{prog}: error: {for_command_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            # A second signal while this line is printed must not turn it into a traceback.
            ignore_signals(STOP_SIGNALS)
            hint = "; run the same command again to resume" if resumable else ""
            print(f"{prog}: interrupted ({signal.Signals(signum).name}){hint}", file=sys.stderr)
            return 128 + signum
        return 0
    finally:
        errors.speak_command_line(False)
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
