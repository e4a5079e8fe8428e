"""A :class:`Storage` as a read-only zarr-python 3 store, so zarr-python reads arrays of
another tool (chunks, shards, any codec) from wherever the storage is: a bucket's objects
come through the same client, environment and one-line errors (:class:`~.objects.StorageError`)
as everything else this project reads from it.

Reads only: zarr-python's writes, deletes and listings for writing are refused. Every
request is one of the storage's: a whole object (``get``), or byte ranges of one version of
an object (:meth:`Storage.open_reader`). A shard's index and the chunks it points to are
such ranges, read by separate requests: on a bucket, where a reader cannot keep an old
version, the version an object's first range came from is kept (for the last
:data:`PINNED` objects read by range), and a later range of another version is an
:class:`~.base.ObjectChanged` -- never an old index applied to new bytes. A range that
the object ends before (a truncated shard whose index points past its end) is
:class:`~..errors.DamagedData`, not a chunk zarr-python would take for missing and fill.

The storage's blocking calls run in daemon threads, so zarr-python fetches the chunks of one
read concurrently, and a request hanging on the network never holds the process at its exit
(as the threads of ``asyncio.to_thread`` would, joined when the interpreter ends).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TypeVar

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype

from ..errors import DamagedData
from .base import ObjectChanged, ObjectReader, Storage, check_prefix

T = TypeVar("T")

# How many objects' versions a store keeps (a reader holds a key and its stat, nothing open):
# far more than the shards one read of zarr-python has in flight.
PINNED = 4096


class _DaemonThreads:
    """Up to ``size`` daemon threads running blocking calls: unlike the threads of
    ``asyncio.to_thread`` (joined when the interpreter ends), one blocked on a request to a
    server that does not answer never holds the process at its exit. Started as needed; a
    forked child starts its own."""

    def __init__(self, size: int):
        self.size = size
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # the parent's threads are not the child's

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # Threads started, and threads waiting for a job less jobs waiting for a thread.
        self._threads = self._idle = 0

    def submit(self, fn: Callable[..., T], *args) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            self._queue.put((future, fn, args))
            if self._idle <= 0 and self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._work, args=(self._queue,), name="zarr store request",
                                 daemon=True).start()
            else:
                self._idle -= 1  # a waiting thread takes it, or the next one free
        return future

    def _work(self, jobs: queue.SimpleQueue) -> None:
        while True:
            future, fn, args = jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the awaiting coroutine, which raises it
                    future.set_exception(exc)
            del future, fn, args  # (no reference kept to the last job while waiting)
            with self._lock:
                self._idle += 1


_THREADS = _DaemonThreads(16)


async def _in_thread(fn: Callable[..., T], *args) -> T:
    """``fn(*args)`` in one of the daemon threads, awaited."""
    return await asyncio.wrap_future(_THREADS.submit(fn, *args))


class StorageZarrStore(Store):
    """``storage`` (its root is the store's root) as a read-only zarr-python store."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True

    def __init__(self, storage: Storage):
        super().__init__(read_only=True)
        self.storage = storage
        self._pinned: OrderedDict[str, ObjectReader] = OrderedDict()
        self._lock = threading.Lock()

    def __eq__(self, value: object) -> bool:
        return isinstance(value, StorageZarrStore) and value.storage.location() == self.storage.location()

    def __hash__(self) -> int:
        return hash(self.storage.location())

    def __repr__(self) -> str:
        return f"StorageZarrStore({self.storage.location()!r})"

    def _read(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        """The bytes ``byte_range`` asks for of ``key`` (all of them for None); None when there
        is no such object."""
        if byte_range is None:
            return self.storage.get(key)
        if not isinstance(byte_range, (RangeByteRequest, OffsetByteRequest, SuffixByteRequest)):
            raise TypeError(f"unexpected byte range {byte_range!r}")
        if self.storage.readers_keep_versions:
            reader = self.storage.open_reader(key)  # one open file: one version, whatever happens
            if reader is None:
                return None
            with reader:
                return self._read_range(key, reader, byte_range)
        reader = self._pinned_reader(key)
        if reader is None:
            return None
        try:
            return self._read_range(key, reader, byte_range)
        except ObjectChanged:
            with self._lock:  # a later read (a command run again in this process) takes the new one
                if self._pinned.get(key) is reader:
                    del self._pinned[key]
            raise

    def _pinned_reader(self, key: str) -> ObjectReader | None:
        """The reader of the version of ``key`` this store reads (see the module), None when
        there is no such object."""
        with self._lock:
            reader = self._pinned.get(key)
            if reader is not None:
                self._pinned.move_to_end(key)
                return reader
        reader = self.storage.open_reader(key)  # (outside the lock: a request)
        if reader is None:
            return None
        with self._lock:
            reader = self._pinned.setdefault(key, reader)  # another thread's, if it was first
            self._pinned.move_to_end(key)
            while len(self._pinned) > PINNED:
                self._pinned.popitem(last=False)
        return reader

    def _read_range(self, key: str, reader: ObjectReader, byte_range: ByteRequest) -> bytes:
        """The bytes of ``key`` that ``byte_range`` asks for, of the version ``reader`` reads."""
        size = reader.stat.size
        if isinstance(byte_range, SuffixByteRequest):
            start = max(0, size - byte_range.suffix)
            return reader.read(start, size - start)
        if isinstance(byte_range, OffsetByteRequest):
            return reader.read(byte_range.offset, max(0, size - byte_range.offset))
        start, end = byte_range.start, byte_range.end
        data = reader.read(start, max(0, end - start))
        if len(data) < end - start:
            # zarr-python asks for exact ranges (a shard's index, a chunk the index locates):
            # fewer bytes, or none, would be a chunk taken for missing and filled.
            raise DamagedData(f"{self.storage.location(key)} is {size} bytes long, so its bytes {start} to {end} "
                              "(a shard's index, or a chunk the index points to) are missing: a truncated or "
                              "damaged object")
        return data

    async def get(self, key: str, prototype: BufferPrototype,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        data = await _in_thread(self._read, key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(key, prototype, r) for key, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        return await _in_thread(self.storage.exists, key)

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()

    async def delete(self, key: str) -> None:
        self._check_writable()

    def _keys(self, prefix: str) -> list[str]:
        """The keys of every object whose key starts with ``prefix`` (characters, as zarr-python
        means it), listed below its last whole part."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        return [k for k in self.storage.list(check_prefix(folder)) if k.startswith(prefix)]

    async def list(self) -> AsyncIterator[str]:
        for key in await _in_thread(self._keys, ""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in await _in_thread(self._keys, prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        start = prefix + "/" if prefix else ""
        seen: set[str] = set()
        for key in await _in_thread(self._keys, start):
            name = key[len(start):].split("/", 1)[0]
            if name not in seen:
                seen.add(name)
                yield name
