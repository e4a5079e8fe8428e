"""How this project's processes answer signals and end with their parent.

The commands (``cli/``), the pool of conversion workers (``pipeline/executor.py``)
and the web server's worker processes (``serving/http.py``) all stop the same
way: SIGTERM and SIGHUP are raised in the main thread as :class:`Interrupted`,
a ``KeyboardInterrupt`` like Ctrl-C's, so the same ``finally`` blocks stop the
workers; a child process ends with its parent however the parent ends. This
module is on the ground floor (it imports nothing of the project), so every
floor may use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator

# The signals that stop a command: Ctrl-C, ``kill`` (and batch schedulers), a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the
    same ``finally`` blocks stop the workers and nothing is presented as finished."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt(signum, frame) -> None:
    """A signal handler raising :class:`Interrupted`."""
    raise Interrupted(signum)


def ignore_signals(signals: Iterable[int] = STOP_SIGNALS) -> None:
    """Ignore ``signals`` from now on in this process (for instance while its last line is
    printed, or its children stopped, so that a second Ctrl-C is not a traceback).

    Only the main thread can set handlers: called from another thread, this does nothing."""
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C's SIGINT, SIGHUP and SIGTERM while worker processes may start.

    A new process keeps the blocked set through exec, so a worker never sees SIGINT
    or SIGHUP, even while it is still importing (when no handler of ours could turn
    them into anything but a traceback); it unblocks SIGTERM once it has its handler.
    And no signal stops this process between a worker's start and the hand-over of
    its first instructions (a worker left without them prints a traceback), nor
    before the pool records it (it would escape the pool's ``stop``).

    Blocking covers signals that arrive during the block; one that arrived just before
    may still be waiting for its Python handler, which would run at any line inside.
    So the handlers are swapped for ones that only remember, and the signal is
    answered with the real handler when the block ends.
    """
    caught: list = []
    saved: dict = {}
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            handler = signal.getsignal(sig)
            if callable(handler):
                saved[sig] = handler
                signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if caught:
            signum, frame = caught[0]
            saved[signum](signum, frame)


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent ends, however it ends (SIGKILL
    included: prctl PR_SET_PDEATHSIG). Elsewhere nothing is asked; callers check getppid."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no prctl
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


_loading: list = []  # the handler interrupt_while_loading installed, while it is in place


def interrupt_while_loading(prog: str) -> None:
    """For a command ``prog`` (``precomputed-*``, ``blockfs*``): Ctrl-C while its modules load
    (a second or more from a cold disk) is the one line it prints at any later moment, not a
    traceback from inside an import. Until :func:`loaded`, SIGINT prints that line and ends the
    process, which has nothing to clean up yet. A program importing the package keeps its
    KeyboardInterrupt."""
    if not prog.startswith(("precomputed-", "blockfs")):
        return
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return

    def interrupted(signum, frame):
        print(f"{prog}: interrupted (SIGINT)", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, interrupted)
    _loading.append(interrupted)


def loaded() -> None:
    """A command's modules are loaded: SIGINT is KeyboardInterrupt again, which the command
    answers by stopping its workers and saying how to resume."""
    if _loading and threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) is _loading[0]:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _loading.clear()
