"""What every chunk store must do: a class of tests each format's test module runs.

A test class that runs :class:`ChunkStoreContract` provides two fixtures:

- ``make_subject(dtype, channels, segmentation)``: a :class:`Subject` -- a newly created, empty
  store of its kind for a small volume of that kind (levels 1 and 2, odd sizes, so the last
  chunk of every axis is smaller than the chunk size) and the conversion plan it belongs to;
- ``kind``, for the round trip: each (dtype, channels, segmentation) of :data:`KINDS` the format
  holds, parametrized by the test module (a kind a format does not hold is not a case of the
  contract: the module checks that planning it is refused instead);
- ``foreign_levels``: levels other formats wrote chunks into, as (store class, (storage, level
  key)), for :meth:`ChunkStore.holds`.

Everything here goes through :class:`~precomputed_tif.formats.store.ChunkStore` (and, to write,
the task writer it hands out), so the same cases hold every format to the same promises.

Writing: chunks are written the way a conversion's tasks write them (``pyramid.run_task``):
``store.task()`` (a writer, ``write_chunk`` for each chunk of one task region, the writer's
``finish``, then the store's ``finish``). That is the only way into a store whose files hold
many chunks (precomputed shards, OME-Zarr 0.5 shards): such a writer collects the task's shard
and replaces the whole file when it finishes, so chunks of that shard the task did not write
are absent afterwards. Those stores do not offer ``ChunkStore.write_chunk`` for their sharded
scales (it is a user error, and writes nothing); the other stores write a chunk directly too.

``chunk_keys`` may be None (the store does not keep whole chunks in objects: blockfs), and then
the subject names the files a chunk's bytes lie in for the damage cases; ``chunk_version`` may
be None (the store cannot tell cheaply), and then the version cases have nothing to check.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from precomputed_tif.errors import DamagedData, PrecomputedTifError
from precomputed_tif.formats.store import ChunkStore, ShardOwningWriter
from precomputed_tif.geometry import Box, Geometry
from tests.helpers.stacks import make_volume

# (dtype, channels, segmentation) of the volumes the round trip covers.
KINDS = [("uint8", 1, False), ("uint16", 1, False), ("uint32", 1, False), ("float32", 1, False),
         ("uint8", 3, False), ("uint16", 3, False), ("uint32", 1, True), ("uint64", 1, True)]


def kind_id(kind) -> str:
    dtype, channels, segmentation = kind
    return f"{dtype}{'-labels' if segmentation else ''}{f'-{channels}ch' if channels > 1 else ''}"


@dataclass
class Subject:
    """A store under test and the plan it was made for."""

    store: ChunkStore
    geometry: Geometry
    passes: list  # the conversion's passes: which task regions write which level
    segmentation: bool
    # The files a chunk's bytes lie in, for a store whose chunk_keys is None.
    data_files: Callable[[ChunkStore, str, Box], list[str]] | None = None
    _regions: dict = field(default_factory=dict)

    def key(self, number: int) -> str:
        return self.geometry.level(number).key

    def chunks(self, number: int) -> list[Box]:
        return list(self.geometry.chunk_boxes(number))

    def regions(self, number: int) -> list[Box]:
        """The task regions that write level ``number``, in its coordinates (as ``tasks_of`` cuts
        the pass's first level, scaled down to this one)."""
        if number not in self._regions:
            p = next(p for p in self.passes if number in p.written)
            first, level = self.geometry.level(p.first), self.geometry.level(number)
            ratio = [b // a for a, b in zip(first.factor, level.factor)]
            sx, sy, sz = first.size
            bx, by, bz = p.task_size
            self._regions[number] = [
                Box(x0, min(x0 + bx, sx), y0, min(y0 + by, sy), z0, min(z0 + bz, sz)).scaled_down(ratio)
                for z0 in range(0, sz, bz) for y0 in range(0, sy, by) for x0 in range(0, sx, bx)]
        return self._regions[number]

    def region_of(self, number: int, box: Box) -> Box:
        return next(r for r in self.regions(number) if box.intersect(r) == box)

    def volume(self, number: int, seed: int = 0) -> np.ndarray:
        """Data for a whole level, with the store's array shape and dtype; each seed different."""
        x, y, z = self.geometry.level(number).size
        per_channel = [make_volume((z, y, x), self.store.dtype, self.segmentation, seed=seed * 10 + c + number)
                       for c in range(self.store.channels)]
        return per_channel[0] if self.store.channels == 1 else np.stack(per_channel)

    def write(self, number: int, chunks: dict[Box, np.ndarray], store: ChunkStore | None = None) -> None:
        """Write chunks of a level as the pyramid's tasks do: one writer per task region."""
        store = store or self.store
        by_region: dict[Box, list[Box]] = {}
        for box in chunks:
            by_region.setdefault(self.region_of(number, box), []).append(box)
        for boxes in by_region.values():
            with store.task() as writer:
                for box in boxes:
                    writer.write_chunk(self.key(number), box, chunks[box])

    def write_level(self, number: int, data: np.ndarray, store: ChunkStore | None = None) -> None:
        self.write(number, {box: data[(...,) + box.slices] for box in self.chunks(number)}, store)

    def path_of(self, object_key: str) -> str:
        """The file holding a stored object (both storages of the tests keep objects as files)."""
        return os.path.join(self.store.storage.root, *object_key.split("/"))  # type: ignore[attr-defined]

    def files(self, number: int, box: Box) -> list[str]:
        keys = self.store.chunk_keys(self.key(number), box)
        if keys is not None:
            return [self.path_of(k) for k in keys]
        assert self.data_files is not None, "a store without chunk_keys needs the subject's data_files"
        return self.data_files(self.store, self.key(number), box)

    def shares_files(self, number: int, boxes: list[Box]) -> bool:
        """Whether these chunks lie in one object (a shard) that a task writer replaces whole."""
        keys = [self.store.chunk_keys(self.key(number), box) for box in boxes]
        return len(boxes) > 1 and keys[0] is not None and all(k == keys[0] for k in keys)

    def reopen(self) -> ChunkStore:
        """The same dataset opened anew, as a server or the next pass opens it."""
        store = type(self.store)(self.store.storage, self.store.info)
        store.lossless_copies = self.store.lossless_copies
        return store


def assert_same(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype}, expected {expected.dtype}"
    assert np.array_equal(got, expected), f"{what}: {np.count_nonzero(got != expected)} voxels differ"


def _damage(path: str, how: str) -> None:
    with open(path, "r+b") as f:
        data = f.read()
        if how == "truncated":
            f.truncate(len(data) // 2)
        elif how == "garbage":
            f.seek(0)
            f.write(np.random.default_rng(7).integers(0, 256, len(data), dtype=np.uint8).tobytes())
        else:  # "flipped": a few bytes here and there, the file's size unchanged
            for at in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
                f.seek(at)
                f.write(bytes(b ^ 0x5A for b in data[at:at + 4]))


class ChunkStoreContract:
    @pytest.fixture
    def make_subject(self):
        raise NotImplementedError("a store's test class provides make_subject(dtype, channels, segmentation)")

    @pytest.fixture
    def foreign_levels(self):
        raise NotImplementedError("a store's test class provides level directories of other formats")

    @pytest.fixture
    def subject(self, make_subject) -> Subject:
        return make_subject("uint16", 1, False)

    # -- what a level directory holds ----------------------------------------------------------

    def test_holds_its_own_level_and_no_other(self, subject, foreign_levels, tmp_path):
        s = subject
        s.write_level(1, s.volume(1))
        cls, own = type(s.store), (s.store.storage, s.key(1))
        assert cls.holds(*own)
        empty = tmp_path / "empty"
        empty.mkdir()
        assert not cls.holds(type(s.store.storage)(empty), s.key(1))
        others = [(other_cls, level) for other_cls, level in foreign_levels if other_cls is not cls]
        assert others, "no other format to tell apart"
        for other_cls, level in others:
            assert not cls.holds(*level), f"{cls.__name__} takes {level} for its own"
            assert not other_cls.holds(*own), f"{other_cls.__name__} takes {own} for its own"

    # -- round trips -----------------------------------------------------------------------------

    def test_every_chunk_reads_back_as_written(self, make_subject, kind):
        """Every chunk of two levels, edge chunks (smaller than the chunk size) included, of each
        data type and channel count the format holds."""
        s = make_subject(*kind)
        size, chunk = s.geometry.level(1).size, s.geometry.chunk_size
        assert all(n % c for n, c in zip(size, chunk)), "the volume must end in a partial chunk on every axis"
        levels = {number: s.volume(number) for number in (1, 2)}
        for number, data in levels.items():
            s.write_level(number, data)
        for store in (s.store, s.reopen()):
            for number, data in levels.items():
                for box in s.chunks(number):
                    got = store.read_chunk(s.key(number), box)
                    assert got.shape == store.array_shape(box)
                    assert_same(got, data[(...,) + box.slices], f"level {number} chunk {box.name}")

    def test_read_region_across_chunks(self, subject):
        s = subject
        data = s.volume(1)
        s.write_level(1, data)
        (sx, sy, sz), (cx, cy, cz) = s.geometry.level(1).size, s.geometry.chunk_size
        boxes = [Box(3, sx - 2, 5, sy - 1, 1, sz - 1),  # starts and ends inside chunks, spans all of them
                 Box(0, sx, 0, sy, 0, sz),  # the whole level
                 Box(cx - 1, cx + 1, cy - 1, cy + 1, cz - 1, cz + 1),  # two voxels across every chunk border
                 Box(sx - 1, sx, sy - 1, sy, sz - 1, sz)]  # the last voxel
        for box in boxes:
            assert_same(s.store.read_region(s.key(1), box), data[(...,) + box.slices], f"region {box.name}")

    def test_never_written_chunks_read_as_zeros(self, subject):
        s = subject
        data = s.volume(1)
        first = s.regions(1)[0]
        in_first = [b for b in s.chunks(1) if first.intersect(b) == b]
        left_out = in_first[-1]  # in a region (a shard) that is written, but not written itself
        s.write(1, {b: data[(...,) + b.slices] for b in in_first if b != left_out})
        never = ([(1, left_out)] + [(1, b) for b in s.chunks(1) if first.intersect(b) is None]
                 + [(2, b) for b in s.chunks(2)])  # and a level nothing was written to
        for store in (s.store, s.reopen()):
            for number, box in never:
                assert_same(store.read_chunk(s.key(number), box), np.zeros(store.array_shape(box), store.dtype),
                            f"never written level {number} chunk {box.name}")
            for b in in_first:
                if b != left_out:
                    assert_same(store.read_chunk(s.key(1), b), data[(...,) + b.slices], f"chunk {b.name}")

    def test_levels_are_apart(self, subject):
        s = subject
        s.write_level(2, s.volume(2, seed=1))
        for box in s.chunks(1):
            assert not s.store.read_chunk(s.key(1), box).any()
        assert_same(s.store.read_region(s.key(2), s.geometry.level(2).bounds), s.volume(2, seed=1), "level 2")

    # -- writing ---------------------------------------------------------------------------------

    def test_direct_write_or_a_user_error(self, subject):
        """``write_chunk`` on the store itself writes the chunk -- or, for a scale whose files hold
        many chunks (a task writer owning shards), is a user error that writes nothing."""
        s = subject
        box = s.chunks(1)[-1]
        data = s.volume(1)[(...,) + box.slices]
        try:
            s.store.write_chunk(s.key(1), box, data)
        except PrecomputedTifError:
            assert isinstance(s.store.writer(), ShardOwningWriter), "refused by a store that writes chunks directly"
            s.store.finish()
            assert not s.reopen().read_chunk(s.key(1), box).any(), "a refused chunk was written"
            return
        s.store.finish()
        for store in (s.store, s.reopen()):
            assert_same(store.read_chunk(s.key(1), box), data, "written directly")

    def test_rewritten_chunks_read_the_new_data(self, subject):
        s = subject
        s.write_level(1, s.volume(1))
        reader = s.reopen()
        reader.read_region(s.key(1), s.geometry.level(1).bounds)  # whatever it caches, it has now
        new = s.volume(1, seed=5)
        s.write_level(1, new)
        for store in (s.store, s.reopen(), reader):
            assert_same(store.read_region(s.key(1), s.geometry.level(1).bounds), new, "rewritten level")

    def test_an_aborted_task_leaves_whole_chunks(self, subject):
        """A task that fails midway: each chunk reads its old data or its new data, never a mix;
        a writer that collects shards replaces nothing at all."""
        s = subject
        old, new = s.volume(1), s.volume(1, seed=3)
        s.write_level(1, old)
        region = s.regions(1)[0]
        boxes = [b for b in s.chunks(1) if region.intersect(b) == b]
        writer = s.store.writer()
        for box in boxes[:-1]:
            writer.write_chunk(s.key(1), box, new[(...,) + box.slices])
        writer.abort()
        s.store.finish()
        shards = s.shares_files(1, boxes)
        for box in boxes:
            got = s.reopen().read_chunk(s.key(1), box)
            old_chunk, new_chunk = old[(...,) + box.slices], new[(...,) + box.slices]
            if shards or box == boxes[-1]:
                assert_same(got, old_chunk, f"chunk {box.name} after an aborted task")
            else:
                assert np.array_equal(got, old_chunk) or np.array_equal(got, new_chunk), f"chunk {box.name} mixed"

    def test_finish_makes_chunks_readable_anew_and_is_idempotent(self, subject):
        s = subject
        data = s.volume(1)
        s.write_level(1, data)
        s.store.finish()
        s.store.finish()
        assert_same(s.reopen().read_region(s.key(1), s.geometry.level(1).bounds), data, "after finish")
        # The store stays usable after finish: another task writes through it.
        s.write_level(2, s.volume(2))
        s.store.finish()
        assert_same(s.reopen().read_region(s.key(2), s.geometry.level(2).bounds), s.volume(2), "level 2")

    def test_chunk_objects_exist_after_finish(self, subject):
        s = subject
        s.write_level(1, s.volume(1))
        for box in s.chunks(1):
            keys = s.store.chunk_keys(s.key(1), box)
            if keys is None:
                continue  # the store does not keep whole chunks in objects
            assert keys, f"no object named for chunk {box.name}"
            for k in keys:
                assert s.store.storage.exists(k), k

    # -- pickling --------------------------------------------------------------------------------

    def test_a_pickled_store_reads_and_writes_the_same(self, subject):
        s = subject
        data = s.volume(1)
        s.write_level(1, data)
        s.store.read_region(s.key(1), s.geometry.level(1).bounds)  # caches filled, files perhaps open
        copy = pickle.loads(pickle.dumps(s.store))
        assert type(copy) is type(s.store)
        assert_same(copy.read_region(s.key(1), s.geometry.level(1).bounds), data, "pickled copy")
        # Workers write through the copy they were given.
        fresh = pickle.loads(pickle.dumps(copy))
        s.write_level(2, s.volume(2), store=fresh)
        assert_same(s.reopen().read_region(s.key(2), s.geometry.level(2).bounds), s.volume(2), "written by a copy")

    def test_threads_read_at_once(self, subject):
        """A server's threads share one store."""
        s = subject
        data = s.volume(1)
        s.write_level(1, data)
        store, boxes, bad = s.reopen(), s.chunks(1), []

        def read():
            for box in boxes * 3:
                if not np.array_equal(store.read_chunk(s.key(1), box), data[(...,) + box.slices]):
                    bad.append(box.name)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not bad

    # -- damage ----------------------------------------------------------------------------------

    @pytest.mark.parametrize("how", ["truncated", "garbage", "flipped"])
    def test_a_damaged_chunk_file_is_reported(self, subject, how):
        """Damage to the file a chunk lies in: every chunk of the level reads either exactly what
        was written or :class:`DamagedData` naming a damaged file -- never other data -- and the
        damaged chunk is reported."""
        s = subject
        data = s.volume(1)
        s.write_level(1, data)
        target = s.chunks(1)[-1]
        files = [f for f in s.files(1, target) if os.path.exists(f)]
        assert files, f"chunk {target.name} lies in no file"
        for path in files:
            _damage(path, how)
        # Messages name a damaged object as the storage names it (a path, or a URL).
        keys = s.store.chunk_keys(s.key(1), target)
        names = files if keys is None else [s.store.location(k) for k in keys]
        store = s.reopen()
        reported = []
        for box in s.chunks(1):
            try:
                got = store.read_chunk(s.key(1), box)
            except DamagedData as exc:
                assert any(name in str(exc) for name in names), f"{exc} names no damaged object ({names})"
                reported.append(box)
                continue
            assert_same(got, data[(...,) + box.slices], f"chunk {box.name} of a damaged file")
        # The damage may lie where no voxel is read from (an edge chunk's padding, say), but not all of it.
        assert reported, "damage nobody noticed"
        if how != "flipped" and len(files) == 1 and s.store.chunk_keys(s.key(1), target) is not None:
            assert target in reported, f"chunk {target.name} read from a damaged file"

    def test_unknown_scale_is_a_user_error(self, subject):
        with pytest.raises(PrecomputedTifError):
            subject.store.read_chunk("no_such_scale", subject.chunks(1)[0])

    # -- versions --------------------------------------------------------------------------------

    def test_chunk_version_follows_rewrites_only(self, subject):
        s = subject
        key, box = s.key(1), s.chunks(1)[-1]
        region = s.region_of(1, box)
        never = s.store.chunk_version(key, box)
        if never is None:
            pytest.skip(f"{type(s.store).__name__} cannot tell a chunk's version cheaply")
        assert never[1] == 0, "a chunk that was never written has modification time 0"
        data = s.volume(1)
        in_region = {b: data[(...,) + b.slices] for b in s.chunks(1) if region.intersect(b) == b}
        s.write(1, in_region)
        v1 = s.store.chunk_version(key, box)
        assert v1 is not None and v1[1] > 0 and v1 != never
        s.store.read_chunk(key, box)
        assert s.store.chunk_version(key, box) == v1 == s.reopen().chunk_version(key, box), "stable while unchanged"
        elsewhere = [b for b in s.chunks(1) if region.intersect(b) is None]
        if elsewhere and s.store.chunk_keys(key, box) is not None:
            # Writing other files leaves this chunk's version alone (a store that keeps chunks in
            # shared files may count any change to them, which only costs a client a fetch).
            s.write(1, {b: data[(...,) + b.slices] for b in elsewhere})
            assert s.store.chunk_version(key, box) == v1
        new = s.volume(1, seed=9)
        s.write(1, {b: new[(...,) + b.slices] for b in in_region})
        v2 = s.store.chunk_version(key, box)
        assert v2 is not None and v2[0] != v1[0], "a rewritten chunk keeps its version"
        assert s.reopen().chunk_version(key, box) == v2
