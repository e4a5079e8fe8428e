"""``precomputed-mesh``: the command line of :func:`precomputed_tif.meshing.mesh_dataset`."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import param
from ..pipeline import memory
from ..pipeline.executor import default_workers
from ..storage import Storage, open_storage
from .support import add_cache_control_argument, add_log_argument, announce_bucket, parse_args, run_main, setup_logging

EPILOG = """\
examples:
  precomputed-mesh --dataset /data/labels_precomputed
  precomputed-mesh --dataset labels_out --properties cells.csv --n-cores 8 --memory-limit 4G

The CSV file has a header row and one row per segment: an "id" column, and any of
"name" (shown next to the id), "tags" (separated by ";"), "description", and further
columns (numbers become sortable number properties, anything else text), e.g.
  id,name,tags,area
  1,neuron A,neuron;layer4,12.5

Then serve the dataset (precomputed-webserver --directory DIR): Neuroglancer shows the
selected segments in its 3-D view and lists every segment with its voxel count.
"""


def add_mesh_arguments(p: argparse.ArgumentParser, sharded_flag: str = "--sharded") -> None:
    """The options meshing adds to a command (shared with ``precomputed-tif --mesh``, where the
    sharding flag is ``--mesh-sharded``: ``--sharded`` there is about the volume's chunks)."""
    p.add_argument("--properties", metavar="CSV", default=None,
                   help="segment names, tags and other columns for Neuroglancer's segment list: a CSV "
                        "file with a header and an id column, and name, tags (separated by ;), description "
                        "or other columns (precomputed-mesh -h shows an example)")
    p.add_argument(sharded_flag, dest="mesh_sharded", choices=("auto", "yes", "no"), default="auto",
                   help="store meshes in a few shard files (yes) or two files per segment (no); "
                        "default: sharded above 256 segments")


def sharded_value(text: str):
    return {"auto": None, "yes": True, "no": False}[text]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="precomputed-mesh",
        description="Make Neuroglancer's multi-resolution meshes and segment properties (voxel counts, "
                    "names) for a segmentation dataset written by precomputed-tif --segmentation.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, metavar="DIR",
                   help="the segmentation dataset (any format): a directory, or s3://BUCKET/PREFIX or "
                        "gs://BUCKET/PREFIX")
    add_mesh_arguments(p)
    p.add_argument("--n-cores", type=int, default=None, metavar="N",
                   help=f"worker processes (default: all cores, here {default_workers()})")
    p.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="peak memory of all processes together, e.g. 4G or 500M "
                        f"(default: half of this machine's memory, here {memory.default_limit() / 2**30:.1f}G)")
    p.add_argument("--dask-scheduler", metavar="ADDRESS", default=None,
                   help="run on an existing Dask distributed cluster, e.g. tcp://10.0.0.5:8786; its workers "
                        "must see --dataset at the same path")
    add_cache_control_argument(p)
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    add_log_argument(p)
    return p


def summary(storage: Storage, info: dict) -> str:
    """The line saying what meshing wrote into ``storage`` (its new ``info`` given)."""
    properties = json.loads(storage.get(f"{info['segment_properties']}/info") or b"{}")
    n = len(properties.get("inline", {}).get("ids", []))
    dataset = storage.location().rstrip("/")
    return f"wrote meshes and properties of {n} segments to {dataset}/{info['mesh']} and " \
           f"{dataset}/{info['segment_properties']}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.log)

    def body():
        from ..meshing import mesh_dataset

        limit = memory.parse_size(args.memory_limit) if args.memory_limit is not None else None
        storage = open_storage(args.dataset, param("dataset"), cache_control=args.cache_control)
        info = mesh_dataset(storage, n_cores=args.n_cores, memory_limit=limit,
                            dask_scheduler=args.dask_scheduler, properties=args.properties,
                            sharded=sharded_value(args.mesh_sharded),
                            progress=not args.no_progress and sys.stderr.isatty())
        print(summary(storage, info))
        announce_bucket("precomputed-mesh", storage, info, None)

    return run_main("precomputed-mesh", body, resumable=True)


if __name__ == "__main__":
    sys.exit(main())
