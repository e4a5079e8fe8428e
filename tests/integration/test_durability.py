"""Nothing recorded as written is lost or partial: writers killed at random points, and the
order in which data, names and records are flushed to disk."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from precomputed_tif import convert
from precomputed_tif.formats.stores import store_class
from precomputed_tif.geometry import Box, Geometry
from precomputed_tif.pipeline.destination import INPUTS
from precomputed_tif.pipeline.progress import DONE_LOG, DoneLog
from tests.helpers.stacks import make_volume, reference_pyramid, write_planes

SHAPE = (48, 90, 110)
CHUNK = (8, 8, 8)
BLOCK = 16 * 16 * 16 * 2  # hundreds of small tasks: many places to be killed

CONVERT = textwrap.dedent("""
    import sys
    from precomputed_tif import convert
    if __name__ == "__main__":
        convert(sys.argv[1], sys.argv[2], format=sys.argv[3], chunk_size=(8, 8, 8), n_cores=2,
                block_bytes=int(sys.argv[4]))
""")


def recorded_chunks(dest, fmt):
    """(key, box, array) of every chunk the killed run left looking written."""
    with open(os.path.join(dest, ".precomputed-tif.json")) as f:
        info = json.load(f)["info"]
    store = store_class(fmt)(dest, info)
    out = []
    for s in info["scales"]:
        key, (sx, sy, sz), (cx, cy, cz) = s["key"], s["size"], s["chunk_sizes"][0]
        for z0 in range(0, sz, cz):
            for y0 in range(0, sy, cy):
                for x0 in range(0, sx, cx):
                    box = Box(x0, min(x0 + cx, sx), y0, min(y0 + cy, sy), z0, min(z0 + cz, sz))
                    if fmt == "tiff":
                        written = os.path.exists(store.chunk_path(key, box))
                    elif fmt == "zarr":
                        written = all(store.storage.exists(k) for k in store.chunk_keys(key, box))
                    else:
                        d = store._directory(key, 0, writable=False)
                        written = d.entry(d.slot(x0, y0, z0))[1] > 0
                    if written:
                        out.append((key, box, store.read_chunk(key, box)))
    store.finish()
    return out


@pytest.mark.parametrize("fmt", ["tiff", "zarr", "blockfs"])
def test_writer_killed_at_random_points_leaves_only_whole_chunks(tmp_path, fmt):
    volume = make_volume(SHAPE, "uint16", seed=51)
    glob = write_planes(tmp_path / "src", volume)
    g = Geometry((SHAPE[2], SHAPE[1], SHAPE[0]), CHUNK)
    levels = dict(zip([lv.key for lv in g.levels], reference_pyramid(volume, [lv.step for lv in g.levels], False)))
    dest = str(tmp_path / "out")
    rng = random.Random(f"kill-{fmt}")
    seen_any = False
    for _attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", CONVERT, glob, dest, fmt, str(BLOCK)],
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Once the writers are under way (a task recorded), kill them at a random moment.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not DoneLog(dest).load():
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.6))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if not os.path.exists(os.path.join(dest, ".precomputed-tif.json")):
            continue
        chunks = recorded_chunks(dest, fmt)
        seen_any |= bool(chunks)
        for key, box, array in chunks:
            np.testing.assert_array_equal(array, levels[key][box.slices], err_msg=f"{key} {box.name} after kill")
        done = DoneLog(dest).load()
        for task_id in done:  # a task recorded done has all its finest-level chunks written
            first, _, block = task_id.partition("/")
            if first.startswith("1-"):
                b = Box.parse(block)
                keys = {(k, c.name) for k, c, _ in chunks}
                for c in g.chunk_boxes(1, b):
                    assert ("1_1_1", c.name) in keys, (task_id, c.name)
        if os.path.exists(os.path.join(dest, "info")):
            break
    assert seen_any
    convert(glob, dest, format=fmt, chunk_size=CHUNK, n_cores=1, block_bytes=BLOCK)
    for key, box, array in recorded_chunks(dest, fmt):
        np.testing.assert_array_equal(array, levels[key][box.slices])


def _flushed_after_the_tasks(events, real_dest: str) -> list[str]:
    """The files flushed after the last task was recorded: info's data, then its name. The done
    log itself may be flushed first (with the directory naming it), as the records are made
    durable with the dataset's other files."""
    after = [e[1] for e in events if e[0] == "fsync"]
    if after[:1] == [os.path.join(real_dest, DONE_LOG)]:
        after = after[2:] if after[1:2] == [real_dest] else after[1:]
    return after


@pytest.mark.parametrize("fmt", ["tiff", "zarr", "blockfs"])
def test_data_is_flushed_before_its_name_and_both_before_the_task_is_recorded(tmp_path, fmt, monkeypatch):
    """Every file a task wrote was fsynced, and so was its directory, before the task was recorded done."""
    events = []
    real_fsync, real_record = os.fsync, DoneLog.record

    def fsync(fd):
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def record(self, task_id):
        events.append(("done", task_id))
        return real_record(self, task_id)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(DoneLog, "record", record)
    volume = make_volume((20, 24, 24), "uint16", seed=52)
    glob = write_planes(tmp_path / "src", volume)
    dest = str(tmp_path / "out")
    convert(glob, dest, format=fmt, chunk_size=CHUNK, n_cores=1, block_bytes=BLOCK)
    dones = [i for i, e in enumerate(events) if e[0] == "done"]
    assert len(dones) > 3
    synced = [e[1] for e in events[:dones[-1]] if e[0] == "fsync"]
    files = []
    for base, _, names in os.walk(dest):
        for n in names:
            # info, and the NGFF root metadata written just before it, come after every task; the
            # records of the conversion and of its inputs before any (as whole files).
            if n not in ("info", DONE_LOG, ".precomputed-tif.json", INPUTS, ".zgroup", ".zattrs"):
                files.append(os.path.realpath(os.path.join(base, n)))
    assert files
    for path in files:  # data, and the directory that names it, flushed before the last record
        assert path in synced, path
        assert os.path.dirname(path) in synced, path
    if fmt == "blockfs":  # within each task, block files are flushed before the entries recording them
        for a, b in zip(dones, dones[1:]):
            paths = [e[1] for e in events[a + 1:b] if e[0] == "fsync"]
            for i, p in enumerate(paths):
                if p.endswith("precomputed.blockfs"):
                    assert any(q.startswith(p + ".") for q in paths[:i]), paths
    real_dest = os.path.realpath(dest)
    after = _flushed_after_the_tasks(events[dones[-1]:], real_dest)
    if fmt == "zarr":  # the NGFF root metadata, then the directory naming it, before info
        roots = [os.path.join(real_dest, n) for n in (".zgroup", ".zattrs")]
        assert sorted(after[:2]) == sorted(roots) and after[2] == real_dest, after
        after = after[3:]
    assert after[0].startswith(os.path.join(real_dest, ".info.")) and after[1] == real_dest
