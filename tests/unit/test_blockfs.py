"""blockfs 1.0.0: the original package's fixture, round trips, concurrent and killed writers, the CLI."""

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile

from precomputed_tif import PrecomputedTifError, open_volume
from precomputed_tif.cli.blockfs import info_main, tif_main
from precomputed_tif.formats.blockfs import Directory, create
from precomputed_tif.formats.blockfs.directory import entry_bits
from tests.helpers import DATA
from tests.helpers.blockfs_reader import read_blockfs, read_header
from tests.helpers.stacks import make_volume

FIXTURE = os.path.join(DATA, "blockfs-1.0.0")


@pytest.fixture
def fixture_copy(tmp_path):
    """The fixture somewhere else again: its recorded block file paths exist on no machine."""
    dest = tmp_path / "moved" / "1_1_1"
    shutil.copytree(FIXTURE, dest)
    return dest


def test_fixture_reads_exactly(fixture_copy):
    expected = np.load(fixture_copy / "expected_zyx.npy")
    d = Directory(str(fixture_copy / "precomputed.blockfs"))
    assert d.metadata["BlockFilenames"][0].startswith("/data/expt1/1_1_1/")
    got = d.read(0, 100, 0, 70, 0, 45)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert (d.read_block(64, 32, 0) == 0).all()
    assert d.read_frame(64, 32, 0) is None
    assert d.n_written() == 23


def test_fixture_entry_bits_follow_the_original_rule():
    meta, _ = read_header(os.path.join(FIXTURE, "precomputed.blockfs"))
    bits = entry_bits((meta["XBlockSize"], meta["YBlockSize"], meta["ZBlockSize"]),
                      (meta["XExtent"], meta["YExtent"], meta["ZExtent"]),
                      (meta["XStride"], meta["YStride"], meta["ZStride"]),
                      np.dtype(meta["DType"]).itemsize, len(meta["BlockFilenames"]))
    assert bits == (meta["NOffsetBits"], meta["NSizeBits"])


def test_fixture_as_a_precomputed_level(fixture_copy):
    """An original-package level inside a dataset directory opens through the store."""
    info = {"type": "image", "data_type": "uint16", "num_channels": 1,
            "scales": [{"key": "1_1_1", "size": [100, 70, 45], "resolution": [1800, 1800, 2000],
                        "voxel_offset": [0, 0, 0], "chunk_sizes": [[32, 32, 32]], "encoding": "raw"}]}
    (fixture_copy.parent / "info").write_text(json.dumps(info))
    vol = open_volume(str(fixture_copy.parent))
    assert vol.format == "blockfs"
    np.testing.assert_array_equal(vol.read("1_1_1"), np.load(fixture_copy / "expected_zyx.npy"))


def write_all(d: Directory, volume: np.ndarray, only=None):
    bx, by, bz = d.block_size
    i = 0
    for z0 in range(0, volume.shape[0], bz):
        for y0 in range(0, volume.shape[1], by):
            for x0 in range(0, volume.shape[2], bx):
                if only is None or only(i):
                    d.write_block(x0, y0, z0, volume[z0:z0 + bz, y0:y0 + by, x0:x0 + bx])
                i += 1


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64", "float32"])
@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_round_trip(tmp_path, dtype, compression):
    volume = make_volume((19, 45, 37), dtype, seed=3)
    path = str(tmp_path / "v.blockfs")
    d = create(path, (37, 45, 19), (16, 16, 8), dtype, n_files=3, compression=compression,
               metadata={"lab": "ours", "n": 3})
    write_all(d, volume)
    d.close()
    np.testing.assert_array_equal(Directory(path).read(0, 37, 0, 45, 0, 19), volume)
    np.testing.assert_array_equal(read_blockfs(path), volume)  # independent reader
    meta, _ = read_header(path)
    assert meta["lab"] == "ours" and meta["n"] == 3 and meta["Version"] == "1.0.0"
    assert all(os.path.isabs(f) for f in meta["BlockFilenames"])
    assert meta["BlockFilenames"] == [f"{path}.{i}" for i in range(3)]


def test_unwritten_and_partial_reads(tmp_path):
    volume = make_volume((19, 45, 37), "uint16", seed=4)
    path = str(tmp_path / "v.blockfs")
    d = create(path, (37, 45, 19), (16, 16, 8), "uint16")
    write_all(d, volume, only=lambda i: i % 2 == 0)
    expected = volume.copy()
    i = 0
    for z0 in range(0, 19, 8):
        for y0 in range(0, 45, 16):
            for x0 in range(0, 37, 16):
                if i % 2:
                    expected[z0:z0 + 8, y0:y0 + 16, x0:x0 + 16] = 0
                i += 1
    np.testing.assert_array_equal(d.read(0, 37, 0, 45, 0, 19), expected)
    np.testing.assert_array_equal(d.read(5, 30, 3, 40, 2, 17), expected[2:17, 3:40, 5:30])
    d.sync()  # entries reach the directory file in batches
    np.testing.assert_array_equal(read_blockfs(path), expected)


def test_moved_volume_finds_block_files_by_name(tmp_path):
    volume = make_volume((10, 20, 30), "uint16", seed=5)
    (tmp_path / "a").mkdir()
    d = create(str(tmp_path / "a" / "v.blockfs"), (30, 20, 10), (16, 16, 16), "uint16", n_files=2)
    write_all(d, volume)
    d.close()
    shutil.move(tmp_path / "a", tmp_path / "b")
    np.testing.assert_array_equal(Directory(str(tmp_path / "b" / "v.blockfs")).read(0, 30, 0, 20, 0, 10), volume)


