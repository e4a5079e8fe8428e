"""The storage seam: LocalStorage passes the contract every backend must pass, and keeps what
local directories promised before it existed."""

import os
import threading

import pytest

from precomputed_tif.atomic import temporary_name
from precomputed_tif.errors import PrecomputedTifError
from precomputed_tif.storage import LocalStorage
from storage_contract import StorageContract


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
