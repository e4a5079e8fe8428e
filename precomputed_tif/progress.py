"""Which tasks of a conversion are finished, kept in the destination so a rerun can skip them.

``.precomputed-tif-done`` holds one task id per line, appended by the main
process after the task's chunks were all written. A crash can lose the last
line (the task then runs again and writes the same chunks), never record a
task that did not finish.
"""

from __future__ import annotations

import contextlib
import io
import os

DONE_LOG = ".precomputed-tif-done"


class DoneLog:
    def __init__(self, dest: str):
        self.path = os.path.join(dest, DONE_LOG)
        self._file: io.FileIO | None = None

    def load(self) -> set[str]:
        """Ids of the finished tasks (a torn last line is ignored)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return set()
        lines = data.split(b"\n")
        return {line.decode() for line in lines[:-1] if line}  # the part after the last newline is torn

    def record(self, task_id: str) -> None:
        if self._file is None:
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - held by the object, which closes it
        self._file.write(task_id.encode() + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
