"""``precomputed-tif``: the command line of :func:`precomputed_tif.convert`."""

from __future__ import annotations

import argparse
import sys

from .. import formats
from ..convert import convert
from ..errors import PrecomputedTifError, param
from ..formats import FormatOptions
from ..formats.ome_tiff.cli import add_arguments as add_ome_tiff_arguments
from ..geometry import parse_triple
from ..options import ConvertOptions, Resources, SeriesResult
from ..pipeline import memory
from ..pipeline.executor import default_workers
from ..sources import ALL_TIMEPOINTS
from ..storage import open_storage
from .mesh import add_mesh_arguments, sharded_value, summary as mesh_summary
from .support import add_cache_control_argument, add_log_argument, announce_bucket, parse_args, run_main, setup_logging

EPILOG = """\
examples:
  precomputed-tif --source "/data/img_*.tif" --dest /data/precomputed
  precomputed-tif --source stack.tif --dest out --format zarr --voxel-size 0.4,0.4,2.0
  precomputed-tif --source "labels/*.tiff" --dest labels_out --segmentation
  precomputed-tif --source "labels/*.tiff" --dest labels_out --segmentation --mesh --properties cells.csv
  precomputed-tif --source two_channels.ome.tif --dest out          (one dataset, 2 channels)
  precomputed-tif --source timelapse.tif --dest t5 --timepoint 5 --channel 0
  precomputed-tif --source experiment.lif --inspect          (what it holds; writes nothing)
  precomputed-tif --source experiment.lif --series 2 --dest out --format ome-zarr
        (also .nd2, .czi, .ims, BigDataViewer .xml/.h5 and .n5: no TIFF export first)
  precomputed-tif --source timelapse.tif --dest movie.zarr --format ome-zarr
        (every time point: one OME-Zarr with a t axis, which Neuroglancer and napari step through)
  precomputed-tif --source timelapse.tif --dest movie --timepoint all --format precomputed
        (one dataset per time point: movie/t0000, movie/t0001, ...)
  precomputed-tif --source "/data/img_*.tif" --dest /var/www/data/brain --format precomputed
        (Neuroglancer's own files: any static web server or bucket serves them)
  precomputed-tif --source /data/blockfs_dataset --dest /var/www/data/brain --format precomputed
        (store an existing dataset again, in another format, without its TIFF planes)
  precomputed-tif --source /data/scan.ome.zarr --dest /var/www/data/scan --format precomputed --series 0
        (an OME-Zarr of another tool: ome-zarr-py, ngff-zarr, bioformats2raw; --series picks one image)
  precomputed-tif --source "/data/img_*.tif" --dest /var/www/data/brain.zarr --format ome-zarr
        (OME-Zarr: Neuroglancer as zarr://, napari, and other OME tools, from any static web server)
  precomputed-tif --source "/data/img_*.tif" --dest /data/brain --format ome-tiff
        (one pyramidal /data/brain/brain.ome.tif for Fiji, QuPath and Viv/Avivator)

Then serve the result and open it in Neuroglancer:
  precomputed-webserver --directory /data/precomputed
or write it to a bucket, which prints the link that opens it from there:
  precomputed-tif --source "/data/img_*.tif" --dest s3://my-bucket/brain --format precomputed
"""


