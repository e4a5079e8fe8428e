"""What `make demo` prints is what it did: its commands, run again as printed in a fresh
directory, write the same datasets; it listens on the ports it is given and prints the ssh line
that reaches them from another computer; a port in use is one line naming it."""

from __future__ import annotations

import getpass
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request

import numpy as np
import pytest

from tests.helpers.annotation_reader import read_layer
from tests.helpers.servers import BIN, free_port, read_until_ready

SHAPE_XYZ = (61, 45, 24)  # odd sizes, small: a few seconds
DEMO = [sys.executable, "-m", "precomputed_tif.cli.demo", "--dir", "demo", "--shape", ",".join(map(str, SHAPE_XYZ))]
INPUT_FLAGS = ("--source", "--input", "--properties")  # what the commands read; the rest they write


def printed_commands(out: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("$ ")]


def dataset_files(directory) -> dict[str, bytes]:
    """Every file of a dataset by relative path, leaving out the run's own records (hidden
    files: they name the source's path and time)."""
    out = {}
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, directory)] = f.read()
    return out


def test_the_printed_commands_write_what_the_demo_wrote(tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    first.mkdir()
    again.mkdir()
    done = subprocess.run([*DEMO, "--no-serve"], cwd=first, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    commands = printed_commands(done.stdout)
    assert [c[0] for c in commands] == ["precomputed-tif", "precomputed-write-points", "precomputed-tif"], done.stdout
    image, points, cells = commands
    assert image[image.index("--voxel-size") + 1] == "1.8,1.8,2"
    assert cells[cells.index("--voxel-size") + 1] == "3.6,3.6,4"  # the labels are at half resolution
    assert {"--segmentation", "--mesh", "--properties"} <= set(cells)
    assert points[points.index("--dataset") + 1] == image[image.index("--dest") + 1]

    # The inputs the demo made are copied; everything else comes from the commands, run as printed.
    for argv in commands:
        for flag in INPUT_FLAGS:
            if flag in argv:
                for path in glob.glob(str(first / argv[argv.index(flag) + 1])):
                    os.makedirs(os.path.dirname(again / os.path.relpath(path, first)), exist_ok=True)
                    shutil.copy(path, again / os.path.relpath(path, first))
    for argv in commands:
        run = subprocess.run([os.path.join(BIN, argv[0]), *argv[1:]], cwd=again, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, (argv, run.stderr)

    for argv in (image, cells):
        dest = argv[argv.index("--dest") + 1]
        mine, theirs = dataset_files(first / dest), dataset_files(again / dest)
        assert json.loads(mine.pop("info")) == json.loads(theirs.pop("info"))
        assert sorted(mine) == sorted(theirs)
        assert [k for k in mine if mine[k] != theirs[k]] == []
        if argv is cells:
            assert any(k.startswith("mesh/") for k in mine) and "segment_properties/info" in mine
    with open(first / image[image.index("--dest") + 1] / "info") as f:
        assert json.load(f)["scales"][0]["size"] == list(SHAPE_XYZ)

    out_dir = points[points.index("--output-directory") + 1]
    info, _, by_id, _ = read_layer(str(first / out_dir))
    info_again, _, by_id_again, _ = read_layer(str(again / out_dir))
    assert info == info_again
    assert info["upper_bound"] == list(SHAPE_XYZ) and info["dimensions"]["z"] == [2e-6, "m"]
    assert by_id.keys() == by_id_again.keys() and len(by_id) > 10
    for k in by_id:
        assert np.array_equal(by_id[k][0], by_id_again[k][0])


def test_the_demo_serves_on_the_ports_given_and_prints_the_ssh_line(tmp_path):
    port, viewer_port = free_port(), free_port()
    proc = subprocess.Popen([*DEMO, "--port", str(port), "--viewer-port", str(viewer_port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = read_until_ready(proc)
        assert "Traceback" not in out, out
        links = re.findall(r"^  (https?://\S+)$", out, re.M)
        local, public = links  # the offline client's link first, then the public app's, each once
        assert local.startswith(f"http://127.0.0.1:{viewer_port}/v/"), out
        assert public.startswith("https://neuroglancer-demo.appspot.com/#!"), out
        assert all(len(link) < 2000 for link in links), [len(link) for link in links]
        assert out.count(public) == 1 and out.count(local) == 1
        state = json.loads(urllib.parse.unquote(public.split("#!", 1)[1]))
        assert state["layers"][0]["source"] == f"precomputed://http://127.0.0.1:{port}/image"
        cells = state["layers"][2]
        assert cells["type"] == "segmentation" and 1 <= len(cells["segments"]) <= 8, cells
        ssh = re.findall(r"^  (ssh .*)$", out, re.M)
        assert len(ssh) == 1, out
        forwards, target = ssh[0].rsplit(" ", 1)
        assert forwards == f"ssh -N -L {port}:127.0.0.1:{port} -L {viewer_port}:127.0.0.1:{viewer_port}"
        user, host = target.split("@")
        assert user == getpass.getuser()
        assert host.split(".")[0] != "localhost" and host in (socket.getfqdn(), socket.gethostname())
        with urllib.request.urlopen(local) as r:  # the offline client answers on its fixed port
            assert b"neuroglancer" in r.read().lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cells/info") as r:
            assert json.load(r)["mesh"] == "mesh"
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(30) == 0 and "stopped" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("flag", ["--port", "--viewer-port"])
def test_a_port_in_use_is_one_line_naming_it(tmp_path, flag):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--viewer-port" if flag == "--port" else "--port"
        done = subprocess.run([*DEMO, flag, str(port), other, str(free_port())], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} on 127.0.0.1 is in use" in lines[0], done.stderr
    suggested = int(re.search(rf"try {flag} (\d+)", lines[0]).group(1))
    assert suggested != port
    with socket.socket() as s:  # the port suggested is free
        s.bind(("127.0.0.1", suggested))
    assert not (tmp_path / "demo").exists()  # said before any work


def test_the_webserver_prints_the_ssh_line_and_names_a_port_in_use(tmp_path):
    import tifffile

    from precomputed_tif import convert

    tifffile.imwrite(tmp_path / "s.tif", np.arange(9 * 11 * 13, dtype=np.uint16).reshape(9, 11, 13))
    convert(str(tmp_path / "s.tif"), str(tmp_path / "d"), n_cores=1)
    port = free_port()
    exe = os.path.join(BIN, "precomputed-webserver")
    proc = subprocess.Popen([exe, "--directory", str(tmp_path / "d"), "--port", str(port), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = read_until_ready(proc)
        ssh = re.findall(r"^  (ssh .*)$", out, re.M)
        assert len(ssh) == 1 and ssh[0].startswith(f"ssh -N -L {port}:127.0.0.1:{port} "), out
        busy = subprocess.run([exe, "--directory", str(tmp_path / "d"), "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2 and len(busy.stderr.strip().splitlines()) == 1, busy.stderr
        assert f"port {port} on 127.0.0.1 is in use" in busy.stderr and "try --port " in busy.stderr
    finally:
        proc.terminate()
        proc.wait(10)
    # Listening on every address, the links name this machine: no tunnel to print.
    proc = subprocess.Popen([exe, "--directory", str(tmp_path / "d"), "--port", str(free_port()), "--bind", "0.0.0.0",
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "ssh" not in read_until_ready(proc)
    finally:
        proc.terminate()
        proc.wait(10)
