"""The resumable runner: finished tasks are skipped, each task is recorded once its result is in,
a failing task ends the run with nothing more recorded -- on the serial executor and on real
worker processes, with the done log a conversion keeps."""

import os
import time
from dataclasses import dataclass

import pytest

from precomputed_tif.pipeline.executor import ProcessExecutor, SerialExecutor
from precomputed_tif.pipeline.progress import DoneLog
from precomputed_tif.pipeline.runner import run_resumable


@dataclass(frozen=True)
class Note:
    """A task that appends its id to ``dir``/runs (so every run of it is seen) after ``delay`` s."""

    id: str
    dir: str
    steps: int = 1
    delay: float = 0.0
    fail: bool = False
    needs: tuple[str, ...] = ()  # ids that must have run before this one


def write_note(task: Note) -> tuple[str, int]:
    time.sleep(task.delay)
    if task.fail:
        raise ValueError(f"task {task.id} failed")
    missing = set(task.needs) - set(runs(task.dir))
    if missing:
        raise AssertionError(f"{task.id} started before {sorted(missing)} finished")
    fd = os.open(os.path.join(task.dir, "runs"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, task.id.encode() + b"\n")
    finally:
        os.close(fd)
    return task.id, task.steps  # what the pipeline's task functions return; the runner needs none of it


def runs(where) -> list[str]:
    try:
        with open(os.path.join(where, "runs")) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def steps(task: Note) -> int:
    return task.steps


def test_recorded_tasks_are_skipped_and_finished_ones_recorded(tmp_path, caplog, capsys):
    d = str(tmp_path)
    log = DoneLog(d)
    log.record("a")
    log.record("c")
    first = [Note("a", d, 2), Note("b", d, 3)]
    second = [Note("c", d, 5), Note("d", d, 1), Note("e", d, 4)]
    with caplog.at_level("INFO"), SerialExecutor() as executor:
        run_resumable(executor, write_note, [first, second], DoneLog(d), total=15, desc="noting", unit="note",
                      what="notes", size=steps, progress=True)
    assert runs(d) == ["b", "d", "e"]
    assert DoneLog(d).load() == {"a", "b", "c", "d", "e"}
    assert caplog.text.count("skipped 1 notes finished by an earlier run") == 2
    bar = capsys.readouterr().err
    assert "noting" in bar and "15/15" in bar, bar  # skipped tasks moved the bar by their size too

    # Everything recorded: a rerun runs nothing and says so.
    caplog.clear()
    with caplog.at_level("INFO"), SerialExecutor() as executor:
        run_resumable(executor, write_note, [first + second], DoneLog(d), total=15, desc="noting", unit="note",
                      what="notes")
    assert runs(d) == ["b", "d", "e"]
    assert "skipped 5 notes" in caplog.text


def test_a_stage_finishes_before_the_next_starts_on_worker_processes(tmp_path):
    d = str(tmp_path)
    first = [Note(f"1-{i}", d, delay=0.05 * (i % 3)) for i in range(7)]
    second = [Note(f"2-{i}", d, needs=tuple(t.id for t in first)) for i in range(5)]
    with ProcessExecutor(2) as executor:
        run_resumable(executor, write_note, iter([iter(first), iter(second)]), DoneLog(d), total=12,
                      desc="noting", unit="note", what="notes")
    done = runs(d)
    assert sorted(done[:7]) == sorted(t.id for t in first) and sorted(done[7:]) == sorted(t.id for t in second)
    assert DoneLog(d).load() == set(done)


def test_a_failing_task_ends_the_run_and_nothing_more_is_recorded(tmp_path):
    d = str(tmp_path)
    tasks = [Note("a", d), Note("b", d, fail=True), Note("c", d)]
    with pytest.raises(ValueError, match="task b failed"), SerialExecutor() as executor:
        run_resumable(executor, write_note, [tasks], DoneLog(d), total=3, desc="noting", unit="note", what="notes")
    assert runs(d) == ["a"]
    assert DoneLog(d).load() == {"a"}
    # The rerun skips what finished and runs the rest.
    fixed = [Note("a", d), Note("b", d), Note("c", d)]
    with SerialExecutor() as executor:
        run_resumable(executor, write_note, [fixed], DoneLog(d), total=3, desc="noting", unit="note", what="notes")
    assert runs(d) == ["a", "b", "c"]
    assert DoneLog(d).load() == {"a", "b", "c"}


def test_a_failing_task_on_worker_processes_stops_them_unrecorded(tmp_path):
    d = str(tmp_path)
    # "boom" fails while slow tasks are under way on the other worker and queued behind it.
    tasks = [Note("quick", d), Note("boom", d, delay=0.3, fail=True)] + [Note(f"slow-{i}", d, delay=1.0)
                                                                          for i in range(6)]
    started = time.monotonic()
    with pytest.raises(ValueError, match="task boom failed"), ProcessExecutor(2) as executor:
        run_resumable(executor, write_note, [tasks], DoneLog(d), total=len(tasks), desc="noting", unit="note",
                      what="notes")
    assert time.monotonic() - started < 5  # the workers were stopped, not waited for
    recorded = DoneLog(d).load()
    assert "boom" not in recorded and recorded <= set(runs(d))
    assert len(recorded) < len(tasks) - 1
    time.sleep(1.5)  # a worker left running would finish a slow task by now
    assert DoneLog(d).load() == recorded
    assert set(runs(d)) <= recorded | {"slow-0"}  # at most the task whose result was abandoned
