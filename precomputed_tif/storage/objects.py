"""Storage in an object store: ``s3://BUCKET/PREFIX`` (AWS S3 and S3-compatible servers) and
``gs://BUCKET/PREFIX`` (Google Cloud Storage), through obstore.

What a bucket gives and a local directory does not, and the other way round:

- A put is one request; the object appears whole or not at all, so there is nothing to flush
  (:meth:`ObjectStorage.flush` does nothing, ``durable`` changes nothing).
- A stream (a shard, an OME-TIFF) is a multipart upload in parts of :data:`PART_SIZE`: at most
  a few parts are held in memory, the object appears when the upload completes, and an
  aborted stream aborts the upload (the parts are deleted).
- There is no append and no rename: formats that need them are refused (``can_append``).
- Nothing compresses on the way to a browser, so an object that is read whole and compresses
  well is stored gzipped with ``Content-Encoding: gzip`` (``put(..., compressible=True)``;
  plain when gzip would not make it smaller), and :meth:`ObjectStorage.get` removes that
  encoding again. Objects read by range (shards,
  OME-TIFF) are never given a Content-Encoding.
- Every object gets a ``Content-Type`` (:func:`~.base.media_type`) and, if asked, a
  ``Cache-Control``.

Configuration is the ecosystem's, read in each process from its own environment (a worker on
another machine uses its own credentials; nothing secret is pickled or written anywhere):

- S3: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, or a profile of
  ``~/.aws/credentials`` (``AWS_PROFILE``, ``AWS_SHARED_CREDENTIALS_FILE``, ``AWS_CONFIG_FILE``);
  ``AWS_REGION``/``AWS_DEFAULT_REGION``; ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for
  an S3-compatible server, ``http://`` allowed; ``AWS_UNSIGNED_PAYLOAD=true`` to skip hashing payloads for signatures
  over ``http://`` (never done over ``https://``); ``AWS_REQUEST_PAYER=requester`` for
  requester-pays buckets. With no credentials at all, requests are anonymous (public buckets).
- GCS: ``GOOGLE_APPLICATION_CREDENTIALS`` or the application default credentials of
  ``gcloud auth application-default login``; ``STORAGE_EMULATOR_HOST`` for an emulator.
- ``PRECOMPUTED_TIF_STORAGE_TIMEOUT``: seconds one request may take (default 60); requests that
  fail on throttling, a 5xx or a dropped connection are retried with backoff for up to four
  times that.
"""

from __future__ import annotations

import configparser
import contextlib
import datetime
import gzip
import os
import re
import threading
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..errors import PrecomputedTifError, param
from .base import ObjectChanged, ObjectReader, ObjectStat, Storage, StreamWriter, check_key, check_prefix, media_type

T = TypeVar("T")

# Parts of a multipart upload: S3 wants at least 5 MiB (but the last); larger parts mean fewer
# requests, more memory (parts in flight are held).
PART_SIZE = 8 << 20
PARTS_IN_FLIGHT = 4
# Seconds an aborted stream waits for its multipart upload to be aborted on the server.
ABORT_WAIT = 5.0

SCHEMES = {"s3": "S3", "gs": "Google Cloud Storage"}

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


class StorageError(PrecomputedTifError):
    """An object store refused or failed a request: one line naming the object and the reason."""


class AccessDenied(StorageError):
    """The object store refused the request for want of rights (or of credentials)."""


