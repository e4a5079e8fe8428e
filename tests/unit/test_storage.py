"""The storage seam: LocalStorage passes the contract every backend must pass, keeps what local
directories promised before it existed, and the records that go through it read as before."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from precomputed_tif.errors import PrecomputedTifError
from precomputed_tif.pipeline.progress import DONE_LOG, DONE_OBJECTS, DoneLog
from precomputed_tif.storage import LocalStorage, ObjectStorage, Storage, local_path, open_file, open_storage
from precomputed_tif.storage.atomic import temporary_name
from tests.helpers.stacks import write_planes
from tests.helpers.storage_contract import StorageContract


class TestLocalStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path):
        return LocalStorage(tmp_path / "root")  # not made yet: the first put makes it

    def test_keys_are_plain_files_under_the_root(self, storage):
        storage.put("1_1_1/0-8_0-8_0-8.tiff", b"chunk")
        with storage.open_stream("a/stream") as w:
            w.write(b"streamed")
        with open(os.path.join(storage.root, "1_1_1", "0-8_0-8_0-8.tiff"), "rb") as f:
            assert f.read() == b"chunk"
        with open(os.path.join(storage.root, "a", "stream"), "rb") as f:
            assert f.read() == b"streamed"
        # Nothing else: no temporary file left beside them.
        assert sorted(os.listdir(storage.root)) == ["1_1_1", "a"]
        assert os.listdir(os.path.join(storage.root, "a")) == ["stream"]

    def test_symlink_out_of_the_root_is_refused(self, storage, tmp_path):
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret").write_bytes(b"secret")
        storage.put("inside", b"in")
        assert storage.get("inside") == b"in"  # the root is now known to be inside: reads look at names only
        os.symlink(outside / "secret", os.path.join(storage.root, "leak"))
        os.symlink(outside, os.path.join(storage.root, "dir"))
        for call in (lambda: storage.get("leak"), lambda: storage.get_range("leak", 0, 3),
                     lambda: storage.size("leak"), lambda: storage.get("dir/secret")):
            with pytest.raises(PrecomputedTifError, match="leads out"):
                call()
        # Writing through a directory that leads out is refused before anything is made there.
        for call in (lambda: storage.put("dir/new", b"x"), lambda: storage.put("dir/sub/new", b"x"),
                     lambda: storage.open_stream("dir/new"), lambda: storage.delete("dir/secret")):
            with pytest.raises(PrecomputedTifError, match="leads out"):
                call()
        assert sorted(os.listdir(outside)) == ["secret"]
        assert list(storage.list()) == ["inside"]  # neither symlink is listed
        # A symlink inside the root, to a file inside it, is read (and listed) like the file.
        os.symlink("inside", os.path.join(storage.root, "alias"))
        assert storage.get("alias") == b"in"
        assert list(storage.list()) == ["alias", "inside"]
        # Unconfined (a user's own dataset read as a source), symlinks lead anywhere for reading.
        free = LocalStorage(storage.root, confined=False)
        assert free.get("leak") == b"secret" and free.get("dir/secret") == b"secret"
        with pytest.raises(PrecomputedTifError, match="leads out"):
            free.put("dir/new", b"x")

    def test_fifo_is_refused_without_blocking(self, storage):
        storage.put("x", b"x")
        os.mkfifo(os.path.join(storage.root, "fifo"))
        outcome = []

        def read():
            for call in (lambda: storage.get("fifo"), lambda: storage.get_range("fifo", 0, 1),
                         lambda: storage.size("fifo")):
                try:
                    call()
                    outcome.append("read")
                except PrecomputedTifError as exc:
                    outcome.append(str(exc))

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "a read of a FIFO blocked"
        assert len(outcome) == 3 and all("not a regular file" in o for o in outcome), outcome
        assert list(storage.list()) == ["x"]

    def test_temporary_files_are_never_listed(self, storage):
        storage.put("a/done", b"1")
        # One a killed writer left behind, and one of a stream still being written.
        with open(temporary_name(os.path.join(storage.root, "a", "killed")), "wb") as f:
            f.write(b"half")
        w = storage.open_stream("a/streaming")
        w.write(b"part")
        assert len(os.listdir(os.path.join(storage.root, "a"))) == 3
        assert list(storage.list()) == ["a/done"]
        assert list(storage.list("a")) == ["a/done"]
        w.abort()

    def test_a_file_in_the_way_of_a_directory(self, storage):
        storage.put("a", b"file")
        with pytest.raises(NotADirectoryError):
            storage.put("a/b", b"x")
        assert storage.get("a/b") is None
        assert storage.get("a") == b"file"

    def test_directory_removed_after_a_put_is_made_again(self, storage):
        import shutil

        storage.put("level/one", b"1")
        shutil.rmtree(os.path.join(storage.root, "level"))  # an --overwrite, say
        storage.put("level/two", b"2")
        assert list(storage.list()) == ["level/two"]

    def test_messages_name_the_path_as_given(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        storage = LocalStorage("rel")
        storage.put("x", b"1")
        os.mkfifo("rel/fifo")
        with pytest.raises(PrecomputedTifError, match=r"^rel/fifo is not a regular file"):
            storage.get("fifo")


class NoAppend(LocalStorage):
    """A local directory used as an object store would be: no append (the DoneLog's other form)."""

    can_append = False

    def append(self, key, data):
        raise AssertionError("append used on a storage without it")


@pytest.mark.parametrize("kind", [LocalStorage, NoAppend])
def test_done_log_round_trip(tmp_path, kind):
    storage = kind(tmp_path)
    log = DoneLog(storage)
    assert log.load() == set()
    ids = ["1-3/0-64_0-64_0-64", "ome-tiff/z0-8", "merge/2", "0/0-8_0-8_0-8"]
    for task_id in ids:
        log.record(task_id)
    log.close()
    assert DoneLog(kind(tmp_path)).load() == set(ids)
    if kind is LocalStorage:  # the file every earlier version kept, in its format
        with open(tmp_path / DONE_LOG, "rb") as f:
            assert f.read() == "".join(i + "\n" for i in ids).encode()
        assert not os.path.exists(tmp_path / DONE_OBJECTS)
    else:  # one object per task, never rewritten
        assert not os.path.exists(tmp_path / DONE_LOG)
        assert len(list(storage.list(DONE_OBJECTS))) == len(ids)
    DoneLog(storage).remove()
    assert DoneLog(storage).load() == set()
    assert list(storage.list()) == []


def test_done_log_of_an_older_version_is_read(tmp_path):
    """A log an older version appended to, torn last line and all; and both forms together (a
    dataset copied between kinds of storage)."""
    with open(tmp_path / DONE_LOG, "wb") as f:
        f.write(b"1-1/0-16_0-16_0-16\n2-4/0-16_0-16_0-16\n1-1/16-3")
    NoAppend(tmp_path).put(f"{DONE_OBJECTS}/merge%2F0", b"")
    assert DoneLog(str(tmp_path)).load() == {"1-1/0-16_0-16_0-16", "2-4/0-16_0-16_0-16", "merge/0"}


def test_open_storage(tmp_path):
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    assert open_storage(tmp_path).root == str(tmp_path)
    assert open_storage(f"file://{tmp_path}/a%20b").root == f"{tmp_path}/a b"
    assert local_path(f"file://localhost{tmp_path}") == str(tmp_path)
    given = LocalStorage(tmp_path)
    assert open_storage(given) is given
    assert isinstance(given, Storage)
    for url in ("s3://bucket/x", "gs://bucket/x/y", "S3://bucket/x"):
        storage = open_storage(url, "--dest")
        assert isinstance(storage, ObjectStorage) and storage.location() == url.replace("S3", "s3")
    for url in ("https://example.org/data", "az://container/x", "s4://bucket/x", "file+s3://x/y"):
        with pytest.raises(PrecomputedTifError, match=r"^--dest .*:// is not a kind of storage this tool reads"):
            open_storage(url, "--dest")
    for url in ("s3:/bucket/x", "gs:bucket"):
        with pytest.raises(PrecomputedTifError, match=r"^--dest .*: looks like a mistyped URL"):
            open_storage(url, "--dest")
    for url in ("s3://", "s3://B/x", "s3://bucket/a/../b", "s3://bucket/x?versionId=1"):
        with pytest.raises(PrecomputedTifError, match=r"^--dest s3://"):
            open_storage(url, "--dest")
    with pytest.raises(PrecomputedTifError, match="another host"):
        local_path("file://elsewhere/data")


@pytest.mark.parametrize("url", ["az://bucket/data", "s3:/bucket/data"])
@pytest.mark.parametrize("flag", ["--dest", "--source"])
def test_urls_of_no_storage_are_one_line_and_nothing_is_written(tmp_path, flag, url):
    """The real command, in its own process: one line, exit 2, and no local directory named
    after the URL (``s3:`` in the working directory) or anything else written."""
    write_planes(tmp_path / "src", np.arange(5 * 9 * 11, dtype=np.uint16).reshape(5, 9, 11))
    work = tmp_path / "work"
    work.mkdir()
    args = {"--source": str(tmp_path / "src" / "*.tif"), "--dest": str(tmp_path / "out")}
    args[flag] = url + ("/*.tif" if flag == "--source" else "")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "precomputed-tif"),
                           "--source", args["--source"], "--dest", args["--dest"], "--no-progress"],
                          cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"precomputed-tif: error: {flag} {args[flag]}: "), proc.stderr
    assert ("is not a kind of storage" if "://" in url else "looks like a mistyped URL") in lines[0]
    assert os.listdir(work) == []
    assert not os.path.exists(tmp_path / "out")


