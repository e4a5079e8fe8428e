"""From a request path to a response: the translation both web servers share.

Nothing here speaks HTTP on a socket. A front door (``cors_webserver`` or
``wsgi_webserver``) hands :func:`handle` the method, the decoded path and the
request headers it cares about, and sends back the :class:`Response`.

What a path means, for a dataset served at ``/<name>/`` (or at ``/`` when the
server serves one directory):

* ``info`` -- the dataset's ``info`` JSON;
* ``<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>`` -- one chunk of the scale ``key``
  as Neuroglancer's raw encoding: little-endian, x fastest; a chunk that was
  never stored reads as zeros; a name that is not a chunk of that scale is 404;
* anything else -- a static file under the dataset's directory (annotation
  layers, a native precomputed dataset's chunk and shard files, an OME-Zarr's
  metadata and shards, an OME-TIFF), with byte ranges.

A directory without ``info`` that holds an OME-Zarr image or OME-TIFF files is
served as plain files, as a static web server would.

Only regular files inside the dataset's directory are ever read: no path
segment may be empty-dotted (``.``, ``..``, hidden names other than Zarr v2's
metadata files ``.zattrs``, ``.zgroup``, ``.zarray``), the resolved
path, symlinks followed, must stay inside the directory, and anything that is
not a regular file (a FIFO, a device) is refused before it could block a
thread. Responses never carry a traceback or a local path; a chunk whose
stored bytes are damaged is a 500 that names no file, and the file is logged
once.

An open store is shared by every request of a process and replaced when its
dataset changes. A replaced store is closed only when the last request that
was using it has finished, so no request ever reads through a closed (or
reused) file descriptor.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import mimetypes
import os
import re
import stat
import threading
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from .errors import DamagedData, PrecomputedTifError
from .ngff import ROOT_FILES
from .regular_files import open_regular
from .volume import Volume

log = logging.getLogger(__name__)

# "raw" is the name older configurations use for "precomputed" (Neuroglancer's own files).
FORMATS = ("tiff", "zarr", "blockfs", "precomputed", "raw", "ome-zarr")
# Hidden names a Zarr v2 reader asks for; every other name starting with "." stays private.
ZARR_V2_METADATA = frozenset({".zattrs", ".zgroup", ".zarray", ".zmetadata"})
ALLOWED_METHODS = "GET, HEAD, OPTIONS"
CORS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", "Content-Length, Content-Range, Content-Encoding, Accept-Ranges"),
]
STREAM_BLOCK = 1 << 20


@dataclass
class Response:
    """Status, headers (CORS included) and body; ``body`` is bytes or an iterable of bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterable[bytes] = b""
    length: int = 0

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
           416: "Range Not Satisfiable", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}
