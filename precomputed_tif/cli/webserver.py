"""``precomputed-webserver``: serve datasets to Neuroglancer (:mod:`precomputed_tif.serving.http`)."""

from __future__ import annotations

import argparse
import sys

from .. import formats
from ..errors import PrecomputedTifError
from ..pipeline.executor import default_workers
from ..serving.http import (
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    is_loopback,
    make_server,
    other_viewers,
    serve,
    ssh_forward_line,
    urls,
    viewer_links,
)
from .support import add_log_argument, parse_args, run_main, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="precomputed-webserver",
        description="Serve precomputed datasets to Neuroglancer over HTTP, translating tiff, zarr and "
                    "blockfs chunks into the raw chunks Neuroglancer reads.",
        epilog="examples:\n  precomputed-webserver --directory /data/precomputed\n"
               "  precomputed-webserver --config sources.json --port 8080\n\n"
               "Then add a layer in Neuroglancer with the precomputed:// URL it prints.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=9000, help="port to listen on (default: 9000)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for everyone)")
    p.add_argument("--directory", metavar="DIR", help="the dataset directory (the one holding info)")
    p.add_argument("--format", choices=formats.served_names(), default=None,
                   help="how its chunks are stored (default: detected); raw serves files as they are")
    p.add_argument("--config", metavar="SOURCES_JSON",
                   help="serve every source of a sources.json under /<name>/ instead of one --directory")
    p.add_argument("--gzip", action="store_true", help="gzip chunk bodies for clients that accept it")
    p.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                   help=f"server processes (default: one per core, here {default_workers()})")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N",
                   help=f"connections each worker serves at once; more wait their turn (default: {MAX_CONNECTIONS})")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT, metavar="SECONDS",
                   help=f"close a keep-alive connection idle this long (default: {IDLE_TIMEOUT:g})")
    p.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT, metavar="SECONDS",
                   help=f"close a connection whose request headers take longer than this (default: {HEADER_TIMEOUT:g})")
    add_log_argument(p)
    return p


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.log)

    def body():
        # Chunk decoders release the GIL many times per request (once per TIFF
        # strip); a short switch interval keeps request threads from queueing
        # behind each other for the default 5 ms at every release.
        sys.setswitchinterval(0.0005)
        for flag, value in (("--max-connections", args.max_connections), ("--idle-timeout", args.idle_timeout),
                            ("--header-timeout", args.header_timeout), ("--workers", args.workers)):
            if not value > 0:
                raise PrecomputedTifError(f"{flag} must be more than 0, got {value:g}")
        server = make_server(args.bind, args.port, args.directory, args.format, args.config, args.gzip,
                             args.max_connections, args.idle_timeout, args.header_timeout)
        if not is_loopback(args.bind):
            print(f"warning: listening on {args.bind}: anyone who can reach this machine on port "
                  f"{server.server_address[1]} can read the data", file=sys.stderr)
        print("Serving. In Neuroglancer, add a layer with source:")
        for url in urls(server):
            print(f"  {url}")
        links = viewer_links(server)
        if links:
            print("or open a link that shows it with its contrast and channel colours:")
            for name, link in links:
                print(f"  {name}: {link}")
        others = other_viewers(server)
        if others:
            print("Other viewers read these files as they are:")
            for what, link in others:
                print(f"  {what}: {link}")
        if is_loopback(args.bind):
            print("From another computer, forward the port over ssh there, then open the same links there:")
            print(f"  {ssh_forward_line(args.bind, [server.server_address[1]])}")
        print("Press Ctrl-C to stop.", flush=True)
        serve(server, args.workers)

    return run_main("precomputed-webserver", body)


if __name__ == "__main__":
    sys.exit(main())
