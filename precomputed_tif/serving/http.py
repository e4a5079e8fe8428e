"""``precomputed-webserver``: serve datasets to Neuroglancer from this machine.

A threading ``http.server`` speaking HTTP/1.1 with keep-alive; every answer
comes from :func:`precomputed_tif.serving.core.handle`. Made to face a lab network:

* a connection waits at most ``IDLE_TIMEOUT`` for its next request, and a
  request's line and headers must all arrive within ``HEADER_TIMEOUT`` of its
  first byte (slow clients cannot hold a thread for long);
* each worker serves at most ``MAX_CONNECTIONS`` connections at once; more
  wait in a listen backlog of ``BACKLOG`` (bursts are queued, not dropped);
* a request that carries a body is answered and its connection closed, so a
  body is never read as the next request;
* a response goes out in one write (headers and body together) with Nagle's
  algorithm off, so small answers on a keep-alive connection are not held back
  by delayed ACKs;
* every answer, errors from the HTTP layer included (400, 414, 431, 501),
  carries the CORS headers;
* an HTTP/1.1 request without exactly one ``Host`` is a 400, as nginx and
  Apache answer it;
* a client that goes away is logged as one debug line, never a traceback;
* with ``--workers N`` a supervisor process starts N worker processes,
  restarts any that dies, and stops them all when it stops; a worker whose
  supervisor dies (even by SIGKILL) exits too.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import PrecomputedTifError
from ..formats.zarr.ngff import root_version
from ..info import read_volume_info
from ..process import die_with_parent, ignore_signals, interrupt
from ..viewer.links import AVIVATOR, dataset_link, zarr_link
from .core import REASONS, REQUEST_HEADERS, Catalog, ConfigCatalog, Dataset, Response, handle, text_response, url_path

access_log = logging.getLogger("precomputed_tif.access")
log = logging.getLogger(__name__)

IDLE_TIMEOUT = 20.0  # seconds a keep-alive connection may wait for its next request
HEADER_TIMEOUT = 10.0  # seconds from a request's first byte to the end of its headers
SEND_TIMEOUT = 60.0  # seconds one write of a response may wait for the client to read
MAX_CONNECTIONS = 512  # connections one worker process serves at once
BACKLOG = 1024  # connections the kernel queues before the server accepts them
MAX_REQUEST_LINE = 8192
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class _DeadlineSocketIO(io.RawIOBase):
    """A socket's read side where every read must finish before ``deadline``
    (a monotonic time): a client trickling bytes cannot keep a read alive."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline = time.monotonic() + IDLE_TIMEOUT

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(b)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PrecomputedServer
    rfile: io.BufferedReader

    def version_string(self) -> str:
        return "precomputed-tif"

    def setup(self) -> None:
        self.connection = self.request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = _DeadlineSocketIO(self.connection)
        self.rfile = io.BufferedReader(self._reader, 65536)
        # No wfile (the base class would make one): responses are written by _send, in one call.

    def finish(self) -> None:
        pass

    def handle(self) -> None:
        self.close_connection = False
        try:
            while not self.close_connection:
                self.handle_one_request()
        except _GONE as exc:
            logging.getLogger("precomputed_tif.http").debug("%s: connection dropped (%s)",
                                                             self.client_address[0], type(exc).__name__)

    def handle_one_request(self) -> None:
        self.close_connection = True
        self.command = self.request_version = ""
        self.requestline = ""
        self._reader.deadline = time.monotonic() + self.server.idle_timeout
        if not self.rfile.peek(1):  # the client closed the connection
            return
        self._reader.deadline = time.monotonic() + self.server.header_timeout
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.send_error(414)
            return
        if not self.parse_request():  # it has answered (400, 431, ...)
            return
        if self.request_version not in ("HTTP/0.9", "HTTP/1.0") and len(self.headers.get_all("Host", [])) != 1:
            # HTTP/1.1 requires exactly one Host (RFC 9112 3.2); nginx and Apache answer 400 too.
            self.send_error(400)
            return
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501)
            return
        method()

    def handle_expect_100(self) -> bool:
        return True  # no "100 Continue": a request with a body is answered without reading it

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (400, 414, 431, 501, ...), with CORS like every answer."""
        self.close_connection = True
        self._send(text_response(code, REASONS.get(code)), "HEAD" if self.command == "HEAD" else "GET")

    def _send(self, response: Response, method: str) -> None:
        """Status line, headers and (the start of) the body in one write."""
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}",
                 "Server: precomputed-tif", f"Date: {self.date_time_string()}"]
        lines += [f"{name}: {value}" for name, value in response.headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body = response.body
        self.connection.settimeout(SEND_TIMEOUT)
        try:
            if method == "HEAD":
                self.connection.sendall(head)
            elif isinstance(body, (bytes, bytearray, memoryview)):
                self.connection.sendall(head + body)
            else:
                blocks = iter(body)
                first = next(blocks, b"")
                self.connection.sendall(head + first)
                for block in blocks:
                    self.connection.sendall(block)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        access_log.info('%s "%s %s" %d %s', self.client_address[0], self.command or "-",
                        getattr(self, "path", "-"), response.status, response.header("Content-Length"))

    def _respond(self, method: str) -> None:
        if _has_body(self.headers) or _folded(self.headers):
            # Never read a body as the next request (request smuggling behind a proxy):
            # answer this one and close the connection.
            self.close_connection = True
            if _folded(self.headers) or self.headers.get("transfer-encoding") and self.headers.get("content-length"):
                self._send(text_response(400), method)
                return
        raw_path = self.path.split("?", 1)[0].split("#", 1)[0]
        if raw_path.startswith(("http://", "https://")):  # absolute-form request target
            raw_path = urllib.parse.urlsplit(raw_path).path
        headers: dict[str, str] = {}
        for k, v in self.headers.items():
            k = k.lower()
            if k in REQUEST_HEADERS:  # a header sent several times is one list (RFC 9110 5.3)
                headers[k] = f"{headers[k]}, {v}" if k in headers else v
        try:
            path = urllib.parse.unquote(raw_path, errors="strict")
            response = handle(self.server.catalog(), method, path, headers)
        except UnicodeDecodeError:  # percent-escapes that are not UTF-8: no such name can exist
            response = text_response(404)
        self._send(response, method)

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


def _has_body(headers) -> bool:
    length = headers.get("content-length")
    return bool(headers.get("transfer-encoding")) or (length is not None and length.strip() != "0")


def _folded(headers) -> bool:
    """A header value continued on the next line (obsolete line folding): refused."""
    return any("\n" in v or "\r" in v for v in headers.values())


class PrecomputedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(self, address, catalog_source, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout: float = IDLE_TIMEOUT, header_timeout: float = HEADER_TIMEOUT):
        self._catalog_source = catalog_source
        self.idle_timeout, self.header_timeout = idle_timeout, header_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, Handler)

    def catalog(self) -> Catalog:
        src = self._catalog_source
        return src.current() if isinstance(src, ConfigCatalog) else src

    def get_request(self):
        # Take a connection only when one of this worker's slots is free; until then it
        # waits in the listen backlog, where another worker may take it.
        self._slots.acquire()
        try:
            return super().get_request()
        except BaseException:
            self._slots.release()
            raise

    def shutdown_request(self, request) -> None:
        try:
            super().shutdown_request(request)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            logging.getLogger("precomputed_tif.http").debug("%s: %s", client_address[0], exc)
        else:
            log.exception("error serving %s", client_address[0])


def make_server(bind: str, port: int, directory: str | None = None, format: str | None = None,
                config: str | None = None, gzip: bool = False, max_connections: int = MAX_CONNECTIONS,
                idle_timeout: float = IDLE_TIMEOUT, header_timeout: float = HEADER_TIMEOUT) -> PrecomputedServer:
    """A server for one dataset directory, or for every source of a sources.json."""
    if (directory is None) == (config is None):
        raise PrecomputedTifError("give either --directory or --config")
    source: Catalog | ConfigCatalog
    if config is not None:
        source = ConfigCatalog(config)
    else:
        assert directory is not None  # exactly one of the two, checked above
        dataset = Dataset("", directory, format, gzip)
        if not dataset.serves_raw:
            dataset.check()  # a clear error now rather than 404s later
        source = Catalog([dataset], single=True)
    try:
        return PrecomputedServer((bind, port), source, max_connections, idle_timeout, header_timeout)
    except OSError as exc:
        raise PrecomputedTifError(port_problem(bind, port, exc)) from None


def port_problem(bind: str, port: int, exc: OSError, flag: str = "--port", avoid=()) -> str:
    """One line saying why listening on ``bind``:``port`` failed; when the port is in use, it
    suggests a free one near it (not one of ``avoid``, ports the caller wants for itself)."""
    if exc.errno != errno.EADDRINUSE:
        return f"cannot listen on {bind}:{port}: {exc.strerror or exc}"
    free = next((p for p in range(port + 1, min(port + 100, 65536)) if p not in avoid and _free(bind, p)), None)
    hint = f"try {flag} {free}" if free is not None else f"{flag} 0 picks a free one"
    return f"port {port} on {bind} is in use (another server, or an earlier run still going?): {hint}"


def _free(bind: str, port: int) -> bool:
    """Whether a server could listen on ``bind``:``port`` now (bound as the servers bind, with
    SO_REUSEADDR, and let go at once)."""
    try:
        family = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((bind, port))
        return True
    except OSError:
        return False


def ssh_forward_line(bind: str, ports) -> str:
    """The ssh command a user runs on their own computer to reach servers listening on this
    machine's loopback ``bind`` address at ``ports``: each port forwarded to the same number there,
    so the links printed here work there unchanged."""
    import getpass

    target = f"[{bind}]" if ":" in bind else bind
    forwards = " ".join(f"-L {p}:{target}:{p}" for p in ports)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        user = "USER"
    host = socket.getfqdn()
    if host.split(".")[0] == "localhost":  # a machine whose hosts file names only localhost
        host = socket.gethostname()
    return f"ssh -N {forwards} {user}@{host}"


def serve(server: PrecomputedServer, workers: int) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM).

    With ``workers`` > 1 this process only supervises: it forks that many
    worker processes sharing the listening socket, each answering with its own
    threads (several processes let chunk decoding use every core, which one
    Python process cannot), starts a new one whenever one dies, and stops them
    all when it is stopped.
    """
    signal.signal(signal.SIGTERM, interrupt)
    if workers <= 1:
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return
    # Nothing is open yet that a child could share by accident: stores open on first use.
    for d in server.catalog().datasets:
        d.close()
    children: set[int] = set()
    starts: list[float] = []
    try:
        while True:
            while len(children) < workers:
                now = time.monotonic()
                starts[:] = [t for t in starts if now - t < 10] + [now]
                if len(starts) > 4 * workers:  # dying as fast as they start: do not spin
                    time.sleep(1)
                children.add(_start_worker(server))
            pid, status = os.wait()
            if pid in children:
                children.discard(pid)
                how = (f"signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
                       else f"status {os.waitstatus_to_exitcode(status)}")
                log.error("worker process %d stopped (%s); starting another", pid, how)
    finally:
        ignore_signals((signal.SIGTERM,))
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        server.server_close()