DAMAGED = "this chunk is damaged on the server; its administrator has been told which file"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def text_response(status: int, message: str | None = None, extra=()) -> Response:
    """A short plain-text answer (errors), with CORS like every other response."""
    body = f"{status} {message or REASONS.get(status, '')}\n".encode()
    headers = CORS + [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return Response(status, headers + list(extra), body, len(body))


def _bytes(body: bytes, content_type: str, extra=()) -> Response:
    headers = CORS + [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    return Response(200, headers + list(extra), body, len(body))


def _serves_plain_files(directory: str) -> bool:
    """Whether a directory is served as a static server would, with no ``info`` to translate:
    an annotation layer, or (without ``info``) an OME-Zarr group or a folder of OME-TIFFs."""
    f = open_regular(os.path.join(directory, "info"))
    if f is None:
        try:
            names = os.listdir(directory)
        except OSError:
            return False
        return bool(set(ROOT_FILES) & set(names)) or any(
            n.lower().endswith((".ome.tif", ".ome.tiff")) for n in names)
    try:
        with f:
            info = json.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(info, dict) and info.get("@type") == "neuroglancer_annotations_v1"


class _Opened:
    """An open volume and the requests using it; closed when retired and unused."""

    def __init__(self, volume: Volume | None, info_bytes: bytes):
        self.volume, self.info_bytes = volume, info_bytes
        self.users = 0
        self.retired = False

    def close(self) -> None:
        if self.volume is not None:
            self.volume.store.finish()
            self.volume = None


class Dataset:
    """One served directory. Its store is opened on first use and reused by every request;
    it is reopened when the ``info`` file changes (a conversion writes ``info`` last), and the
    old one is closed once the last request using it is done."""

    def __init__(self, name: str, directory: str, format: str | None = None, gzip: bool = False):
        if format is not None and format not in FORMATS:
            raise PrecomputedTifError(f"source {name!r}: unknown format {format!r}; choose one of {', '.join(FORMATS)}")
        self.name = name
        self.directory = os.path.abspath(directory)
        self.root = os.path.realpath(self.directory)
        self.format = format
        self.gzip = gzip
        self._lock = threading.Lock()
        self._opened: _Opened | None = None
        self._stamp = None
        self._logged_damage: set[str] = set()
        self._plain_cache: tuple | None = None

    def __repr__(self):
        return f"Dataset({self.name!r}, {self.directory!r}, {self.format!r})"

    def same_as(self, other: "Dataset") -> bool:
        return (self.name, self.directory, self.format, self.gzip) == (other.name, other.directory, other.format,
                                                                       other.gzip)

    @property
    def serves_raw(self) -> bool:
        """Whether the files are already what Neuroglancer asks for, to be sent as they are."""
        return self.format in ("raw", "precomputed")

    def _info_stamp(self):
        try:
            st = os.stat(os.path.join(self.directory, "info"))
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise PrecomputedTifError(f"{self.directory}/info is not a regular file")
        return st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns

    def _acquire(self) -> _Opened:
        stamp = self._info_stamp()
        with self._lock:
            if self._opened is None or stamp != self._stamp:
                self._retire()
                if self.format is None and self._plain_files():
                    opened = _Opened(None, b"")
                else:
                    try:
                        volume = Volume(self.directory, self.format)
                    except RecursionError:
                        raise PrecomputedTifError(f"{self.directory}/info is nested too deeply to be an "
                                                  "info file") from None
                    opened = _Opened(volume, json.dumps(volume.info).encode())
                self._opened, self._stamp = opened, stamp
            self._opened.users += 1
            return self._opened

    def _plain_files(self) -> bool:
        """:func:`_serves_plain_files`, remembered until the directory changes (called with the lock
        held): a directory of many planes and no ``info`` is not listed at every request."""
        try:
            st = os.stat(self.directory)
            key = (st.st_mtime_ns, st.st_ino, self._info_stamp())
        except OSError:
            key = None
        if key is None or self._plain_cache is None or self._plain_cache[0] != key:
            self._plain_cache = (key, _serves_plain_files(self.directory))
        return self._plain_cache[1]

    def _release(self, opened: _Opened) -> None:
        with self._lock:
            opened.users -= 1
            if opened.retired and opened.users == 0:
                opened.close()

    def _retire(self) -> None:
        """Called with the lock held: the current store stops being handed out."""
        opened, self._opened, self._stamp = self._opened, None, None
        if opened is not None:
            opened.retired = True
            if opened.users == 0:
                opened.close()

    @contextmanager
    def lease(self) -> Iterator[tuple[Volume | None, bytes]]:
        """The open volume and its ``info`` as sent, held open until the block ends; (None, b"")
        for a directory served as plain files (an annotation layer); a user error if the
        directory holds neither."""
        opened = self._acquire()
        try:
            yield opened.volume, opened.info_bytes
        finally:
            self._release(opened)

    def check(self) -> None:
        """Open the dataset once: a user error now rather than 404s later."""
        with self.lease():
            pass

    def close(self) -> None:
        """Close the store now, or when the last request using it ends."""
        with self._lock:
            self._retire()

    def damaged(self, exc: Exception) -> None:
        """Log a damaged file once per file (the message names it), not once per request."""
        message = str(exc)
        with self._lock:
            if message in self._logged_damage:
                return
            if len(self._logged_damage) < 10000:
                self._logged_damage.add(message)
        log.error("source %s: %s", self.name or self.directory, message)


@dataclass
class Catalog:
    """The datasets a server serves. With ``single`` one dataset is served at ``/``."""

    datasets: list[Dataset] = field(default_factory=list)
    single: bool = False

    def route(self, segments: list[str]) -> tuple[Dataset | None, list[str]]:
        """The dataset whose name is the longest match of leading path segments, and the rest."""
        if self.single:
            return self.datasets[0], segments
        best, best_len = None, 0
        for d in self.datasets:
            parts = d.name.split("/")
            if len(parts) > best_len and segments[: len(parts)] == parts:
                best, best_len = d, len(parts)
        return best, segments[best_len:]


def _safe_segments(path: str) -> list[str] | None:
    """Path segments, or None when any segment could lead outside or to a hidden file."""
    segments = [s for s in path.split("/") if s != ""]
    for s in segments:
        if (s.startswith(".") and s not in ZARR_V2_METADATA) or "\\" in s or "\0" in s:
            return None
    return segments


def _header_list(requested: str | None) -> str:
    """The header names a preflight asked for, if they are a clean comma-separated list of
    tokens; otherwise (or if none) the ones Neuroglancer sends. Nothing else is echoed."""
    names = [n.strip() for n in (requested or "").split(",")]
    if requested and len(requested) <= 1000 and all(_TOKEN.match(n) for n in names):
        return ", ".join(names)
    return "Range, Accept-Encoding, Content-Type"


def handle(catalog: Catalog, method: str, path: str, headers: dict[str, str] | None = None) -> Response:
    """Answer one request. ``path`` is already percent-decoded, without the query string;
    ``headers`` has lower-case names (``range``, ``accept-encoding``)."""
    headers = headers or {}
    if method == "OPTIONS":
        return Response(204, CORS + [
            ("Access-Control-Allow-Methods", ALLOWED_METHODS),
            ("Access-Control-Allow-Headers", _header_list(headers.get("access-control-request-headers"))),
            ("Access-Control-Max-Age", "86400"),
            ("Allow", ALLOWED_METHODS),
            ("Content-Length", "0"),
        ])
    if method not in ("GET", "HEAD"):
        return text_response(405, extra=[("Allow", ALLOWED_METHODS)])
    try:
        response = _get(catalog, path, headers)
    except Exception:
        log.exception("error answering %s %s", method, path)
        response = text_response(500)
    if method == "HEAD":
        response.body = b""
    return response


def _get(catalog: Catalog, path: str, headers: dict[str, str]) -> Response:
    segments = _safe_segments(path)
    if segments is None:
        return text_response(404)
    if not segments and not catalog.single:
        return _index(catalog)
    dataset, rest = catalog.route(segments)
    if dataset is None:
        return text_response(404)
    if not rest:
        return _dataset_index(dataset)
    if dataset.serves_raw:
        return _static(dataset, rest, headers)
    try:
        with dataset.lease() as (volume, info_bytes):
            if volume is None or volume.format == "precomputed":
                return _static(dataset, rest, headers)
            if rest == ["info"]:
                return _bytes(info_bytes, "application/json")
            # A level's own Zarr array metadata is a file; every other name there is a chunk's.
            if len(rest) == 2 and rest[0] in volume.keys and not _is_zarr_metadata(rest[1]):
                return _chunk(dataset, volume, rest[0], rest[1], headers)
    except DamagedData as exc:
        dataset.damaged(exc)
        return text_response(500, DAMAGED)
    except PrecomputedTifError as exc:
        log.warning("source %s: %s", dataset.name, exc)
        return text_response(404)
    return _static(dataset, rest, headers)


def _is_zarr_metadata(name: str) -> bool:
    return name in ZARR_V2_METADATA or name == "zarr.json"


def _chunk(dataset: Dataset, volume: Volume, key: str, name: str, headers) -> Response:
    local = volume.grids[key].parse(name)
    if local is None:
        return text_response(404)
    array = volume.store.read_chunk(key, local)
    body = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    extra = []
    if dataset.gzip:
        extra.append(("Vary", "Accept-Encoding"))
        if "gzip" in headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            extra.append(("Content-Encoding", "gzip"))
    return _bytes(body, "application/octet-stream", extra)


def _index(catalog: Catalog) -> Response:
    items = "\n".join(
        f'<li><a href="{html.escape(url_path(d.name))}/info">{html.escape(d.name)}</a></li>'
        for d in catalog.datasets
    )
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>precomputed sources</title></head>"
            f"<body><h1>precomputed sources</h1>\n<ul>\n{items}\n</ul>\n"
            "<p>Open one in Neuroglancer as <code>precomputed://</code> followed by its address, "
            "without <code>/info</code>.</p></body></html>\n")
    return _bytes(page.encode(), "text/html; charset=utf-8")


def url_path(name: str) -> str:
    """A source name as it goes into a URL path: every segment percent-encoded."""
    return urllib.parse.quote(name, safe="/")


def _dataset_index(dataset: Dataset) -> Response:
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(dataset.name)}</title>"
            f"</head><body><p>A Neuroglancer precomputed source: <a href=\"info\">info</a>. Open it in "
            "Neuroglancer as <code>precomputed://</code> followed by this page's address.</p></body></html>\n")
    return _bytes(page.encode(), "text/html; charset=utf-8")


