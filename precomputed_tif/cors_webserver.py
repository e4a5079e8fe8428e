"""``precomputed-webserver``: serve datasets to Neuroglancer from this machine.

A threading ``http.server`` speaking HTTP/1.1 with keep-alive; every answer
comes from :func:`precomputed_tif.serving.handle`.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import socket
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .cli_support import add_log_argument, run_main, setup_logging
from .errors import PrecomputedTifError
from .executor import default_workers
from .serving import FORMATS, Catalog, ConfigCatalog, Dataset, handle, text_response

access_log = logging.getLogger("precomputed_tif.access")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "precomputed-tif"

    def _respond(self, method: str) -> None:
        raw_path = self.path.split("?", 1)[0].split("#", 1)[0]
        if raw_path.startswith(("http://", "https://")):  # absolute-form request target
            raw_path = urllib.parse.urlsplit(raw_path).path
        headers = {k.lower(): v for k, v in self.headers.items()
                   if k.lower() in ("range", "accept-encoding", "access-control-request-headers")}
        try:
            path = urllib.parse.unquote(raw_path, errors="strict")
            response = handle(self.server.catalog(), method, path, headers)
        except UnicodeDecodeError:  # percent-escapes that are not UTF-8: no such name can exist
            response = text_response(404)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        body = response.body
        if isinstance(body, (bytes, bytearray)):
            if body:
                self.wfile.write(body)
        else:
            for block in body:
                self.wfile.write(block)
        access_log.info('%s "%s %s" %d %s', self.client_address[0], method, self.path, response.status,
                        response.header("Content-Length"))

    def do_GET(self):
        self._respond("GET")

    def do_HEAD(self):
        self._respond("HEAD")

    def do_OPTIONS(self):
        self._respond("OPTIONS")

    def _not_allowed(self):
        self._respond(self.command)

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def log_message(self, format, *args):  # http.server's own stderr lines go to logging instead
        logging.getLogger("precomputed_tif.http").debug(format, *args)


class PrecomputedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, catalog_source):
        self._catalog_source = catalog_source
        super().__init__(address, Handler)

    def catalog(self) -> Catalog:
        src = self._catalog_source
        return src.current() if isinstance(src, ConfigCatalog) else src


def make_server(bind: str, port: int, directory: str | None = None, format: str | None = None,
                config: str | None = None, gzip: bool = False) -> PrecomputedServer:
    """A server for one dataset directory, or for every source of a sources.json."""
    if (directory is None) == (config is None):
        raise PrecomputedTifError("give either --directory or --config")
    if config is not None:
        source = ConfigCatalog(config)
    else:
        dataset = Dataset("", directory, format, gzip)
        if not dataset.serves_raw:
            dataset.volume()  # a clear error now rather than 404s later
        source = Catalog([dataset], single=True)
    try:
        return PrecomputedServer((bind, port), source)
    except OSError as exc:
        raise PrecomputedTifError(f"cannot listen on {bind}:{port}: {exc.strerror}") from None


def serve(server: PrecomputedServer, workers: int) -> None:
    """Serve until interrupted, in ``workers`` processes sharing the listening socket.

    Each process answers with its own threads; several processes let chunk
    decoding use every core, which one Python process cannot. Stopping the
    first process (Ctrl-C, SIGTERM) stops them all.
    """
    children = []
    if workers > 1:
        # Nothing is open yet that a child could share by accident: stores open on first use.
        for d in server.catalog().datasets:
            d.close()
        for _ in range(workers - 1):
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                try:
                    server.serve_forever()
                finally:
                    os._exit(0)
            children.append(pid)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            os.waitpid(pid, 0)
        server.server_close()


def urls(server: PrecomputedServer) -> list[str]:
    """The precomputed:// URLs to paste into Neuroglancer."""
    host, port = server.server_address[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    base = f"precomputed://http://{host}:{port}"
    catalog = server.catalog()
    if catalog.single:
        return [base]
    return [f"{base}/{d.name}" for d in catalog.datasets]


def is_loopback(bind: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(bind)).is_loopback
    except (OSError, ValueError):
        return False


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
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="how its chunks are stored (default: detected); raw serves files as they are")
    p.add_argument("--config", metavar="SOURCES_JSON",
                   help="serve every source of a sources.json under /<name>/ instead of one --directory")
    p.add_argument("--gzip", action="store_true", help="gzip chunk bodies for clients that accept it")
    p.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                   help=f"server processes (default: one per core, here {default_workers()})")
    add_log_argument(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)

    def body():
        # Chunk decoders release the GIL many times per request (once per TIFF
        # strip); a short switch interval keeps request threads from queueing
        # behind each other for the default 5 ms at every release.
        sys.setswitchinterval(0.0005)
        server = make_server(args.bind, args.port, args.directory, args.format, args.config, args.gzip)
        if not is_loopback(args.bind):
            print(f"warning: listening on {args.bind}: anyone who can reach this machine on port "
                  f"{server.server_address[1]} can read the data", file=sys.stderr)
        print("Serving. In Neuroglancer, add a layer with source:")
        for url in urls(server):
            print(f"  {url}")
        print("Press Ctrl-C to stop.", flush=True)
        serve(server, args.workers)

    return run_main("precomputed-webserver", body)


if __name__ == "__main__":
    sys.exit(main())