def parse_url(url: str, what: str = "the location") -> tuple[str, str, str]:
    """(scheme, bucket, prefix) of ``s3://BUCKET/PREFIX`` or ``gs://BUCKET/PREFIX``: the prefix
    without leading or trailing ``/`` (``""`` for the whole bucket). A URL without a valid
    bucket name, or whose prefix is no valid key, is a user error naming ``what``."""
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if scheme not in SCHEMES:
        raise PrecomputedTifError(f"{what} {url}: not an s3:// or gs:// URL")
    bucket = parsed.netloc
    if not _BUCKET.match(bucket):
        raise PrecomputedTifError(f"{what} {url}: {bucket!r} is not a bucket name (3 to 222 lower-case letters, "
                                  f"digits, '.', '-' or '_'); write {scheme}://BUCKET/PREFIX")
    if parsed.query or parsed.fragment:
        raise PrecomputedTifError(f"{what} {url}: a bucket URL has no '?' or '#' part")
    prefix = parsed.path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except PrecomputedTifError:
            raise PrecomputedTifError(f"{what} {url}: the path after the bucket has empty, '.' or '..' parts") \
                from None
    return scheme, bucket, prefix


def check_cache_control(value: str | None) -> str | None:
    """``value`` if it can be an object's ``Cache-Control`` header (printable ASCII on one line,
    e.g. ``public, max-age=3600``), else a user error naming ``cache_control``; None stays None."""
    if value is None:
        return None
    if not value.strip() or any(not " " <= c <= "~" for c in value):
        raise PrecomputedTifError(f"{param('cache_control')} {value!r}: give a Cache-Control header value on one "
                                  "line of plain ASCII, e.g. 'public, max-age=3600'")
    return value.strip()


def _timeout() -> float:
    text = os.environ.get("PRECOMPUTED_TIF_STORAGE_TIMEOUT", "60")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise PrecomputedTifError(f"PRECOMPUTED_TIF_STORAGE_TIMEOUT={text!r}: give the seconds a request may take, "
                                  "e.g. 60")
    return value