def _static(dataset: Dataset, rest: list[str], headers) -> Response:
    path = os.path.realpath(os.path.join(dataset.root, *rest))
    if not path.startswith(dataset.root + os.sep):
        return text_response(404)
    f = open_regular(path)
    if f is None:
        return text_response(404)
    size = os.fstat(f.fileno()).st_size
    is_json = rest[-1] == "info" or rest[-1].endswith(".json") or rest[-1] in ZARR_V2_METADATA
    ctype = "application/json" if is_json else (
        mimetypes.guess_type(rest[-1])[0] or "application/octet-stream")
    base = CORS + [("Content-Type", ctype), ("Accept-Ranges", "bytes")]
    wanted = _parse_range(headers.get("range"), size)
    if wanted == "bad":
        f.close()
        return text_response(416, extra=[("Content-Range", f"bytes */{size}")])
    if wanted is None:
        return Response(200, base + [("Content-Length", str(size))], _read_file(f, 0, size), size)
    start, end = wanted
    return Response(206, base + [("Content-Length", str(end - start)),
                                 ("Content-Range", f"bytes {start}-{end - 1}/{size}")],
                    _read_file(f, start, end), end - start)


def _parse_range(value: str | None, size: int):
    """(start, end) half-open for one satisfiable ``bytes=`` range, None to send everything,
    ``"bad"`` when unsatisfiable. Several ranges are answered with the whole file."""
    if not value:
        return None
    value = value.strip()
    if not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[len("bytes="):].partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return "bad"
            return (max(0, size - n), size) if size else "bad"
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start < 0 or start >= size or end <= start:
        return "bad"
    return start, min(end, size)


