"""Where tasks run: in this process, on a pool of worker processes, or on a Dask cluster.

An executor has one method, ``imap_unordered(fn, tasks)``, that yields
``fn(task)`` for every task as results arrive. Tasks are taken from the
iterable only as workers free up, so a plan of a million tasks never sits in
memory at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
import os
from typing import Callable, Iterable, Iterator

from .errors import PrecomputedTifError


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


class DaskExecutor:
    """Tasks run on an existing Dask distributed cluster (``--dask-scheduler``).

    The same task objects as locally; workers read the planes and write the
    destination on a filesystem they share with this machine.
    """

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise PrecomputedTifError(
                "--dask-scheduler needs the distributed package: pip install 'precomputed-tif[dask]'") from None
        try:
            self.client = Client(address, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise PrecomputedTifError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
        threads = self.client.nthreads()
        if not threads:
            self.client.close()
            raise PrecomputedTifError(f"the Dask cluster at {address} has no workers")
        self.n = sum(threads.values())

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator:
        from distributed import as_completed

        tasks = iter(tasks)
        window = 2 * self.n
        first = [self.client.submit(fn, t, pure=False) for t in itertools.islice(tasks, window)]
        if not first:
            return
        running = as_completed(first, loop=self.client.loop)
        try:
            for future in running:
                result = future.result()
                future.release()
                for task in itertools.islice(tasks, 1):
                    running.add(self.client.submit(fn, task, pure=False))
                yield result
        finally:
            for future in list(running.futures):
                future.cancel()

    def close(self) -> None:
        self.client.close()


def make_executor(n_workers: int | None, dask_scheduler: str | None = None):
    """Dask when a scheduler is given, else a serial executor for one worker or a process pool."""
    if dask_scheduler:
        return DaskExecutor(dask_scheduler)
    n = n_workers or default_workers()
    return SerialExecutor() if n <= 1 else ProcessExecutor(n)