def _aws_profile() -> dict[str, str]:
    """What the shared AWS files say for the profile in use: keys, token, region (missing
    files or profile: nothing). SSO and credential processes are not read."""
    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"
    found: dict[str, str] = {}
    home = os.path.expanduser("~")
    files = ((os.environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config"),
              profile if profile == "default" else f"profile {profile}"),
             (os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials"), profile))
    for path, section in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        if parser.has_section(section):
            found.update({k: v.strip() for k, v in parser.items(section)})
    if profile != "default" and not found and "AWS_PROFILE" in os.environ:
        raise PrecomputedTifError(f"AWS_PROFILE={profile}: no such profile in ~/.aws/credentials or ~/.aws/config")
    return found


def s3_endpoint() -> str | None:
    """The S3-compatible server's URL from the environment, or None for AWS itself."""
    return (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "").rstrip("/") or None


def gcs_endpoint() -> str | None:
    """The GCS emulator's URL from ``STORAGE_EMULATOR_HOST`` (``http://`` added to a bare
    host:port), or None for Google Cloud Storage itself."""
    host = os.environ.get("STORAGE_EMULATOR_HOST", "").rstrip("/")
    if not host:
        return None
    return host if "://" in host else "http://" + host


def s3_region(profile: dict[str, str] | None = None) -> str:
    """The AWS region requests go to: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's
    ``region``, else us-east-1."""
    if profile is None:
        profile = _aws_profile()
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or profile.get("region") \
        or "us-east-1"


def _s3_config() -> tuple[Any, bool]:
    """(obstore S3 configuration, whether requests are signed) from the environment."""
    config: dict[str, Any] = {}
    profile = _aws_profile()
    keys = {"access_key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
            "secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
            "session_token": os.environ.get("AWS_SESSION_TOKEN")}
    if not (keys["access_key_id"] and keys["secret_access_key"]):
        keys = {"access_key_id": profile.get("aws_access_key_id"),
                "secret_access_key": profile.get("aws_secret_access_key"),
                "session_token": profile.get("aws_session_token")}
    config["region"] = s3_region(profile)
    endpoint = s3_endpoint()
    # Over TLS the payload's integrity is TLS's: SHA-256 of every byte (a tenth of a conversion's
    # CPU) is skipped, as the AWS SDKs skip it over HTTPS. An http:// endpoint's payloads are signed.
    # AWS_UNSIGNED_PAYLOAD=true (obstore's own setting) skips it on a trusted http:// network too.
    unsigned = os.environ.get("AWS_UNSIGNED_PAYLOAD", "").lower()
    config["unsigned_payload"] = unsigned in ("true", "1") if unsigned else \
        endpoint is None or endpoint.startswith("https://")
    signed = bool(keys["access_key_id"] and keys["secret_access_key"])
    # Credentials a cloud provides to its machines and containers: obstore asks for them itself.
    provided = any(os.environ.get(name) for name in (
        "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"))
    if signed:
        config.update({k: v for k, v in keys.items() if v})
    elif not provided:
        config["skip_signature"] = True
    if endpoint:
        config["endpoint"] = endpoint
        config["virtual_hosted_style_request"] = False
    if os.environ.get("AWS_REQUEST_PAYER", "").lower() in ("requester", "true", "1"):
        config["request_payer"] = True
    return config, signed or provided


def _emulator_token() -> Any:
    """The token given to a GCS emulator, which checks none."""
    return {"token": "emulator", "expires_at": None}


def object_at(url: str, what: str = "the location") -> tuple[ObjectStorage, str]:
    """(the storage of the whole bucket, the object's key) for an object's URL
    ``s3://BUCKET/KEY`` or ``gs://BUCKET/KEY``. The storage is made once per bucket in each
    process (one client, whose connections later reads reuse); a URL naming no object (a bare
    bucket) is a user error naming ``what``."""
    scheme, bucket, key = parse_url(url, what)
    if not key:
        raise PrecomputedTifError(f"{what} {url}: names a bucket, not an object in it")
    storage = _BUCKETS.get((scheme, bucket))
    if storage is None:
        storage = _BUCKETS[(scheme, bucket)] = ObjectStorage(f"{scheme}://{bucket}", what=what)
    return storage, key


class ObjectStorage(Storage):
    """The objects under ``PREFIX`` in a bucket (see the module's docstring). Opens no
    connection until the first request; pickles as its URL and options only."""

    can_append = False
    local_root = None
    readers_keep_versions = False
    lists_sorted = False

    def __init__(self, url: str, *, cache_control: str | None = None, what: str = "the location"):
        self.scheme, self.bucket, self.prefix = parse_url(url, what)
        self.cache_control = check_cache_control(cache_control)
        self._store: Any = None
        self._signed: bool | None = None
        # The bucket refused to list (reads): S3 then answers 403, not 404, for a missing object.
        self._unlisted = False

    def __getstate__(self):
        # Each process builds its own client from its own environment.
        return {**self.__dict__, "_store": None, "_signed": None}

    def __repr__(self) -> str:
        return f"ObjectStorage({self.location()!r})"

    # Where

    def location(self, key: str = "") -> str:
        return f"{self.scheme}://{self.bucket}/" + "/".join(p for p in (self.prefix, key and check_key(key)) if p)

    def endpoint(self) -> str | None:
        """The S3-compatible server or GCS emulator this storage talks to, or None for the
        provider's own service."""
        return s3_endpoint() if self.scheme == "s3" else gcs_endpoint()

    def public_url(self, key: str = "") -> str:
        """The URL a browser (Neuroglancer) reads ``key`` (or the root) from: the provider's
        scheme (``s3://``, ``gs://``, which Neuroglancer knows) for the provider's own service,
        an ``http(s)://`` path-style URL for an S3-compatible server or emulator."""
        endpoint = self.endpoint()
        path = "/".join(p for p in (self.prefix, key and check_key(key)) if p)
        if endpoint is None:
            return f"{self.scheme}://{self.bucket}/{path}".rstrip("/")
        return f"{endpoint}/{self.bucket}/{urllib.parse.quote(path)}".rstrip("/")

    def http_url(self, key: str = "") -> str:
        """The ``http(s)://`` URL an anonymous HTTP client (a browser, ``curl``) reads ``key`` from:
        ``https://BUCKET.s3.REGION.amazonaws.com/KEY`` on AWS (path-style,
        ``https://s3.REGION.amazonaws.com/BUCKET/KEY``, for a bucket name with dots, which the
        provider's certificate does not cover), ``https://storage.googleapis.com/BUCKET/KEY`` on
        Google Cloud Storage, ``ENDPOINT/BUCKET/KEY`` for an S3-compatible server or emulator."""
        path = urllib.parse.quote("/".join(p for p in (self.prefix, key and check_key(key)) if p))
        endpoint = self.endpoint()
        if endpoint is not None:
            return f"{endpoint}/{self.bucket}/{path}"
        if self.scheme == "gs":
            return f"https://storage.googleapis.com/{self.bucket}/{path}"
        region = s3_region()
        if "." in self.bucket:
            return f"https://s3.{region}.amazonaws.com/{self.bucket}/{path}"
        return f"https://{self.bucket}.s3.{region}.amazonaws.com/{path}"

    def _path(self, key: str) -> str:
        return "/".join(p for p in (self.prefix, check_key(key)) if p)

    # The client

    @property
    def store(self) -> Any:
        """The obstore store, built on first use in this process."""
        if self._store is None:
            self._store = self._make_store(_timeout())
        return self._store

    def _make_store(self, timeout: float, retries: int = 10) -> Any:
        from obstore.store import GCSStore, S3Store

        client: Any = {"timeout": f"{timeout:g}s", "connect_timeout": f"{min(timeout, 10):g}s",
                                  "user_agent": "precomputed-tif"}
        retry: Any = {"max_retries": retries, "retry_timeout": datetime.timedelta(seconds=4 * timeout),
                 "backoff": {"init_backoff": datetime.timedelta(milliseconds=100),
                             "max_backoff": datetime.timedelta(seconds=15), "base": 2}}
        endpoint = self.endpoint()
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True
        if self.scheme == "s3":
            config, self._signed = _s3_config()
            return S3Store(self.bucket, config=config, client_options=client, retry_config=retry)
        emulator = gcs_endpoint()
        self._signed = emulator is None
        if emulator:
            # An emulator checks no credentials, but obstore asks for a token before every write.
            return GCSStore(self.bucket, config={"base_url": emulator}, client_options=client, retry_config=retry,
                            credential_provider=_emulator_token)
        adc = os.path.join(os.environ.get("CLOUDSDK_CONFIG") or os.path.expanduser("~/.config/gcloud"),
                           "application_default_credentials.json")
        if not (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or os.path.isfile(adc)):
            # No credentials: anonymous reads of public buckets (not the metadata server of a
            # cloud machine, which a laptop does not have).
            self._signed = False
            return GCSStore(self.bucket, config={"skip_signature": True}, client_options=client, retry_config=retry)
        return GCSStore(self.bucket, client_options=client, retry_config=retry)

    def _call(self, key: str, fn: Callable[[], T]) -> T:
        """``fn()``, with an object store's failure turned into one line naming ``key``."""
        from obstore.exceptions import BaseError

        try:
            return _interruptible(fn)
        except FileNotFoundError as exc:
            # obstore raises the same error for a missing bucket as for a missing object.
            if "NoSuchBucket" in str(exc):
                raise self._error(exc, key) from None
            raise
        except (BaseError, OSError) as exc:
            # A stream's writes fail as OSError (the Rust side's I/O error), not as obstore's own.
            raise self._error(exc, key) from None

    def _error(self, exc: Exception, key: str) -> PrecomputedTifError:
        from obstore.exceptions import PermissionDeniedError, PreconditionError, UnauthenticatedError

        text = str(exc)
        where = self.location(key)
        endpoint = self.endpoint() or ("S3" if self.scheme == "s3" else "Google Cloud Storage")
        if isinstance(exc, PreconditionError):
            return ObjectChanged(f"{where} was replaced while it was read; run the command again")
        if "NoSuchBucket" in text or "The specified bucket does not exist" in text:
            return StorageError(f"{where}: bucket {self.bucket} does not exist at {endpoint}")
        if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)) or any(
                code in text for code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                          "403 Forbidden", "401 Unauthorized", "InvalidToken", "ExpiredToken")):
            return AccessDenied(f"{where}: access denied ({self._credentials_hint()})")
        kind, cause, tries = _http_failure(text)
        if kind == "Connect" or "dns error" in text:
            return StorageError(f"{where}: cannot connect to {endpoint} ({cause}{tries}); {self._network_hint()}")
        if kind == "Timeout":
            return StorageError(f"{where}: {endpoint} did not answer within {_timeout():g} s{tries} "
                                f"(PRECOMPUTED_TIF_STORAGE_TIMEOUT); {self._network_hint()}")
        if kind is not None:
            # The connection broke during the request (reset, closed, a body cut short).
            return StorageError(f"{where}: the connection to {endpoint} broke ({cause}{tries}); "
                                f"{self._network_hint()}")
        return StorageError(f"{where}: {_first_cause(text)}")

    def _network_hint(self) -> str:
        if self.scheme == "gs":
            where = "STORAGE_EMULATOR_HOST and that the emulator runs" if gcs_endpoint() else "the network"
        else:
            where = "AWS_ENDPOINT_URL and that the server runs" if s3_endpoint() else "the network"
        return f"check {where}"

    def _credentials_hint(self) -> str:
        if self.scheme == "gs":
            return "credentials from GOOGLE_APPLICATION_CREDENTIALS or gcloud auth application-default login"
        if self._signed:
            return "check the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and their rights"
        return "no AWS credentials found, the request was anonymous: set AWS_ACCESS_KEY_ID and " \
               "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"

    def check_reachable(self, writing: bool) -> None:
        """Fail fast, in one line, when the bucket cannot be reached as configured (no such
        bucket, no access, nothing listening): one listing with a short timeout and one retry,
        before hours of work. ``writing``: also that anonymous requests are not all there is,
        and that the prefix is not the name of an object."""
        import obstore

        probe = self._make_store(min(_timeout(), 15.0), retries=1)
        prefix = self.prefix or None

        def first_page():
            return next(iter(obstore.list(probe, prefix, chunk_size=1)), [])

        try:
            self._call("", first_page)
        except AccessDenied:
            if writing:
                raise
            # A published bucket may let anyone read its objects but not list them (a policy
            # granting s3:GetObject alone, as the publishing commands print): reading the
            # dataset's own objects, which the next request does, tells whether reads are allowed.
            self._unlisted = True
        if writing and self._signed is False:
            raise StorageError(f"{self.location()}: cannot write without credentials ({self._credentials_hint()})")
        if writing and self.prefix:
            # Keys below an object's own name would make it a file and a directory at once
            # (a server on a file system refuses that; any other reader is confused by it).
            import obstore

            with contextlib.suppress(FileNotFoundError):
                self._call("", lambda: obstore.head(probe, self.prefix))
                raise StorageError(f"{self.location()} is an object, not a prefix; give a prefix for the "
                                   "dataset's objects")

    # Objects

    def _attributes(self, key: str, encoding: str | None = None) -> dict[str, str]:
        attributes = {"Content-Type": media_type(key)}
        if encoding:
            attributes["Content-Encoding"] = encoding
        if self.cache_control:
            attributes["Cache-Control"] = self.cache_control
        return attributes

    def put(self, key: str, data: bytes, durable: bool = False, compressible: bool = False) -> None:
        import obstore

        path, encoding = self._path(key), None
        if compressible:
            # mtime=0: the same content gives the same object, so a rerun changes nothing.
            packed = gzip.compress(data, compresslevel=6, mtime=0)
            if len(packed) < len(data):  # tiny or random objects would only grow
                data, encoding = packed, "gzip"
        attributes = self._attributes(key, encoding)
        self._call(key, lambda: obstore.put(self.store, path, data, attributes=attributes, use_multipart=False))

    def get(self, key: str) -> bytes | None:
        import obstore

        path = self._path(key)
        try:
            result = self._call(key, lambda: obstore.get(self.store, path))
            data = bytes(self._call(key, result.bytes))
        except FileNotFoundError:
            return None
        return self._decoded(key, data, result.attributes.get("Content-Encoding", ""))

    def _decoded(self, key: str, data: bytes, encoding: str) -> bytes:
        """``data`` with its ``Content-Encoding`` undone: gzip (what :meth:`put` stores, and
        what cloud-volume writes by default), and brotli or zstd (cloud-volume's other
        choices) when their Python package is installed. An encoding this cannot undo is a
        user error naming it, never bytes passed on still encoded."""
        for name in reversed([e.strip().lower() for e in encoding.split(",") if e.strip()]):
            if name == "identity":
                continue
            try:
                if name in ("gzip", "x-gzip"):
                    if data[:2] != b"\x1f\x8b":
                        continue  # a server that decoded it already sent plain bytes
                    data = gzip.decompress(data)
                elif name == "deflate":
                    data = zlib.decompress(data)
                elif name == "br":
                    import brotli  # type: ignore[import-untyped]

                    data = brotli.decompress(data)
                elif name == "zstd":
                    import zstandard

                    data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
                else:
                    raise StorageError(f"{self.location(key)}: stored with Content-Encoding {name}, which this "
                                       "tool cannot decode")
            except ImportError:
                package = "brotli" if name == "br" else "zstandard"
                raise StorageError(f"{self.location(key)}: stored with Content-Encoding {name}; install the "
                                   f"Python package {package} to read it") from None
            except StorageError:
                raise
            except Exception as exc:  # each decoder has its own error type for damaged data
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise StorageError(f"{self.location(key)}: says Content-Encoding {name} but is not {name} "
                                   f"({reason})") from None
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        # One ranged GET: its bytes come from one version, whatever happens meanwhile.
        if start < 0 or length < 0:
            raise ValueError(f"byte range start {start}, length {length}: both must be >= 0")
        if length == 0:
            return None if self.stat(key) is None else b""
        try:
            return self._ranged(key, start, start + length)
        except FileNotFoundError:
            return None

    def _ranged(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of ``key`` (fewer at its end; ``b""`` from
        past it), of the version ``etag`` if given. ``FileNotFoundError`` when absent."""
        import obstore
        from obstore.exceptions import BaseError

        options: Any = {"range": (start, end)}
        if etag:
            options["if_match"] = etag
        path = self._path(key)
        try:
            return _interruptible(lambda: bytes(obstore.get(self.store, path, options=options).bytes()))
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise self._error(exc, key) from None
            raise
        except (BaseError, OSError) as exc:
            if "416" in str(exc) or "InvalidRange" in str(exc):
                return b""  # the object exists and ends before start
            raise self._error(exc, key) from None

    def stat(self, key: str) -> ObjectStat | None:
        import obstore

        path = self._path(key)
        try:
            meta = self._call(key, lambda: obstore.head(self.store, path))
        except FileNotFoundError:
            return None
        except AccessDenied:
            # Where listing is refused, S3 answers a missing object with 403 (so as not to tell
            # which keys exist): to a probe, absent. Reading an object still fails in one line.
            if self._unlisted:
                return None
            raise
        return _stat(meta)

    def open_reader(self, key: str) -> ObjectReader | None:
        stat = self.stat(key)
        return None if stat is None else _ObjectReader(self, key, stat)

    def list(self, prefix: str = "") -> Iterator[str]:
        for key, _ in self.list_stats(prefix):
            yield key

    def list_stats(self, prefix: str = "") -> Iterator[tuple[str, ObjectStat]]:
        import obstore

        prefix = check_prefix(prefix)
        if prefix:
            # Whole parts: the object named by the prefix itself, then what lies below it.
            own = self.stat(prefix)
            if own is not None:
                yield prefix, own
        root = self._path(prefix) if prefix else self.prefix
        cut = len(self.prefix) + 1 if self.prefix else 0
        pages = self._call(prefix, lambda: iter(obstore.list(self.store, (root + "/") if root else None)))
        while True:
            page = self._call(prefix, lambda: next(pages, None))
            if page is None:
                return
            for meta in page:
                yield meta["path"][cut:], _stat(meta)

    def delete(self, key: str) -> None:
        import obstore

        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):  # GCS says so; S3 does not
            self._call(key, lambda: obstore.delete(self.store, path))

    def open_stream(self, key: str) -> StreamWriter:
        self._path(key)  # a bad key is refused now, not at the first write
        return _ObjectStream(self, key)

    def flush(self) -> None:
        """Nothing to do: every put and closed stream is already stored whole."""


def _interruptible(fn: Callable[[], T]) -> T:
    """``fn()`` (one blocking request of the object store's client), during which Ctrl-C and
    SIGTERM still take effect at once in the main thread. The client waits for its answer
    without ever returning to Python, so a signal's handler would otherwise run only when the
    request ends: after its timeout and retries, minutes when the server hangs. So the main
    thread waits for the request in another thread (a wait signals interrupt); a request left
    behind by the signal ends with the process. Elsewhere (a worker's thread) ``fn`` runs here."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the waiting thread, which raises it
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="object store request", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        try:
            raise value
        finally:
            del value  # no cycle through the traceback
    return value


# The whole-bucket storages object_at made in this process.
_BUCKETS: dict[tuple[str, str], ObjectStorage] = {}


def _stat(meta: Any) -> ObjectStat:
    modified = meta["last_modified"]
    return ObjectStat(size=int(meta["size"]), mtime_ns=int(modified.timestamp() * 1_000_000) * 1000,
                      version=(meta.get("e_tag"), meta.get("version")))


_HTTP_KIND = re.compile(r"HttpError \{\s*kind: (\w+)")
_OS_MESSAGE = re.compile(r'message: "([^"]+)"')
_SOURCE = re.compile(r"source: (\w+)")
_RETRIES = re.compile(r"after (\d+) retries")
_HTTP_SAID = re.compile(r"HTTP error: ([^\n]+)")


def _http_failure(text: str) -> tuple[str | None, str, str]:
    """From an obstore error's text, when the request failed below HTTP (no answer): the kind
    object_store gives (``Connect``, ``Timeout``, ``Request``, ``Interrupted``, ...; None when
    the server answered), the operating system's or the HTTP client's reason, and how many
    times it was tried (``", 3 tries"``, or nothing for one)."""
    kind = _HTTP_KIND.search(text)
    if kind is None:
        # The same failure told in words (a multipart stream's write): "- HTTP error: <reason>".
        said = _HTTP_SAID.search(text)
        if said is None:
            return None, "", ""
        cause = said.group(1).strip().rstrip(".")
        kind_said = "Timeout" if "timed out" in cause else "Connect" if "connect" in cause else "Request"
        retries = _RETRIES.search(text)
        tries = int(retries.group(1)) + 1 if retries else 1
        return kind_said, cause, f", {tries} tries" if tries > 1 else ""
    after = text[kind.end():]
    reason = _OS_MESSAGE.search(after)
    if reason:
        cause = reason.group(1)
    else:
        sources = [s for s in _SOURCE.findall(after) if s not in ("reqwest", "hyper", "hyper_util", "Some")]
        cause = {"Connect": "connection failed", "Timeout": "timed out"}.get(kind.group(1), "")
        cause = cause or (sources[-1] if sources else kind.group(1).lower())
        cause = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", cause).lower()
    cause = cause[:1].lower() + cause[1:]
    retries = _RETRIES.search(text)
    tries = int(retries.group(1)) + 1 if retries else 1
    return kind.group(1), cause, f", {tries} tries" if tries > 1 else ""


def _first_cause(text: str) -> str:
    """The part of an obstore message a user can act on, on one line."""
    line = " ".join(text.split())
    for marker in ("Server returned non-2xx status code: ", "error sending request for url", "Caused by:"):
        if marker in line:
            line = line[line.index(marker):]
            break
    line = re.sub(r"<\?xml.*?\?>", "", line)
    message = re.search(r"<Message>(.*?)</Message>", line)
    code = re.search(r"<Code>(.*?)</Code>", line)
    if message or code:
        return ": ".join(m.group(1) for m in (code, message) if m)
    return line[:200]


class _ObjectReader(ObjectReader):
    """Ranged reads of one version: each read asks the store for that ETag only, so a
    replaced object is an :class:`ObjectChanged`, never a mix of two versions."""

    def __init__(self, storage: ObjectStorage, key: str, stat: ObjectStat):
        self.storage, self.key, self.stat = storage, key, stat

    def read(self, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"byte range start {start}, length {length}: both must be >= 0")
        end = min(start + length, self.stat.size)
        if end <= start:
            return b""
        etag = self.stat.version[0] if isinstance(self.stat.version, tuple) else None
        try:
            return self.storage._ranged(self.key, start, end, etag)
        except FileNotFoundError:
            raise ObjectChanged(f"{self.storage.location(self.key)} was deleted while it was read; "
                                "run the command again") from None


class _ObjectStream(StreamWriter):
    """A multipart upload (obstore's buffered writer: parts of :data:`PART_SIZE`, a few in
    flight); small objects are one put at close."""

    def __init__(self, storage: ObjectStorage, key: str):
        self.storage, self.key = storage, key
        self._writer: Any = None
        self._pending = bytearray()
        self._state = "open"

    def write(self, data: bytes) -> None:
        import obstore

        if self._state != "open":
            raise ValueError(f"stream to {self.storage.location(self.key)} is {self._state}")
        if self._writer is None and len(self._pending) + len(data) < PART_SIZE:
            self._pending += data
            return
        if self._writer is None:
            self._writer = self.storage._call(self.key, lambda: obstore.open_writer(
                self.storage.store, self.storage._path(self.key), attributes=self.storage._attributes(self.key),
                buffer_size=PART_SIZE, max_concurrency=PARTS_IN_FLIGHT))
            first, self._pending = bytes(self._pending), bytearray()
            self._send(first)
        self._send(data)

    def _send(self, data: bytes) -> None:
        try:
            self.storage._call(self.key, lambda: self._writer.write(data))
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        if self._state == "closed":
            return
        if self._state == "aborted":
            raise ValueError(f"stream to {self.storage.location(self.key)} was aborted; it cannot be closed")
        try:
            if self._writer is None:
                self.storage.put(self.key, bytes(self._pending))
            else:
                self.storage._call(self.key, self._writer.close)
        except BaseException:
            self.abort()
            raise
        self._state, self._pending = "closed", bytearray()

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state, self._pending = "aborted", bytearray()
        writer, self._writer = self._writer, None
        if writer is not None:
            # Leaving the writer's block by an exception aborts the multipart upload: its
            # parts are deleted and the key keeps its previous object.
            # The upload is abandoned either way; the error that stopped it is the one to report.
            # Waited for a few seconds at most: the request still writing a part holds the
            # writer, and a server that stopped answering would hold Ctrl-C for minutes. An
            # upload left behind is what a kill -9 leaves (a lifecycle rule removes it).
            def drop() -> None:
                with contextlib.suppress(Exception):
                    writer.__exit__(RuntimeError, RuntimeError("aborted"), None)

            thread = threading.Thread(target=drop, name="object store abort", daemon=True)
            thread.start()
            thread.join(ABORT_WAIT)