def _start_worker(server: PrecomputedServer) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        # Stop with the supervisor, however it ends; Ctrl-C reaches the supervisor, which stops us.
        die_with_parent()
        if os.getppid() != parent:
            os._exit(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        server.serve_forever()
    except BaseException:
        log.exception("worker process failed")
        code = 1
    finally:
        os._exit(code)


def urls(server: PrecomputedServer) -> list[str]:
    """The precomputed:// URLs to paste into Neuroglancer."""
    host, port = server.server_address[:2]
    # typeshed allows bytes for any socket family; a TCP server's host is a str.
    assert isinstance(host, str)
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    base = f"precomputed://http://{host}:{port}"
    catalog = server.catalog()
    if catalog.single:
        return [base]
    return [f"{base}/{url_path(d.name)}" for d in catalog.datasets]


def other_viewers(server: PrecomputedServer) -> list[tuple[str, str]]:
    """(what, URL) for every served directory that other viewers open without translation: the
    zarr:// source of an OME-Zarr (or a zarr dataset's NGFF metadata) and, when its ``info``
    says what the conversion measured, a Neuroglancer link opening that source with x, y, z
    display dimensions, channel colours and contrast; and an Avivator link for each OME-TIFF."""
    out = []
    for url, dataset in zip(urls(server), server.catalog().datasets):
        http = url[len("precomputed://"):]
        version = root_version(dataset.directory)
        if version:
            what = f"{dataset.name or 'dataset'} as OME-Zarr {version}"
            out.append((what, f"zarr://{http}"))
            try:
                info = read_volume_info(dataset.directory)
            except PrecomputedTifError:
                info = None  # written by another tool: the zarr:// source alone
            if info is not None and not info.segmentation:
                out.append((f"{what} in Neuroglancer", zarr_link(f"zarr://{http}", info, dataset.name or "image")))
        try:
            names = sorted(os.listdir(dataset.directory))
        except OSError:
            continue
        for name in names:
            if name.lower().endswith((".ome.tif", ".ome.tiff")) and not name.startswith("."):
                image = f"{http}/{urllib.parse.quote(name)}"
                out.append((f"{name} in Avivator", f"{AVIVATOR}?image_url={urllib.parse.quote(image, safe=':/')}"))
    return out


def viewer_links(server: PrecomputedServer) -> list[tuple[str, str]]:
    """(name, Neuroglancer link) for every served volume whose ``info`` can be read now."""
    out = []
    for url, dataset in zip(urls(server), server.catalog().datasets):
        try:
            info = read_volume_info(dataset.directory)
        except PrecomputedTifError:
            continue  # an annotation layer, a dataset still being written, anything but a volume
        out.append((dataset.name, dataset_link(url, info, dataset.name)))
    return out


def is_loopback(bind: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(bind)).is_loopback
    except (OSError, ValueError):
        return False