def _read_file(f, start: int, end: int) -> Iterator[bytes]:
    """The bytes [start, end) of an open file, a block at a time; closes the file."""
    try:
        f.seek(start)
        left = end - start
        while left > 0:
            data = f.read(min(STREAM_BLOCK, left))
            if not data:
                break
            left -= len(data)
            yield data
    finally:
        f.close()


def load_config(path: str) -> list[Dataset]:
    """Datasets from a sources.json: a list of ``{"name", "directory", "format", "gzip"?}``.

    ``format`` may be left out (detected from the files). Raises a user error
    naming what is wrong.
    """
    if not os.path.exists(path):
        raise PrecomputedTifError(f"config file {path} does not exist")
    f = open_regular(path)
    if f is None:
        raise PrecomputedTifError(f"config file {path} is not a regular file")
    try:
        with f:
            entries = json.loads(f.read())
    except (OSError, ValueError) as exc:
        raise PrecomputedTifError(f"config file {path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise PrecomputedTifError(f"config file {path} is nested too deeply to be a list of sources") from None
    if not isinstance(entries, list):
        raise PrecomputedTifError(f"config file {path} must hold a JSON list of sources")
    datasets, names = [], set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not isinstance(e.get("directory"), str):
            raise PrecomputedTifError(f"config file {path}: source {i + 1} needs a \"name\" and a \"directory\"")
        name = e["name"].strip("/")
        if not name or _safe_segments(name) != name.split("/"):
            raise PrecomputedTifError(f"config file {path}: source name {e['name']!r} is not usable in a URL")
        if name in names:
            raise PrecomputedTifError(f"config file {path}: two sources are named {name!r}")
        names.add(name)
        datasets.append(Dataset(name, e["directory"], e.get("format"), bool(e.get("gzip", False))))
    return datasets


class ConfigCatalog:
    """A catalog read from a sources.json, re-read when the file changes.

    A broken edit is logged and the last good configuration keeps serving.
    Datasets whose entry did not change keep their open stores.
    """

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        self._stamp = None
        self._catalog: Catalog | None = None
        self.current()

    def current(self) -> Catalog:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp and self._catalog is not None:
            return self._catalog
        with self._lock:
            if stamp != self._stamp or self._catalog is None:
                try:
                    fresh = load_config(self.path)
                except PrecomputedTifError as exc:
                    if self._catalog is None:
                        raise
                    log.error("%s; still serving the previous configuration", exc)
                    self._stamp = stamp
                    return self._catalog
                old = {d.name: d for d in (self._catalog.datasets if self._catalog else [])}
                merged = [old[d.name] if d.name in old and old[d.name].same_as(d) else d for d in fresh]
                kept = {id(d) for d in merged}
                for d in old.values():
                    if id(d) not in kept:
                        d.close()  # its files are closed once the requests in flight are done
                self._catalog = Catalog(merged)
                self._stamp = stamp
                log.info("serving %d sources from %s", len(merged), self.path)
            return self._catalog
