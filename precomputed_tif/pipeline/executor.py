"""Where tasks run: in this process, on a pool of worker processes, or on a Dask cluster.

An executor has one method, ``imap_unordered(fn, tasks)``, that yields
``fn(task)`` for every task as results arrive. Tasks are taken from the
iterable only as workers free up, so a plan of a million tasks never sits in
memory at once.

Use an executor as a context manager: leaving the block normally waits for the
workers to finish and closes them; leaving it by an exception (an error, Ctrl-C,
or SIGTERM/SIGHUP, raised as :class:`..process.Interrupted`) stops
them at once, so no worker of an abandoned run goes on writing or keeps the
terminal's output open.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator

from ..errors import PrecomputedTifError, param
from ..process import die_with_parent, signals_held


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Executor:
    n: int

    def close(self) -> None:
        """Wait for the tasks under way and release the workers."""

    def stop(self) -> None:
        """Stop the workers now, abandoning the tasks under way (their results are not recorded)."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.stop()


class SerialExecutor(_Executor):
    """Runs every task here, one after the other (``--n-cores 1``; easy to debug)."""

    n = 1

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator:
        for task in tasks:
            yield fn(task)


def _worker_terminated(signum, frame) -> None:
    """SIGTERM in a worker (the main process stopping the run, or dying): release what this
    process registered with multiprocessing's resource tracker -- the semaphore a library
    makes at import, such as numcodecs' Blosc lock -- which the tracker would otherwise report
    as leaked, in lines around the main process's one; then end at once, abandoning the task."""
    from multiprocessing import util

    # the finalizers a normal exit runs first, semaphores' among them (private: not in typeshed)
    util._run_finalizers(0)  # type: ignore[attr-defined]
    os._exit(128 + signum)


def _worker_started(parent: int) -> None:
    """Run first in every worker process.

    Ctrl-C reaches every process of the terminal's foreground group: the main
    process alone answers it (it stops the workers), so workers ignore SIGINT
    (blocked already since they started, see :func:`..process.signals_held`) rather
    than each printing a traceback. And a worker dies with the main
    process, even one killed with SIGKILL, rather than writing on for a run that
    is over.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_terminated)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    die_with_parent()
    if os.getppid() != parent:  # the main process ended before the line above took effect
        os._exit(1)


class ProcessExecutor(_Executor):
    """A pool of ``n`` worker processes.

    Workers are started with ``spawn``: nothing is inherited from this process
    but the arguments of each task, so the same tasks run unchanged on other
    machines, and no thread pool (Blosc's, tqdm's) is copied mid-state by fork.
    """

    def __init__(self, n: int):
        self.n = n
        self.pool = cf.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_worker_started, initargs=(os.getpid(),))

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator:
        # Futures left pending when the caller stops are not cancelled here: close() cancels
        # them, and stop() ends the workers, after which the pool fails them (a cancelled one
        # would make the pool's own thread fail with a traceback as it does).
        pending: set[cf.Future] = set()
        tasks = iter(tasks)
        window = 2 * self.n
        while True:
            for task in tasks:
                with signals_held():  # a submit may start a worker process
                    pending.add(self.pool.submit(fn, task))
                if len(pending) >= window:
                    break
            if not pending:
                return
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for f in done:
                yield f.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        # concurrent.futures can only wait for running tasks; terminate the processes instead.
        # ``_processes`` (pid -> Process) is the pool's own record of its workers.
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(5)
            if p.is_alive():  # pragma: no cover - a worker stuck in uninterruptible I/O
                p.kill()
                p.join(5)
        # Now the pool sees its workers gone, fails what was pending and releases its queues and
        # locks (which multiprocessing's resource tracker would otherwise report as leaked at exit).
        self.pool.shutdown(wait=True)


class DaskExecutor(_Executor):
    """Tasks run on an existing Dask distributed cluster (``--dask-scheduler``).

    The same task objects as locally; workers read the planes and write the
    destination on a filesystem they share with this machine.
    """

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise PrecomputedTifError(
                f"{param('dask_scheduler')} needs the distributed package: pip install 'precomputed-tif[dask]'"
            ) from None
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

    def stop(self) -> None:
        # imap_unordered has cancelled its futures (tasks already running on a worker's thread
        # finish there: Dask cannot interrupt a thread); do not wait long for the scheduler.
        with contextlib.suppress(Exception):  # leaving anyway; the interrupt or error is what is reported
            self.client.close(timeout=5)


def make_executor(n_workers: int | None, dask_scheduler: str | None = None):
    """Dask when a scheduler is given, else a serial executor for one worker or a process pool."""
    if dask_scheduler:
        return DaskExecutor(dask_scheduler)
    n = n_workers or default_workers()
    return SerialExecutor() if n <= 1 else ProcessExecutor(n)
