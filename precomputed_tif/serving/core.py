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

Files, chunks and ``info`` carry validators (``ETag``, ``Last-Modified``) taken
from what their bytes come from, never from the bytes themselves (nothing is
read or hashed to answer a revalidation): a file's inode, size and times; a
translated chunk's stored files or blockfs entries, the dataset's ``info`` and
the content coding. Conditional requests are answered as RFC 9110 says
(``If-Match``, ``If-Unmodified-Since``: 412; ``If-None-Match``,
``If-Modified-Since``: 304 without reading the data; ``If-Range``: the whole
body unless the validator is current), and ``Cache-Control: no-cache`` makes a
browser ask again before reusing a cached chunk, so a rewritten dataset is
seen at once.

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
import hashlib
import html
import json
import logging
import mimetypes
import os
import re
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate, mktime_tz, parsedate_tz

import numpy as np

from .. import formats
from ..errors import DamagedData, PrecomputedTifError
from ..formats.volume import Volume
from ..formats.zarr.ngff import ROOT_FILES
from ..storage.regular_files import file_version, open_regular

log = logging.getLogger(__name__)

# Hidden names a Zarr v2 reader asks for; every other name starting with "." stays private.
ZARR_V2_METADATA = frozenset({".zattrs", ".zgroup", ".zarray", ".zmetadata"})
ALLOWED_METHODS = "GET, HEAD, OPTIONS"
CORS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", "Content-Length, Content-Range, Content-Encoding, Accept-Ranges, ETag, "
                                      "Last-Modified"),
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


REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 412: "Precondition Failed",
           413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable"}
