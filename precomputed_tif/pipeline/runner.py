"""Running tasks so that a rerun resumes: the one loop behind a conversion's chunks, OME-TIFF's
tiling and meshing's blocks and merges.

A task is any picklable object with an ``id`` (a string unique within its run); the task
function does the work and writes its results itself. The main process records a task's id
in the :class:`~.progress.DoneLog` only once the task's result has arrived -- the task wrote
and flushed everything it makes -- so a rerun skips exactly the tasks that finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tqdm import tqdm

from .progress import DoneLog

log = logging.getLogger(__name__)


class Task(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=Task)


@dataclass(frozen=True)
class _ThenId:
    """``fn(task)``, then the task's id, for the main process to record. ``fn`` must be a
    module-level function: this object travels to worker processes and Dask nodes by pickle."""

    fn: Callable

    def __call__(self, task: Task) -> str:
        self.fn(task)
        return task.id


def _one(task: object) -> int:
    return 1


def run_resumable(executor, fn: Callable[[T], object], stages: Iterable[Iterable[T]], done_log: DoneLog, *,
                  total: int, desc: str, unit: str, what: str, size: Callable[[T], int] = _one,
                  progress: bool = False) -> None:
    """Run ``fn(task)`` on ``executor`` for every task of every stage that ``done_log`` does
    not record as finished, and record each one as its result arrives.

    Stages run one after the other: every task of a stage finishes before the next stage's
    first task starts (a pyramid pass reads what the pass before wrote). Tasks are drawn
    from each stage's iterable only as workers free up, so a stage may be a generator of a
    million tasks.

    One progress bar (tqdm, on stderr when ``progress``) counts ``total`` ``unit``\\ s
    under ``desc``; a task moves it by ``size(task)`` (default 1), a skipped task as soon
    as it is skipped. The number of tasks skipped in a stage is logged as "skipped N
    ``what`` finished by an earlier run".

    The caller holds ``executor``'s context: a task that raises (or Ctrl-C, SIGTERM) ends
    this call with that exception, after which nothing more is recorded, and leaving the
    executor's block by it stops the workers. ``done_log`` is closed when this call
    returns or raises.
    """
    done = done_log.load()
    run = _ThenId(fn)
    try:
        with tqdm(total=total, desc=desc, unit=unit, disable=not progress, smoothing=0.1) as bar:
            for tasks in stages:
                # Bar steps of the tasks under way, by id: only a bounded window of them at a time.
                running: dict[str, int] = {}
                for task_id in executor.imap_unordered(run, _not_done(tasks, done, bar, size, running, what)):
                    done_log.record(task_id)
                    bar.update(running.pop(task_id))
    finally:
        done_log.close()


def _not_done(tasks: Iterable[T], done: set[str], bar, size: Callable[[T], int], running: dict[str, int],
              what: str) -> Iterator[T]:
    """The tasks not in ``done``, each noted in ``running`` with its bar steps as it is handed
    out; the others only move the bar, and their number is logged at the end."""
    skipped = 0
    for task in tasks:
        if task.id in done:
            skipped += 1
            bar.update(size(task))
        else:
            running[task.id] = size(task)
            yield task
    if skipped:
        log.info("skipped %d %s finished by an earlier run", skipped, what)
