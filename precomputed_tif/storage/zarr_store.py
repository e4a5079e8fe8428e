"""A :class:`Storage` as a read-only zarr-python 3 store, so zarr-python reads arrays of
another tool (chunks, shards, any codec) from wherever the storage is: a bucket's objects
come through the same client, environment and one-line errors (:class:`~.objects.StorageError`)
as everything else this project reads from it.

Reads only: zarr-python's writes, deletes and listings for writing are refused. Every
request is one of the storage's: a whole object (``get``), a byte range (``get_range``), or
the last bytes of an object (a shard's index: its size, then a range of that version). The
storage's blocking calls run in threads, so zarr-python fetches the chunks of one read
concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype

from .base import Storage, check_prefix


class StorageZarrStore(Store):
    """``storage`` (its root is the store's root) as a read-only zarr-python store."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True

    def __init__(self, storage: Storage):
        super().__init__(read_only=True)
        self.storage = storage

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
        if isinstance(byte_range, RangeByteRequest):
            return self.storage.get_range(key, byte_range.start, max(0, byte_range.end - byte_range.start))
        if isinstance(byte_range, OffsetByteRequest):
            size = self.storage.size(key)
            return None if size is None else self.storage.get_range(key, byte_range.offset,
                                                                    max(0, size - byte_range.offset))
        if isinstance(byte_range, SuffixByteRequest):
            # The size and the bytes of one version (a shard replaced meanwhile is ObjectChanged).
            reader = self.storage.open_reader(key)
            if reader is None:
                return None
            with reader:
                size = reader.stat.size
                start = max(0, size - byte_range.suffix)
                return reader.read(start, size - start)
        raise TypeError(f"unexpected byte range {byte_range!r}")

    async def get(self, key: str, prototype: BufferPrototype,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        data = await asyncio.to_thread(self._read, key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(key, prototype, r) for key, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.storage.exists, key)

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
        for key in await asyncio.to_thread(self._keys, ""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in await asyncio.to_thread(self._keys, prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        start = prefix + "/" if prefix else ""
        seen: set[str] = set()
        for key in await asyncio.to_thread(self._keys, start):
            name = key[len(start):].split("/", 1)[0]
            if name not in seen:
                seen.add(name)
                yield name
