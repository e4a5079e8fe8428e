"""Fitting a conversion into a memory limit: how many workers, how big a block each holds.

Measured on this project's workers (``benchmarks/convert.py``): a worker
process needs about :data:`PROCESS_BYTES` for the interpreter and libraries,
plus about :data:`BLOCK_FACTOR` times the bytes of the block it holds (the
block, its first downsampled level, read and encode buffers). The main process
needs about :data:`PROCESS_BYTES` too.
"""

from __future__ import annotations

import logging
import os
import re

from ..errors import PrecomputedTifError, param
from .executor import default_workers

log = logging.getLogger(__name__)

PROCESS_BYTES = 90 * 2**20
BLOCK_FACTOR = 1.6
DEFAULT_SHARE = 0.5  # of the machine's memory, when no limit is given
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def total_memory() -> int:
    """Bytes of RAM on this machine (or a cgroup limit below it)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                value = f.read().strip()
            if value.isdigit():
                total = min(total, int(value))
        except OSError:
            pass
    return total


def default_limit() -> int:
    return int(total_memory() * DEFAULT_SHARE)


def parse_size(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5G"`` or a number of bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise PrecomputedTifError(f"{param('memory_limit')} must be a size like 8G or 512M; got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def plan(limit: int, workers: int, max_block: int, min_block: int,
         needs: str = "with this chunk size and data type") -> tuple[int, int]:
    """(workers, block bytes) that fit ``limit``: fewer workers before smaller blocks than
    ``min_block`` (one chunk), and a clear error when even one worker does not fit (saying
    what it needs the memory for: ``needs`` ends the message)."""
    for n in range(workers, 0, -1):
        block = int((limit - PROCESS_BYTES * (n + (n > 1))) / n / BLOCK_FACTOR)
        if block >= min_block:
            return n, min(block, max_block)
    need = PROCESS_BYTES * 2 + BLOCK_FACTOR * min_block
    raise PrecomputedTifError(
        f"{param('memory_limit')} {limit / 2**20:.0f}M is too small: one worker needs about {need / 2**20:.0f}M "
        f"{needs}")


def fit(limit: int | None, n_cores: int | None, dask_scheduler: str | None, min_block_bytes: int,
        max_block_bytes: int, needs: str = "with this chunk size and data type") -> tuple[int | None, int]:
    """(worker processes, bytes of the block each holds) for a run under ``limit`` bytes
    (default: :func:`default_limit`) with ``n_cores`` workers asked for (default: every
    core this process may use), each block between ``min_block_bytes`` (the least a task
    can work on) and ``max_block_bytes``. Fewer workers than asked is a warning; too little
    memory for one is a :class:`PrecomputedTifError` ending with ``needs``.

    On a Dask cluster (``dask_scheduler``) the workers have their own limits: (None,
    ``max_block_bytes``)."""
    if dask_scheduler:
        return None, max_block_bytes
    limit = default_limit() if limit is None else int(limit)
    wanted = n_cores or default_workers()
    n, block = plan(limit, wanted, max_block_bytes, min_block_bytes, needs)
    if n < wanted:
        log.warning("using %d worker processes instead of %d to stay under the memory limit of %.0f MiB",
                    n, wanted, limit / 2**20)
    log.debug("memory limit %.0f MiB: %d workers, blocks of up to %.0f MiB", limit / 2**20, n, block / 2**20)
    return n, block
