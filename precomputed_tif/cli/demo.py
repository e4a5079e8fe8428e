"""``python -m precomputed_tif.cli.demo``: make a sample stack, convert it, serve it to Neuroglancer.

The sample is a synthetic light-sheet-like stack (bright blobs on a dim,
smoothly varying background, with camera noise) written as one TIFF per plane,
exactly the input the converter is for, the blobs' centres as a CSV file, and a
segmentation of the blobs (one label per blob, at half the resolution) with a
CSV file naming them. The demo runs the project's own commands on them, printing
each as it could be typed (precomputed-tif, precomputed-write-points,
precomputed-tif --segmentation --mesh), then serves the results until Ctrl-C and
prints the links to open: the image in every panel, the blob centres as points,
and a few of the cells as meshes in the 3-D view.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import shutil
import sys
import urllib.parse
from collections.abc import Callable

import numpy as np

from .. import errors
from ..errors import PrecomputedTifError, require_extra
from ..geometry import parse_triple
from ..info import read_info
from ..serving.core import Catalog, Dataset
from ..serving.http import PrecomputedServer, is_loopback, port_problem, serve, ssh_forward_line, urls
from ..sources.synthetic import blob_centres, blob_labels, write_synthetic_planes
from ..viewer.links import layer, neuroglancer_link, viewer_state
from . import convert as convert_command, write_points as write_points_command
from .support import add_log_argument, parse_args, run_main, setup_logging

SHAPE = (160, 448, 512)  # z, y, x
VOXEL_SIZE = (1.8, 1.8, 2.0)  # microns, x, y, z
PORT, VIEWER_PORT = 9000, 9001
SHOWN_CELLS = 8  # cells selected in the link: their meshes in the 3-D panel, a tint in the slices


class _CommandFailed(Exception):
    """A command the demo ran failed; it has printed its own one line. ``args[0]``: its status."""


def _triple_text(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def run_command(prog: str, main: Callable[[list[str]], int], argv: list[str]) -> None:
    """Print ``prog argv`` as it would be typed in a shell, then run it in this process."""
    print(f"$ {shlex.join([prog, *argv])}", flush=True)
    status = main(argv)
    errors.speak_command_line(True)  # the command's run_main turned it off on its way out
    if status:
        raise _CommandFailed(status)


def write_centres(path: str, shape_zyx) -> int:
    """Write the blobs' centres (x, y, z in voxels of the stack) as a CSV file; returns how many."""
    centres = blob_centres(shape_zyx)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "z"])
        w.writerows([[repr(float(v)) for v in p] for p in centres])  # repr: read back to the same float
    return len(centres)


