"""``python -m precomputed_tif.cli.demo``: make a sample stack, convert it, serve it to Neuroglancer.

The sample is a synthetic light-sheet-like stack (bright blobs on a dim,
smoothly varying background, with camera noise) written as one TIFF per plane,
exactly the input the converter is for, and a segmentation of its blobs (one
label per blob, at half the resolution) with a CSV file naming them. The demo
converts both, meshes the segmentation, then serves the results until Ctrl-C and
prints the links to open: the blobs show as cells in the 3-D view.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np

from ..annotations import PointSet, write_points
from ..convert import convert
from ..errors import PrecomputedTifError, require_extra
from ..serving.core import Catalog, Dataset
from ..serving.http import PrecomputedServer, serve, urls
from ..sources.synthetic import blob_centres, blob_labels, write_synthetic_planes
from ..viewer.links import layer, neuroglancer_link, viewer_state
from .support import add_log_argument, run_main, setup_logging

SHAPE = (160, 448, 512)  # z, y, x
VOXEL_SIZE = (1.8, 1.8, 2.0)  # microns
LABEL_SHAPE = tuple(n // 2 for n in SHAPE)  # the segmentation, at half the resolution
LABEL_VOXEL_SIZE = tuple(2 * v for v in VOXEL_SIZE)


def make_cells(directory: str, fmt: str) -> tuple[str, dict, list[int]]:
    """Write the blobs' labels and a CSV naming them, convert with --segmentation and mesh them;
    returns the dataset, its info and the segment ids."""
    import csv

    import tifffile

    from ..meshing import mesh_dataset

    labels = blob_labels(LABEL_SHAPE)
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
    dest = os.path.join(directory, "cells")
    print(f"converting and meshing: precomputed-tif --source {source} --dest {dest} --segmentation --mesh "
          f"--properties {table}", flush=True)
    convert(source, dest, format=fmt, voxel_size=LABEL_VOXEL_SIZE, segmentation=True, overwrite=True,
            progress=sys.stderr.isatty())
    info = mesh_dataset(dest, properties=table, progress=sys.stderr.isatty())
    return dest, info, [int(i) for i in ids]


def local_viewer(link: str) -> str | None:
    """The URL of a Neuroglancer viewer served by this process (the ``neuroglancer`` package's
    own client) showing the link's state, or None when that package is not installed."""
    try:
        import neuroglancer
    except ImportError:
        return None
    from ..viewer.screenshot import state_from_url

    neuroglancer.set_server_bind_address("127.0.0.1")
    viewer = neuroglancer.Viewer()
    viewer.set_state(neuroglancer.ViewerState(state_from_url(link)))
    local_viewer.viewer = viewer  # type: ignore[attr-defined]  # keep it alive while serving
    return viewer.get_viewer_url()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="precomputed-tif-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="demo", help="where the sample planes and the dataset go (default: demo)")
    p.add_argument("--format", default="tiff", help="chunk format of the dataset (default: tiff)")
    p.add_argument("--port", type=int, default=9000, help="port to serve on (default: 9000; 0 picks a free one)")
    p.add_argument("--no-serve", action="store_true", help="stop after converting")
    add_log_argument(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)

    def body():
        require_extra("demo", "the demo", "skimage", "zmesh", "DracoPy")
        planes = os.path.join(args.dir, "planes")
        dest = os.path.join(args.dir, "precomputed")
        pattern = os.path.join(planes, "img_*.tif")
        if len([f for f in os.listdir(planes) if f.endswith(".tif")] if os.path.isdir(planes) else []) != SHAPE[0]:
            print(f"writing a {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} uint16 sample stack to {planes}/ ...", flush=True)
            write_synthetic_planes(planes, SHAPE)
        print(f"converting: precomputed-tif --source \"{pattern}\" --dest {dest} --format {args.format}", flush=True)
        t = time.perf_counter()
        info = convert(pattern, dest, format=args.format, voxel_size=VOXEL_SIZE, overwrite=True,
                       progress=sys.stderr.isatty())
        keys = ", ".join(s["key"] for s in info["scales"])
        print(f"done in {time.perf_counter() - t:.1f} s: {len(info['scales'])} levels ({keys}) in {dest}/")
        points_dir = os.path.join(args.dir, "points")
        shutil.rmtree(points_dir, ignore_errors=True)
        centres = blob_centres(SHAPE)
        write_points(PointSet(centres, np.zeros(3), np.array(SHAPE[::-1], np.float64)), points_dir, VOXEL_SIZE)
        print(f"wrote {len(centres)} blob centres as a point layer in {points_dir}/ "
              f"(precomputed-write-points does this from a JSON or CSV file)")
        t = time.perf_counter()
        cells_dir, cells_info, cell_ids = make_cells(args.dir, args.format)
        print(f"done in {time.perf_counter() - t:.1f} s: {len(cell_ids)} cells with meshes and names in {cells_dir}/")
        if args.no_serve:
            print(f"to view it: precomputed-webserver --directory {dest}")
            return
        catalog = Catalog([Dataset("image", dest), Dataset("points", points_dir), Dataset("cells", cells_dir)])
        try:
            server = PrecomputedServer(("127.0.0.1", args.port), catalog)
        except OSError as exc:
            raise PrecomputedTifError(f"cannot listen on port {args.port}: {exc.strerror}; try --port 0") from None
        image, points, cells = urls(server)
        cell_layer = dict(layer(cells, cells_info, "cells"), segments=[str(i) for i in cell_ids])
        layers = [layer(image, info, "image"),
                  {"type": "annotation", "source": points, "name": "cell centres", "annotationColor": "#ff00ff"},
                  cell_layer]
        link = neuroglancer_link(viewer_state(layers, info))
        print()
        print(f"Serving {dest}, {points_dir} and {cells_dir}.")
        print(f"Neuroglancer source: {image}")
        print(f"Points source: {points}")
        print(f"Segmentation source (with meshes): {cells}")
        print("Open this link in a browser on this machine to see them all (Neuroglancer's public app):")
        print(f"  {link}")
        local = local_viewer(link)
        if local:
            print("or this one, Neuroglancer's own client served from here, which needs no internet:")
            print(f"  {local}")
        print(f"A picture of the view: precomputed-screenshot '{link}' --out view.png")
        print("Press Ctrl-C to stop.", flush=True)
        try:
            serve(server, workers=1)
        except KeyboardInterrupt:
            print("\nstopped; the dataset stays in", dest)

    return run_main("demo", body)


if __name__ == "__main__":
    sys.exit(main())
