"""Which tasks of a conversion are finished, kept beside the dataset so a rerun can skip them.

Where the storage can append (a local directory), ``.precomputed-tif-done`` holds one
task id per line, appended by the main process after the task's chunks were all written
and flushed: the same file every earlier version kept, so their unfinished conversions
resume. A crash can lose the last line (the task then runs again and writes the same
chunks), never record a task that did not finish.

An object store cannot append, and rewriting one growing object per task would cost as
much as all the records so far: there each finished task is one empty object,
``.precomputed-tif-done.d/<task id, percent-encoded>``, which appears whole or not at all.
Loading reads both forms, so a dataset copied from one kind of storage to the other
still resumes.
"""

from __future__ import annotations

import urllib.parse

from ..storage import StorageLike, open_storage

DONE_LOG = ".precomputed-tif-done"
DONE_OBJECTS = DONE_LOG + ".d"  # the prefix of the one-object-per-task form


class DoneLog:
    """The finished tasks recorded in ``where`` (a :class:`~.storage.Storage`, or a directory),
    under the key prefix ``within`` (a work directory of its own; ``""``: at the top)."""

    def __init__(self, where: StorageLike, within: str = ""):
        self.storage = open_storage(where)
        self._log = f"{within}/{DONE_LOG}" if within else DONE_LOG
        self._objects = f"{within}/{DONE_OBJECTS}" if within else DONE_OBJECTS

    def load(self) -> set[str]:
        """Ids of the finished tasks (a torn last line is ignored)."""
        data = self.storage.get(self._log) or b""
        lines = data.split(b"\n")
        done = {line.decode() for line in lines[:-1] if line}  # the part after the last newline is torn
        start = len(self._objects) + 1
        done.update(urllib.parse.unquote(key[start:]) for key in self.storage.list(self._objects))
        return done

    def record(self, task_id: str) -> None:
        """Record ``task_id`` as finished (call only once everything it wrote is durable)."""
        if self.storage.can_append:
            self.storage.append(self._log, task_id.encode() + b"\n")
        else:
            self.storage.put(f"{self._objects}/{urllib.parse.quote(task_id, safe='')}", b"")

    def close(self) -> None:
        """Nothing is held open between records; kept so callers can end a log's use in ``finally``."""

    def remove(self) -> None:
        """Forget every finished task (both forms)."""
        self.storage.delete(self._log)
        for key in list(self.storage.list(self._objects)):
            self.storage.delete(key)
