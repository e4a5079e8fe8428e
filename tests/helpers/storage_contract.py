"""What every Storage backend must do: a class of tests each backend's test module subclasses.

A subclass provides one fixture, ``storage``: an empty Storage of its kind, used by one test.
Everything here goes through the Storage interface only, so the same tests hold a local
directory and an object store to the same promises (see precomputed_tif/storage/base.py).
"""

import pickle
import threading

import pytest

from precomputed_tif.errors import PrecomputedTifError
from precomputed_tif.storage.base import ObjectChanged

BAD_KEYS = ["", "/abs", "../up", "a/../../up", "a/..", "..", ".", "a/./b", "a//b", "a/", "nul\0byte", "new\nline",
            "tab\tkey", "del\x7f"]


class StorageContract:
    @pytest.fixture
    def storage(self):
        raise NotImplementedError("a backend's test class provides an empty storage")

    # Whole objects

    def test_put_get_round_trip(self, storage):
        objects = {"info": b'{"a": 1}\n', "1_1_1/0-8_0-8_0-8": bytes(range(256)) * 3, "a/b/c/d.bin": b"\0\n\r\xff",
                   "empty": b""}
        for key, data in objects.items():
            storage.put(key, data)
        for key, data in objects.items():
            assert storage.get(key) == data
            assert storage.size(key) == len(data)
            assert storage.exists(key)

    def test_put_replaces(self, storage):
        storage.put("k", b"first, longer value")
        storage.put("k", b"second")
        assert storage.get("k") == b"second"
        assert storage.size("k") == 6

    def test_durable_put_and_flush(self, storage):
        storage.put("a/one", b"1", durable=True)
        storage.put("a/two", b"2")
        storage.put("gone", b"3")
        storage.delete("gone")
        storage.flush()
        storage.flush()  # nothing left to flush is fine
        assert [storage.get(k) for k in ("a/one", "a/two", "gone")] == [b"1", b"2", None]

    def test_absent(self, storage):
        assert storage.get("nothing") is None
        assert storage.get_range("nothing", 0, 10) is None
        assert storage.size("nothing") is None
        assert not storage.exists("nothing")
        storage.put("dir/inside", b"x")
        # A prefix that holds objects is not an object.
        assert storage.get("dir") is None
        assert not storage.exists("dir")
        assert storage.get("dir/inside/deeper") is None

    def test_reader_never_sees_a_partial_object(self, storage):
        """A reader polling while a large object is replaced again and again sees one whole
        version each time, never a mix or a truncated one."""
        size = 2 << 20
        versions = [bytes([v]) * size for v in range(1, 5)]
        storage.put("big", versions[0])
        seen, bad, stop = set(), [], threading.Event()

        def reader():
            while not stop.is_set():
                data = storage.get("big")
                if data is None or len(data) != size or data.count(data[:1]) != size:
                    bad.append(None if data is None else (len(data), data[:1], data[-1:]))
                else:
                    seen.add(data[0])
                ranged = storage.get_range("big", size - 10, 10)
                if ranged is None or len(ranged) != 10 or ranged.count(ranged[:1]) != 10:
                    bad.append(("range", ranged))

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            for i in range(40):
                storage.put("big", versions[i % len(versions)])
        finally:
            stop.set()
            thread.join(30)
        assert not thread.is_alive()
        assert not bad, bad[:3]
        assert len(seen) >= 2  # the reader did overlap the replacements

    def test_get_range(self, storage):
        data = bytes(range(100))
        storage.put("r", data)
        assert storage.get_range("r", 0, 100) == data
        assert storage.get_range("r", 10, 5) == data[10:15]  # start inclusive, start + length exclusive
        assert storage.get_range("r", 95, 50) == data[95:]  # past the end: a short read
        assert storage.get_range("r", 99, 1) == data[99:]
        assert storage.get_range("r", 100, 5) == b""  # at the end
        assert storage.get_range("r", 1000, 5) == b""  # past it
        assert storage.get_range("r", 3, 0) == b""
        for start, length in ((-1, 5), (0, -1)):
            with pytest.raises(ValueError):
                storage.get_range("r", start, length)

    def test_stat(self, storage):
        assert storage.stat("nothing") is None
        storage.put("s", b"12345")
        first = storage.stat("s")
        assert first.size == 5 and first.mtime_ns > 0
        assert storage.stat("s") == first  # nothing changed: the same version
        hash(first.version)
        storage.put("s", b"67890")  # same size, new content
        second = storage.stat("s")
        assert second.size == 5 and second.version != first.version
        storage.put("d/x", b"")
        assert storage.stat("d") is None  # a prefix is not an object

    def test_reader_reads_one_version(self, storage):
        assert storage.open_reader("nothing") is None
        storage.put("r", b"A" * 1000)
        with storage.open_reader("r") as reader:
            assert reader.stat == storage.stat("r")
            assert reader.read(990, 100) == b"A" * 10
            storage.put("r", b"B" * 500)  # replaced while the reader is open
            if storage.readers_keep_versions:
                assert reader.read(990, 100) == b"A" * 10  # still the version it opened
                assert reader.read(0, 3) == b"AAA"
            else:  # never bytes of the new version read as if they were the old one's
                for start in (990, 0):
                    with pytest.raises(ObjectChanged):
                        reader.read(start, 3)
            assert reader.read(1000, 5) == b""
            with pytest.raises(ValueError):
                reader.read(-1, 2)
        with storage.open_reader("r") as reader:
            assert reader.stat.size == 500 and reader.read(0, 1000) == b"B" * 500

    # Listing and deleting

    def test_list(self, storage):
        keys = ["a/b/c", "a/b/d/e", "a/bc", "a/b-", "a/b0", "ab", "z", ".hidden", "a/x"]
        for key in keys:
            storage.put(key, key.encode())
        listed = list(storage.list())
        assert sorted(listed) == sorted(keys)
        assert list(storage.list()) == listed  # the same order every time
        if storage.lists_sorted:
            assert listed == sorted(keys)
        def order(prefix):
            return list(storage.list(prefix)) if storage.lists_sorted else sorted(storage.list(prefix))

        assert order("") == sorted(keys)
        # Whole parts only: a/bc, a/b-, a/b0 are not under a/b.
        assert order("a/b") == ["a/b/c", "a/b/d/e"]
        assert order("a/b/") == ["a/b/c", "a/b/d/e"]
        assert order("a/b/d") == ["a/b/d/e"]
        assert order("a") == sorted(k for k in keys if k.startswith("a/"))
        assert order("nothing") == []
        assert order("a/nothing") == []

    def test_list_stats(self, storage):
        for key in ("a/b", "a/c/d", "e"):
            storage.put(key, key.encode() * 3)
        got = list(storage.list_stats("a"))
        assert [k for k, _ in got] == list(storage.list("a"))
        assert sorted(k for k, _ in got) == ["a/b", "a/c/d"]
        assert all(st == storage.stat(k) and st.size == 3 * len(k) for k, st in got)
        assert sorted(k for k, _ in storage.list_stats()) == ["a/b", "a/c/d", "e"]

    def test_list_of_a_prefix_that_is_an_object(self, storage):
        for key in ("a/b", "a/bc", "a/b-"):
            storage.put(key, b"")
        assert list(storage.list("a/b")) == ["a/b"]  # the object itself, not its neighbours
        assert list(storage.list("a/b/")) == ["a/b"]

    def test_list_of_an_empty_storage(self, storage):
        assert list(storage.list()) == []

    def test_delete_is_idempotent(self, storage):
        storage.put("d/x", b"1")
        storage.put("d/y", b"2")
        storage.delete("d/x")
        storage.delete("d/x")
        storage.delete("never/was")
        storage.delete("d")  # a prefix, not an object: nothing to delete
        assert storage.get("d/x") is None
        assert storage.get("d/y") == b"2"
        assert list(storage.list()) == ["d/y"]

    # Streams

    def test_stream_appears_whole_on_close(self, storage):
        storage.put("s", b"old")
        with storage.open_stream("s") as w:
            w.write(b"new ")
            w.write(b"content")
            assert storage.get("s") == b"old"  # nothing of it before close
            w.write(b"!")
        assert storage.get("s") == b"new content!"
        with storage.open_stream("fresh/s") as w:
            w.write(b"x" * 1000)
            assert storage.get("fresh/s") is None
            assert list(storage.list()) == ["s"]
        assert storage.get("fresh/s") == b"x" * 1000
        assert list(storage.list()) == ["fresh/s", "s"]

    def test_stream_abort_leaves_nothing(self, storage):
        storage.put("kept", b"old")
        for key in ("kept", "new"):
            w = storage.open_stream(key)
            w.write(b"partial")
            w.abort()
            w.abort()  # harmless twice
            with pytest.raises(ValueError):
                w.close()  # an aborted stream never appears
        assert storage.get("kept") == b"old"
        assert storage.get("new") is None
        assert list(storage.list()) == ["kept"]

    def test_exception_in_stream_block_aborts(self, storage):
        with pytest.raises(RuntimeError, match="stopped"), storage.open_stream("s") as w:
            w.write(b"half")
            raise RuntimeError("stopped")
        assert storage.get("s") is None
        assert list(storage.list()) == []

    def test_write_after_close_is_refused(self, storage):
        w = storage.open_stream("s")
        w.write(b"1")
        w.close()
        w.close()  # closing again changes nothing
        with pytest.raises(ValueError):
            w.write(b"2")
        assert storage.get("s") == b"1"

    # Keys

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_keys_that_could_escape_are_refused(self, storage, key):
        for call in (lambda: storage.put(key, b"x"), lambda: storage.get(key), lambda: storage.size(key),
                     lambda: storage.get_range(key, 0, 1), lambda: storage.delete(key),
                     lambda: storage.stat(key), lambda: storage.open_reader(key),
                     lambda: storage.open_stream(key), lambda: storage.exists(key)):
            with pytest.raises(PrecomputedTifError):
                call()
        assert list(storage.list()) == []

    @pytest.mark.parametrize("prefix", ["/abs", "../up", "a/../b"])
    def test_prefixes_that_could_escape_are_refused(self, storage, prefix):
        with pytest.raises(PrecomputedTifError):
            list(storage.list(prefix))

    def test_pickled_storage_reads_and_writes_the_same_objects(self, storage):
        storage.put("p", b"before")
        copy = pickle.loads(pickle.dumps(storage))
        assert copy.get("p") == b"before"
        copy.put("q", b"from the copy")
        copy.flush()
        assert storage.get("q") == b"from the copy"