def test_file_url_dest_is_the_local_directory(tmp_path):
    from precomputed_tif import convert

    write_planes(tmp_path / "src", np.arange(3 * 7 * 5, dtype=np.uint8).reshape(3, 7, 5))
    info = convert(str(tmp_path / "src" / "*.tif"), f"file://{tmp_path}/out", chunk_size=(4, 4, 4), n_cores=1)
    assert os.path.isfile(tmp_path / "out" / "info")
    assert info["scales"][0]["size"] == [5, 7, 3]


def test_fifo_in_place_of_the_job_record_is_one_line_not_a_wait(tmp_path):
    """The records are read through storage: a FIFO named like one is refused, never opened
    for a wait on a writer that never comes."""
    src = write_planes(tmp_path / "src", np.zeros((3, 5, 7), np.uint8))
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / ".precomputed-tif.json")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "precomputed-tif"), "--source", src,
                           "--dest", str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "is not a regular file" in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path / "out")) == [".precomputed-tif.json"]


def test_an_object_reader_as_a_file_reads_what_the_file_holds(tmp_path):
    # What tifffile does to a file: seeks anywhere (from the end too), small and large reads, reads
    # past the end; every answer the file's own, whatever the buffer holds.
    data = np.random.default_rng(1).integers(0, 256, 300_001, dtype=np.uint8).tobytes()
    storage = LocalStorage(tmp_path)
    storage.put("object.bin", data)
    with open_file(storage.open_reader("object.bin"), "s3://bucket/object.bin", buffer_size=4096) as f:
        assert f.name == "s3://bucket/object.bin" and f.seekable()
        rng = np.random.default_rng(2)
        for _ in range(200):
            start, length = int(rng.integers(0, len(data) + 10)), int(rng.integers(0, 20_000))
            assert f.seek(start) == start
            assert f.read(length) == data[start:start + length]
            assert f.tell() == min(start + length, max(start, len(data)))
        assert f.seek(-5, os.SEEK_END) == len(data) - 5 and f.read() == data[-5:]
        f.seek(0)
        assert f.read() == data
    with pytest.raises(ValueError):
        open_file(storage.open_reader("object.bin"), "x").seek(-1)