DAMAGED = "this chunk is damaged on the server; its administrator has been told which file"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def text_response(status: int, message: str | None = None, extra=()) -> Response:
    """A short plain-text answer (errors), with CORS like every other response."""
    body = f"{status} {message or REASONS.get(status, '')}\n".encode()
    headers = CORS + [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return Response(status, headers + list(extra), body, len(body))


@dataclass(frozen=True)
class Validators:
    """What tells a client whether its copy of a response is current: a strong entity tag
    (quoted, as it goes in ``ETag``) and the last modification time in ns since the epoch."""

    etag: str
    mtime_ns: int

    @property
    def last_modified(self) -> int | None:
        """``Last-Modified`` in whole seconds since the epoch, or None while a date would prove
        nothing: until a second has passed since the modification (another one within that
        second would have the same date; RFC 9110 8.8.2.2), or when the time is ahead of this
        clock. Dates are then neither sent nor trusted; the entity tag still is."""
        if self.mtime_ns > time.time_ns() - 1_000_000_000:
            return None
        return self.mtime_ns // 1_000_000_000

    def headers(self) -> list[tuple[str, str]]:
        # no-cache: a browser may keep the response but asks (cheaply, a 304) before using it,
        # instead of trusting it for a tenth of its age, as it would with Last-Modified alone.
        modified = self.last_modified
        dated = [] if modified is None else [("Last-Modified", formatdate(modified, usegmt=True))]
        return [("ETag", self.etag)] + dated + [("Cache-Control", "no-cache")]


def _tag(*parts) -> str:
    """A strong entity tag naming ``parts`` (ints, strings, None and tuples of them): the same
    in every process and across restarts, different whenever a part differs."""
    return '"' + hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest() + '"'


def file_validators(st: os.stat_result) -> Validators:
    """A file's validators from its status, as nginx makes them (``"<mtime>-<size>"`` in hex) and
    with what nginx leaves out: the inode and the times in ns, so a file replaced within the same
    second or with its old modification time set back still gets a new tag."""
    tag = _tag(*file_version(st))[1:9]
    return Validators(f'"{st.st_mtime_ns // 1_000_000_000:x}-{st.st_size:x}-{tag}"', st.st_mtime_ns)


_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def _entity_tags(value: str) -> list[tuple[bool, str]] | None:
    """(weak, opaque tag) of each entity tag in a comma-separated list; None when malformed."""
    tags, pos = [], 0
    value = value.strip()
    while pos < len(value):
        m = _ENTITY_TAG.match(value, pos)
        if m is None:
            return None
        tags.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    return tags


def _matches(value: str, etag: str, weak: bool) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` list names ``etag`` (a strong tag), by RFC
    9110's weak comparison (``weak``) or strong comparison; ``*`` matches any current file."""
    if value.strip() == "*":
        return True
    tags = _entity_tags(value)
    if not tags:  # malformed or empty: names nothing
        return False
    return any(t == etag and (weak or not w) for w, t in tags)


def _http_date(value: str | None) -> int | None:
    """An HTTP date as seconds since the epoch; None when absent, not a date, or several."""
    if not value or len(value) > 100 or value.count(",") > 1:
        return None
    parsed = parsedate_tz(value.strip())
    if parsed is None:
        return None
    try:
        return mktime_tz(parsed)
    except (OverflowError, ValueError):
        return None


def _preconditions(headers: dict[str, str], v: Validators, extra=()) -> Response | None:
    """The answer to a conditional GET or HEAD when its preconditions make it one, in RFC 9110's
    order (13.2.2): 412 when ``If-Match`` (strong comparison) or, without it,
    ``If-Unmodified-Since`` fails; 304 when ``If-None-Match`` (weak comparison) matches or,
    without it, nothing changed since ``If-Modified-Since``. None: answer as usual. A 304 carries
    the validators, CORS and ``extra`` (``Vary``), and no body."""
    modified = v.last_modified  # None: no date can be trusted, a date condition is not met
    if_match = headers.get("if-match")
    if if_match:
        if not _matches(if_match, v.etag, weak=False):
            return text_response(412)
    else:
        since = _http_date(headers.get("if-unmodified-since"))
        if since is not None and (modified is None or modified > since):
            return text_response(412)
    if_none_match = headers.get("if-none-match")
    if if_none_match:
        not_modified = _matches(if_none_match, v.etag, weak=True)
    else:
        since = _http_date(headers.get("if-modified-since"))
        not_modified = since is not None and modified is not None and modified <= since
    if not_modified:
        return Response(304, CORS + v.headers() + list(extra))
    return None


def _range_applies(headers: dict[str, str], v: Validators) -> bool:
    """Whether a ``Range`` may be answered with part of the body: yes without ``If-Range``;
    with it, only if it names the current representation -- the ETag by strong comparison, or
    exactly the ``Last-Modified`` date (sent only once no other version can share it, see
    :attr:`Validators.last_modified`). Otherwise the whole body."""
    value = (headers.get("if-range") or "").strip()
    if not value:
        return True
    if value.startswith(('"', "W/")):
        tags = _entity_tags(value)
        return tags is not None and len(tags) == 1 and tags[0] == (False, v.etag)
    date = _http_date(value)
    return date is not None and date == v.last_modified


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

    def __init__(self, volume: Volume | None, info_bytes: bytes, stamp):
        self.volume, self.info_bytes = volume, info_bytes
        # The info file's version when it was opened (its date is part of the chunks' dates).
        self.stamp = stamp
        self.info_validators = Validators(_tag("info", hashlib.blake2b(info_bytes).hexdigest()),
                                          stamp[0] if stamp else 0)
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
        # The names a configuration may give (older ones call Neuroglancer's own files "raw").
        if format is not None and format not in formats.served_names():
            raise PrecomputedTifError(f"source {name!r}: unknown format {format!r}; choose one of "
                                      f"{', '.join(formats.served_names())}")
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

    def same_as(self, other: Dataset) -> bool:
        return (self.name, self.directory, self.format, self.gzip) == (other.name, other.directory, other.format,
                                                                       other.gzip)

    @property
    def serves_raw(self) -> bool:
        """Whether the files are already what Neuroglancer asks for, to be sent as they are."""
        return self.format is not None and formats.get(self.format).precomputed_native

    def _info_stamp(self):
        try:
            st = os.stat(os.path.join(self.directory, "info"))
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise PrecomputedTifError(f"{self.directory}/info is not a regular file")
        ino, size, mtime_ns, ctime_ns = file_version(st)
        return mtime_ns, ino, size, ctime_ns  # the modification time first: the date validators use

    def _acquire(self) -> _Opened:
        stamp = self._info_stamp()
        with self._lock:
            if self._opened is None or stamp != self._stamp:
                self._retire()
                if self.format is None and self._plain_files():
                    opened = _Opened(None, b"", stamp)
                else:
                    try:
                        volume = Volume(self.directory, self.format)
                    except RecursionError:
                        raise PrecomputedTifError(f"{self.directory}/info is nested too deeply to be an "
                                                  "info file") from None
                    opened = _Opened(volume, json.dumps(volume.info).encode(), stamp)
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
    def lease(self) -> Iterator[_Opened]:
        """The open volume (``.volume``), its ``info`` as sent (``.info_bytes``, with
        ``.info_validators``) and the version of the ``info`` file it was opened from
        (``.stamp``), held open until the block ends; ``.volume`` is None for a directory served
        as plain files (an annotation layer); a user error if the directory holds neither."""
        opened = self._acquire()
        try:
            yield opened
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


# The request headers a front door hands to handle(), by lower-case name.
REQUEST_HEADERS = ("range", "accept-encoding", "access-control-request-headers", "if-none-match",
                   "if-modified-since", "if-match", "if-unmodified-since", "if-range")


def _header_list(requested: str | None) -> str:
    """The header names a preflight asked for, if they are a clean comma-separated list of
    tokens; otherwise (or if none) the ones Neuroglancer sends. Nothing else is echoed."""
    names = [n.strip() for n in (requested or "").split(",")]
    if requested and len(requested) <= 1000 and all(_TOKEN.match(n) for n in names):
        return ", ".join(names)
    return "Range, Accept-Encoding, Content-Type"


def handle(catalog: Catalog, method: str, path: str, headers: dict[str, str] | None = None) -> Response:
    """Answer one request. ``path`` is already percent-decoded, without the query string;
    ``headers`` has lower-case names: ``range``, ``accept-encoding``,
    ``access-control-request-headers`` and the conditional ones (``if-none-match``,
    ``if-modified-since``, ``if-match``, ``if-unmodified-since``, ``if-range``), a header sent
    several times as one comma-separated value."""
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
        with dataset.lease() as opened:
            volume = opened.volume
            if volume is None or formats.get(volume.format).precomputed_native:
                return _static(dataset, rest, headers)
            if rest == ["info"]:
                v = opened.info_validators
                return _preconditions(headers, v) or _bytes(opened.info_bytes, "application/json", v.headers())
            # A level's own Zarr array metadata is a file; every other name there is a chunk's.
            if len(rest) == 2 and rest[0] in volume.keys and not _is_zarr_metadata(rest[1]):
                return _chunk(dataset, opened, volume, rest[0], rest[1], headers)
    except DamagedData as exc:
        dataset.damaged(exc)
        return text_response(500, DAMAGED)
    except PrecomputedTifError as exc:
        log.warning("source %s: %s", dataset.name, exc)
        return text_response(404)
    return _static(dataset, rest, headers)


def _is_zarr_metadata(name: str) -> bool:
    return name in ZARR_V2_METADATA or name == "zarr.json"


def _chunk(dataset: Dataset, opened: _Opened, volume: Volume, key: str, name: str, headers) -> Response:
    """One chunk of ``volume`` (``opened``'s volume) as ``dataset`` serves it."""
    local = volume.grids[key].parse(name)
    if local is None:
        return text_response(404)
    zipped = dataset.gzip and "gzip" in headers.get("accept-encoding", "")
    vary = [("Vary", "Accept-Encoding")] if dataset.gzip else []
    # Taken before the chunk is read (see ChunkStore.chunk_version). The info file's content
    # stands for everything else the bytes depend on (scale, data type, store settings): its
    # content, not its file's version, so rewriting the same info (a rerun of the finished
    # conversion) does not make every client fetch every chunk again.
    version = volume.store.chunk_version(key, local)
    extra = list(vary)
    if version is not None:
        v = Validators(_tag("chunk", opened.info_validators.etag, key, name, version[0],
                            "gzip" if zipped else "identity"),
                       max(version[1], opened.stamp[0] if opened.stamp else 0))
        answered = _preconditions(headers, v, vary)
        if answered is not None:
            return answered
        extra += v.headers()
    array = volume.store.read_chunk(key, local)
    body = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    if zipped:
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
    # The status of the open file: its validators describe exactly the bytes read from it.
    st = os.fstat(f.fileno())
    size = st.st_size
    v = file_validators(st)
    answered = _preconditions(headers, v)
    if answered is not None:
        f.close()
        return answered
    is_json = rest[-1] == "info" or rest[-1].endswith(".json") or rest[-1] in ZARR_V2_METADATA
    ctype = "application/json" if is_json else (
        mimetypes.guess_type(rest[-1])[0] or "application/octet-stream")
    base = CORS + [("Content-Type", ctype), ("Accept-Ranges", "bytes")] + v.headers()
    wanted = _parse_range(headers.get("range"), size) if _range_applies(headers, v) else None
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
        self._stamp: tuple[int, int, int] | None = None  # the file's (mtime_ns, inode, size) when read
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
