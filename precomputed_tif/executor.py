"""Where tasks run: in this process, or on a pool of worker processes.

An executor has one method, ``imap_unordered(fn, tasks)``, that yields
``fn(task)`` for every task as results arrive. Tasks are taken from the
iterable only as workers free up, so a plan of a million tasks never sits in
memory at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Callable, Iterable, Iterator


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class SerialExecutor:
    """Runs every task here, one after the other (``--n-cores 1``; easy to debug)."""

    n = 1

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator:
        for task in tasks:
            yield fn(task)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A pool of ``n`` worker processes.

    Workers are started with ``spawn``: nothing is inherited from this process
    but the arguments of each task, so the same tasks run unchanged on other
    machines, and no thread pool (Blosc's, tqdm's) is copied mid-state by fork.
    """

    def __init__(self, n: int):
        self.n = n
        self.pool = cf.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator:
        pending: set[cf.Future] = set()
        tasks = iter(tasks)
        window = 2 * self.n
        try:
            while True:
                for task in tasks:
                    pending.add(self.pool.submit(fn, task))
                    if len(pending) >= window:
                        break
                if not pending:
                    return
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            for f in pending:
                f.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_executor(n_workers: int | None):
    """A serial executor for one worker, else a process pool."""
    n = n_workers or default_workers()
    return SerialExecutor() if n <= 1 else ProcessExecutor(n)