def write_labels(directory: str, label_shape) -> tuple[str, str, list[int]]:
    """Write the blobs' labels (one TIFF) and a CSV naming each (``cell N``, tagged large or
    small); returns both paths and the ids of the cells the view selects: the :data:`SHOWN_CELLS`
    largest that its middle z plane cuts, the largest hundredth of all cells left out, largest first."""
    import tifffile

    labels = blob_labels(label_shape)
    source = os.path.join(directory, "cell_labels.tif")
    tifffile.imwrite(source, labels)
    ids, counts = np.unique(labels, return_counts=True)
    ids, counts = ids[1:], counts[1:]
    table = os.path.join(directory, "cells.csv")
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "tags"])
        for i, n in zip(ids, counts):
            w.writerow([int(i), f"cell {i}", "large" if n >= np.median(counts) else "small"])
    # The view opens on the middle plane: cells it cuts show in the slices and the 3-D panel
    # alike. The largest hundredth are blobs merged into networks that sprawl over the volume.
    in_view = set(np.unique(labels[label_shape[0] // 2]).tolist())
    compact = counts <= np.percentile(counts, 99)
    ranked = [int(i) for i, n in sorted(zip(ids[compact], counts[compact]), key=lambda p: -p[1]) if i in in_view]
    return source, table, ranked[:SHOWN_CELLS]


def demo_state(image: str, points: str, cells: str, info: dict, cells_info: dict, shown: list[int]) -> dict:
    """The view the demo opens: the image in every panel, the blob centres as magenta points, and
    the ``shown`` cells -- meshes in the 3-D panel, a light tint over the image in the slices (a
    handful, not every id: all of them cover the image and make the 3-D panel a ball of colour,
    and their ids would make the link kilobytes long)."""
    cell_layer = dict(layer(cells, cells_info, "cells"), segments=[str(i) for i in shown], selectedAlpha=0.25)
    layers = [layer(image, info, "image"),
              {"type": "annotation", "source": points, "name": "cell centres", "annotationColor": "#ff00ff"},
              cell_layer]
    return viewer_state(layers, info)


def start_local_viewer(bind: str, port: int) -> bool:
    """Start the ``neuroglancer`` package's own client server on ``bind``:``port``; False when
    that package is not installed. A port in use is a user error naming it."""
    try:
        import neuroglancer
        import neuroglancer.server
    except ImportError:
        return False
    neuroglancer.set_server_bind_address(bind, bind_port=port)
    try:
        neuroglancer.server.start()
    except OSError as exc:
        raise PrecomputedTifError(port_problem(bind, port, exc, "--viewer-port", avoid=())) from None
    return True


def local_viewer(link: str) -> str:
    """The URL of a viewer of the client started by :func:`start_local_viewer` showing the
    link's state."""
    import neuroglancer

    from ..viewer.screenshot import state_from_url

    viewer = neuroglancer.Viewer()
    viewer.set_state(neuroglancer.ViewerState(state_from_url(link)))
    local_viewer.viewer = viewer  # type: ignore[attr-defined]  # keep it alive while serving
    return viewer.get_viewer_url()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="precomputed-tif-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example, on a remote machine (then run the ssh line it prints on yours):\n"
                                       "  python -m precomputed_tif.cli.demo --dir demo --port 9000 --viewer-port 9001")
    p.add_argument("--dir", default="demo", help="where the sample planes and the dataset go (default: demo)")
    p.add_argument("--format", default="tiff", help="chunk format of the datasets (default: tiff)")
    p.add_argument("--shape", default=",".join(map(str, SHAPE[::-1])), metavar="X,Y,Z",
                   help=f"size of the sample stack in voxels (default: {','.join(map(str, SHAPE[::-1]))}; "
                        "smaller is faster)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address to serve on (default: 127.0.0.1, this machine only; use ssh to view from another)")
    p.add_argument("--port", type=int, default=PORT,
                   help=f"port of the data server (default: {PORT}; 0 picks a free one)")
    p.add_argument("--viewer-port", type=int, default=VIEWER_PORT,
                   help=f"port of Neuroglancer's own client, served from here (default: {VIEWER_PORT}; 0 picks a "
                        "free one)")
    p.add_argument("--no-serve", action="store_true", help="stop after converting")
    add_log_argument(p)
    return p


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.log)
    failed: list[int] = []

    def body():
        try:
            _demo(args)
        except _CommandFailed as exc:
            failed.append(exc.args[0])

    status = run_main("demo", body)
    return failed[0] if failed else status


def _demo(args) -> None:
    """Everything the demo does; see the module's docstring."""
    require_extra("demo", "the demo", "skimage", "zmesh", "DracoPy")
    shape = parse_triple(args.shape, "--shape", integer=True)[::-1]  # z, y, x
    if min(shape) < 8:
        raise PrecomputedTifError(f"--shape must be at least 8 voxels on each axis, got {args.shape}")
    catalog = Catalog([])  # filled once the datasets are written
    server = None
    has_viewer = False
    if not args.no_serve:
        # Both ports are taken before any work, so a port in use is said at once.
        for flag, port in (("--port", args.port), ("--viewer-port", args.viewer_port)):
            if not 0 <= port <= 65535:
                raise PrecomputedTifError(f"{flag} must be a port number from 0 to 65535, got {port}")
        try:
            server = PrecomputedServer((args.bind, args.port), catalog)
        except OSError as exc:
            raise PrecomputedTifError(port_problem(args.bind, args.port, exc, "--port",
                                                   avoid=(args.viewer_port,))) from None
        has_viewer = start_local_viewer(args.bind, args.viewer_port)
    try:
        _make_and_serve(args, shape, catalog, server, has_viewer)
    finally:
        if server is not None:
            server.server_close()  # also when a command failed before serving


def _make_and_serve(args, shape, catalog: Catalog, server: PrecomputedServer | None, has_viewer: bool) -> None:
    """Write the sample and its datasets, then serve them with ``server`` (None: stop there)."""
    planes = os.path.join(args.dir, "planes")
    dest = os.path.join(args.dir, "precomputed")
    pattern = os.path.join(planes, "img_*.tif")
    z, y, x = shape
    if len([f for f in os.listdir(planes) if f.endswith(".tif")] if os.path.isdir(planes) else []) != z \
            or read_shape(planes) != (y, x):
        print(f"writing a {x}x{y}x{z} uint16 sample stack to {planes}/ ...", flush=True)
        shutil.rmtree(planes, ignore_errors=True)
        write_synthetic_planes(planes, shape)
    run_command("precomputed-tif", convert_command.main,
                ["--source", pattern, "--dest", dest, "--format", args.format,
                 "--voxel-size", _triple_text(VOXEL_SIZE), "--overwrite"])

    centres = os.path.join(args.dir, "blob_centres.csv")
    n = write_centres(centres, shape)
    print(f"wrote the {n} blob centres (x, y, z in voxels) to {centres}")
    points_dir = os.path.join(args.dir, "points")
    shutil.rmtree(points_dir, ignore_errors=True)  # the command writes only into a new or empty directory
    run_command("precomputed-write-points", write_points_command.main,
                ["--input", centres, "--dataset", dest, "--output-directory", points_dir])

    label_shape = tuple(n // 2 for n in shape)  # the segmentation, at half the resolution
    label_tif, table, shown = write_labels(args.dir, label_shape)
    cells_dir = os.path.join(args.dir, "cells")
    run_command("precomputed-tif", convert_command.main,
                ["--source", label_tif, "--dest", cells_dir, "--format", args.format, "--segmentation",
                 "--voxel-size", _triple_text(2 * v for v in VOXEL_SIZE), "--mesh", "--properties", table,
                 "--overwrite"])
    if server is None:
        print(f"to view it: precomputed-webserver --directory {dest}")
        return

    catalog.datasets += [Dataset("image", dest), Dataset("points", points_dir), Dataset("cells", cells_dir)]
    image, points, cells = urls(server)
    link = neuroglancer_link(demo_state(image, points, cells, read_info(dest), read_info(cells_dir), shown))
    link_file = os.path.join(args.dir, "link.txt")
    with open(link_file, "w") as f:
        f.write(link + "\n")
    print()
    print(f"Serving {dest}, {points_dir} and {cells_dir}.")
    print(f"Neuroglancer source: {image}")
    print(f"Points source: {points}")
    print(f"Segmentation source (with meshes): {cells}")
    print(f"Open in a browser (cells {', '.join(map(str, shown))} selected; select others in the cells layer):")
    ports = [server.server_address[1]]
    if has_viewer:
        local = local_viewer(link)
        viewer_port = urllib.parse.urlsplit(local).port
        assert viewer_port is not None  # the client's URL always names its port
        ports.append(viewer_port)
        print(f"  {local}")
        print("    Neuroglancer's own client, served from here: needs no internet")
    print(f"  {link}")
    print("    Neuroglancer's public app")
    if is_loopback(args.bind):
        print("From another computer, forward the ports over ssh there, then open the same links there:")
        print(f"  {ssh_forward_line(args.bind, ports)}")
    print(f'A picture of the view: precomputed-screenshot "$(cat {link_file})" --out view.png')
    print("Press Ctrl-C to stop.", flush=True)
    try:
        serve(server, workers=1)
    except KeyboardInterrupt:
        print("\nstopped; the datasets stay in", args.dir)


def read_shape(planes: str) -> tuple[int, int] | None:
    """(y, x) of the first plane in ``planes``, or None if there is none to read."""
    import tifffile

    first = os.path.join(planes, "img_00000.tif")
    try:
        with tifffile.TiffFile(first) as f:
            return tuple(f.pages[0].shape[:2])
    except (OSError, ValueError, IndexError):
        return None


if __name__ == "__main__":
    sys.exit(main())