def _timepoint(text: str) -> int | str:
    """``--timepoint``'s value: a time point's number, or ``all``."""
    if text.strip().lower() == ALL_TIMEPOINTS:
        return ALL_TIMEPOINTS
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a time point's number or {ALL_TIMEPOINTS}, not {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="precomputed-tif",
        description="Convert a stack of TIFF planes (one file per z plane, or one multi-page TIFF) "
                    "into a multi-resolution Neuroglancer precomputed volume.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", required=True, metavar="GLOB",
                   help="planes to convert: a glob, e.g. \"/data/img_*.tif\" (quote it), or the folder holding "
                        "them (its .tif and .tiff files); or the directory of an existing dataset to store again in "
                        "another --format; or a microscope file: Nikon .nd2, Zeiss .czi, Leica .lif/.lof, Imaris "
                        ".ims, BigDataViewer .xml (or its .h5), an .n5 directory. Planes are sorted by the "
                        "numbers in their names (img_2 before img_10), the first file is z = 0. A single "
                        "multi-page TIFF (OME-TIFF, ImageJ hyperstack, ...) is read as its metadata "
                        "describes it: z planes, channels, time points. A path that exists is taken as "
                        "it is, brackets and all.")
    p.add_argument("--dest", default=None, metavar="DIR",
                   help="output directory; created if missing, must be empty or hold this same conversion. Or "
                        "s3://BUCKET/PREFIX or gs://BUCKET/PREFIX: the dataset is written to the bucket, and the "
                        "link that opens it from there is printed (formats precomputed, zarr and ome-zarr)")
    p.add_argument("--levels", type=int, default=None, metavar="N",
                   help="number of resolution levels, level 1 being full resolution "
                        "(default: until the coarsest fits in one chunk in x and y)")
    p.add_argument("--voxel-size", default=None, metavar="X,Y,Z",
                   help="voxel size in microns (default: what the files' OME or ImageJ metadata records, "
                        "else 1.8,1.8,2.0)")
    p.add_argument("--channel", type=int, default=None, metavar="N",
                   help="convert only channel N (0 is the first) of a multi-channel or colour input "
                        "(default: all channels, in one dataset)")
    p.add_argument("--timepoint", type=_timepoint, default=None, metavar="N",
                   help="convert time point N (0 is the first) of a time series, or 'all': with --format ome-zarr "
                        "one OME-Zarr with a t axis (the default for a time series), with any other format one "
                        "dataset per time point, DIR/t0000, DIR/t0001, ...; other formats need it for a time "
                        "series")
    p.add_argument("--series", type=int, default=None, metavar="N",
                   help="convert image N (0 is the first) of a file holding several: a LIF file's images, "
                        "a CZI file's scenes, an ND2 file's positions, a BigDataViewer dataset's setups, an "
                        "OME-Zarr's bioformats2raw series; required when there are several (--inspect lists them)")
    p.add_argument("--inspect", action="store_true",
                   help="print what would be read from --source (series, axes, size, type, voxel size and "
                        "where it comes from, channels, time points) and write nothing; --dest is not needed")
    p.add_argument("--format", default=formats.DEFAULT, metavar="FORMAT",
                   help=f"how the volume is stored: {', '.join(formats.names())} (default: {formats.DEFAULT}). "
                        "tiff and blockfs need precomputed-webserver (or the WSGI app) to be seen in Neuroglancer; "
                        "precomputed is Neuroglancer's own format, which any static web server or bucket serves; "
                        "ome-zarr is the OME-NGFF image format (Neuroglancer's zarr://, napari, OME tools), "
                        "also served by any static server; zarr is served by precomputed-webserver as "
                        "precomputed:// and by any static server as an NGFF 0.4 zarr://. ome-tiff writes one "
                        "pyramidal OME-TIFF, DIR/<name of DIR>.ome.tif, for Fiji, QuPath and Viv instead")
    p.add_argument("--ngff-version", default=None, metavar="V",
                   help="with --format ome-zarr: 0.5 (default; Zarr v3, chunks grouped into a few shard "
                        "files) or 0.4 (Zarr v2, one file per chunk, for older readers)")
    p.add_argument("--encoding", default=None, metavar="NAME",
                   help="with --format precomputed: raw (default for images), png (lossless; uint8, or "
                        "one-channel uint16), jpeg (lossy; uint8 with 1 or 3 channels) or "
                        "compressed_segmentation (default for --segmentation)")
    p.add_argument("--jpeg-quality", type=int, default=None, metavar="Q",
                   help="with --encoding jpeg: 1-100 (default 90); coarser levels are still made from the "
                        "lossless data")
    shard = p.add_mutually_exclusive_group()
    shard.add_argument("--sharded", dest="sharded", action="store_const", const=True, default=None,
                       help="with --format precomputed: store every scale that can be in a few shard files "
                            "(default: the scales of more than 64 chunks)")
    shard.add_argument("--unsharded", dest="sharded", action="store_const", const=False,
                       help="with --format precomputed: one file per chunk at every scale")
    add_ome_tiff_arguments(p)
    p.add_argument("--chunk-size", default="64,64,64", metavar="X,Y,Z",
                   help="chunk size in voxels (default: 64,64,64)")
    p.add_argument("--segmentation", action="store_true",
                   help="the planes are integer labels: coarser levels take the most frequent label "
                        "instead of the mean, and Neuroglancer shows them as a segmentation")
    p.add_argument("--mesh", action="store_true",
                   help="with --segmentation: also make 3-D meshes and segment properties (voxel counts) "
                        "for Neuroglancer, as precomputed-mesh does")
    add_mesh_arguments(p, sharded_flag="--mesh-sharded")
    p.add_argument("--n-cores", type=int, default=None, metavar="N",
                   help=f"worker processes (default: all cores, here {default_workers()})")
    p.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="peak memory of the whole conversion, all workers together, e.g. 8G or 500M "
                        f"(default: half of this machine's memory, here {memory.default_limit() / 2**30:.1f}G)")
    p.add_argument("--dask-scheduler", metavar="ADDRESS", default=None,
                   help="run on an existing Dask distributed cluster, e.g. tcp://10.0.0.5:8786, instead of "
                        "local processes; its workers must see --source and --dest at the same paths")
    add_cache_control_argument(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace the precomputed dataset already in --dest (by default a rerun of the same "
                        "command resumes, and a different one is refused)")
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    add_log_argument(p)
    return p


def _check_mesh_options(args, fmt) -> None:
    """The meshing options' mistakes, found before converting: one line each."""
    if (args.mesh or args.properties or args.mesh_sharded != "auto") and not args.segmentation:
        raise PrecomputedTifError("--mesh, --properties and --mesh-sharded need --segmentation: meshes are "
                                  "made from labels")
    if args.mesh and not fmt.chunked:
        raise PrecomputedTifError("--mesh makes Neuroglancer meshes beside a precomputed dataset; it does not "
                                  f"go with --format {fmt.name}")
    if (args.properties or args.mesh_sharded != "auto") and not args.mesh:
        raise PrecomputedTifError("--properties and --mesh-sharded go with --mesh")
    if args.mesh:
        from ..meshing import require_mesh_packages

        require_mesh_packages()  # before converting, not after
    if args.properties:
        from ..meshing.segment_properties import read_properties_csv

        read_properties_csv(args.properties)  # a mistake in it is found before converting


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.log)

    def body():
        for flag, value in (("--channel", args.channel), ("--timepoint", args.timepoint),
                            ("--series", args.series)):
            if isinstance(value, int) and value < 0:
                raise PrecomputedTifError(f"{flag} must be 0 or more, got {value}")
        if args.inspect:
            from ..sources.inspect import DamagedImages, inspect_source

            try:
                print(inspect_source(args.source, series=args.series, channel=args.channel,
                                     timepoint=args.timepoint, segmentation=args.segmentation))
            except DamagedImages as exc:  # what can be read is listed, then the error line
                print(exc.report, flush=True)
                raise
            return
        if args.dest is None:
            raise PrecomputedTifError("--dest is required (the output directory), unless --inspect is given")
        voxel_size = None if args.voxel_size is None else parse_triple(args.voxel_size, "--voxel-size",
                                                                       integer=False)
        chunk_size = parse_triple(args.chunk_size, "--chunk-size", integer=True)
        limit = memory.parse_size(args.memory_limit) if args.memory_limit is not None else None
        fmt = formats.get(args.format)
        _check_mesh_options(args, fmt)
        progress = not args.no_progress and sys.stderr.isatty()
        options = ConvertOptions(
            format=fmt.name, levels=args.levels, voxel_size=voxel_size, chunk_size=chunk_size,
            segmentation=args.segmentation, channel=args.channel, timepoint=args.timepoint, series=args.series,
            format_options=FormatOptions(encoding=args.encoding, jpeg_quality=args.jpeg_quality, sharded=args.sharded,
                                         ngff_version=args.ngff_version, tile_size=args.tile_size,
                                         compression=args.compression))
        resources = Resources(n_cores=args.n_cores, memory_limit=limit, dask_scheduler=args.dask_scheduler,
                              progress=progress)
        dest = open_storage(args.dest, param("dest"), cache_control=args.cache_control)
        result = convert(args.source, dest, options, resources, overwrite=args.overwrite)
        print(result.summary())
        # One dataset, or one per time point (--timepoint all): each meshed and announced.
        written = [(dest, result)] if not isinstance(result, SeriesResult) else [
            (open_storage(part.dest, param("dest"), cache_control=args.cache_control), part) for part in result.parts]
        for storage, part in written:
            info = dict(part)
            if args.mesh:
                from ..meshing import mesh_dataset

                info = mesh_dataset(storage, n_cores=args.n_cores, memory_limit=limit,
                                    dask_scheduler=args.dask_scheduler, properties=args.properties,
                                    sharded=sharded_value(args.mesh_sharded),
                                    progress=progress)
                print(mesh_summary(storage, info))
            announce_bucket("precomputed-tif", storage, info, fmt)

    return run_main("precomputed-tif", body, resumable=True)


if __name__ == "__main__":
    sys.exit(main())