def test_a_copy_reads_its_own_block_files_and_knows_it_is_a_copy(tmp_path):
    first, second = make_volume((10, 20, 30), "uint16", seed=6), make_volume((10, 20, 30), "uint16", seed=7)
    (tmp_path / "a").mkdir()
    d = create(str(tmp_path / "a" / "v.blockfs"), (30, 20, 10), (16, 16, 16), "uint16", n_files=2)
    write_all(d, first)
    d.close()
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    d = Directory(str(tmp_path / "a" / "v.blockfs"), writable=True)  # the original is written again
    write_all(d, second)
    d.close()
    copy = Directory(str(tmp_path / "copy" / "v.blockfs"))
    assert copy.is_copy and not Directory(str(tmp_path / "a" / "v.blockfs")).is_copy
    np.testing.assert_array_equal(copy.read(0, 30, 0, 20, 0, 10), first)


def _writer(path, volume, k, n):
    d = Directory(path, writable=True)
    write_all(d, volume, only=lambda i: i % n == k)
    d.close()


def test_concurrent_writers_equal_a_single_writer(tmp_path):
    volume = make_volume((40, 50, 60), "uint16", seed=6)
    single = str(tmp_path / "single.blockfs")
    d = create(single, (60, 50, 40), (8, 8, 8), "uint16", n_files=2)
    write_all(d, volume)
    d.close()
    shared = str(tmp_path / "shared.blockfs")
    create(shared, (60, 50, 40), (8, 8, 8), "uint16", n_files=2).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(shared, volume, k, 4)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    np.testing.assert_array_equal(read_blockfs(shared), read_blockfs(single))
    np.testing.assert_array_equal(read_blockfs(shared), volume)
    assert Directory(shared).n_written() == Directory(single).n_written() == 5 * 7 * 8


KILLED_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from precomputed_tif.formats.blockfs import Directory
    path, seed = sys.argv[1], int(sys.argv[2])
    d = Directory(path, writable=True)
    rng = np.random.default_rng(seed)
    for z0 in range(0, 256, 32):
        for y0 in range(0, 256, 32):
            for x0 in range(0, 256, 32):
                rng = np.random.default_rng(x0 + 1000 * y0 + 10**6 * z0)
                block = rng.integers(0, 65535, (32, 32, 32), dtype=np.uint16)
                d.write_block(x0, y0, z0, block)
            d.sync()  # a batch of blocks made durable and recorded, as a conversion task does
    d.close()
""")


def expected_block(x0, y0, z0):
    return np.random.default_rng(x0 + 1000 * y0 + 10**6 * z0).integers(0, 65535, (32, 32, 32), dtype=np.uint16)


def test_sigkilled_writer_leaves_only_complete_blocks_and_a_rerun_completes(tmp_path):
    path = str(tmp_path / "v.blockfs")
    create(path, (256, 256, 256), (32, 32, 32), "uint16", n_files=2).close()
    for attempt, wait in enumerate((0.3, 0.6)):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, path, str(attempt)])
        deadline = time.monotonic() + 30
        while Directory(path).n_written() < 40 * (attempt + 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(wait * 0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        d = Directory(path)
        written = 0
        for z0 in range(0, 256, 32):
            for y0 in range(0, 256, 32):
                for x0 in range(0, 256, 32):
                    if d.read_frame(x0, y0, z0) is not None:
                        written += 1
                        np.testing.assert_array_equal(d.read_block(x0, y0, z0), expected_block(x0, y0, z0))
                    else:
                        assert (d.read_block(x0, y0, z0) == 0).all()
        assert 0 < written < 512, written
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, path, "9"])
    assert proc.returncode == 0
    d = Directory(path)
    assert d.n_written() == 512
    for z0, y0, x0 in [(0, 0, 0), (224, 224, 224), (96, 32, 160)]:
        np.testing.assert_array_equal(d.read_block(x0, y0, z0), expected_block(x0, y0, z0))


def test_not_a_blockfs_file(tmp_path):
    (tmp_path / "x.blockfs").write_bytes(b"hello world, not blockfs")
    with pytest.raises(PrecomputedTifError, match="not a blockfs"):
        Directory(str(tmp_path / "x.blockfs"))


def test_blockfs_info_cli(fixture_copy, capsys):
    assert info_main([str(fixture_copy / "precomputed.blockfs")]) == 0
    out = capsys.readouterr().out
    for text in ("100 x 70 x 45", "uint16", "32 x 32 x 32", "23 of 24", "zstd level 5", "'note': 'fixture'",
                 "recorded as /data/expt1/1_1_1/precomputed.blockfs.0"):
        assert text in out, text
    assert info_main([str(fixture_copy / "nothing")]) == 2
    assert "blockfs-info: error:" in capsys.readouterr().err


def test_blockfs2tif_cli(fixture_copy, tmp_path, capsys):
    pattern = str(tmp_path / "planes" / "img_%04d.tiff")
    assert tif_main(["--input", str(fixture_copy), "--output-pattern", pattern]) == 0
    planes = np.stack([tifffile.imread(pattern % z) for z in range(45)])
    np.testing.assert_array_equal(planes, np.load(fixture_copy / "expected_zyx.npy"))
    assert not [f for f in os.listdir(tmp_path / "planes") if f.endswith(".tmp")]
    assert tif_main(["--input", str(fixture_copy), "--output-pattern", str(tmp_path / "one.tiff")]) == 2
    err = capsys.readouterr().err
    assert "%d" in err and "Traceback" not in err
