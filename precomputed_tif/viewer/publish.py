"""A dataset written to a bucket, as a browser meets it: the links that open it in Neuroglancer
straight from the bucket (no server of ours in the path), and whether a browser can read it
there, checked the way a browser asks, with what to run when it cannot.

The check (:func:`check_access`) makes two unsigned requests to the object a viewer reads first
(``info``; an OME-Zarr's ``zarr.json`` or ``.zattrs``), at its plain ``http(s)://`` address
(:meth:`~precomputed_tif.storage.ObjectStorage.http_url`):

- an anonymous ``GET`` with an ``Origin``, as a browser sends it without credentials: a 401 or
  403 means the bucket is not publicly readable; an answer without an
  ``Access-Control-Allow-Origin`` for that origin means the browser may not use it;
- a CORS preflight, ``OPTIONS`` with ``Access-Control-Request-Method: GET`` and
  ``Access-Control-Request-Headers: range``: what a browser sends before the ranged reads of
  shards (and of a mesh's fragments).

The origin asked about is that of the viewer the printed link opens,
:data:`~.links.NEUROGLANCER_APP` (Neuroglancer's public demo): that link is the promise made,
so that is what is checked. The CORS rule suggested allows every origin (``*``): the objects
are public anyway, so naming one origin would protect nothing and would shut out a
Neuroglancer run locally (``http://localhost:8080``) and other viewers (vizarr, Viv).

A failure is advice, not an error: the data is complete and correct whatever the bucket's
settings, so the command still ends with status 0. A network failure of the check itself is
one line.
"""

from __future__ import annotations

import dataclasses
import http.client
import ipaddress
import json
import re
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from typing import TextIO

from .. import formats
from ..info import JOB_RECORD, VolumeInfo
from ..storage import ObjectStorage, Storage
from ..storage.objects import s3_endpoint
from .links import NEUROGLANCER_APP, dataset_link, layer, neuroglancer_link, viewer_state, zarr_link

#: The origin a browser sends when Neuroglancer's public demo reads the dataset.
VIEWER_ORIGIN = NEUROGLANCER_APP
#: Seconds each probe may take.
PROBE_TIMEOUT = 10.0
#: Response headers a viewer reads from a cross-origin answer (Neuroglancer: the range a 206
#: holds, and whether the length given is of gzip bytes).
EXPOSE_HEADERS = ["Content-Length", "Content-Range", "Content-Encoding", "Content-Type", "ETag"]
MAX_AGE = 3600


def dataset_name(storage: Storage) -> str:
    """The last part of the dataset's URL: the layer's name in the link."""
    return storage.location().rstrip("/").rsplit("/", 1)[-1] or "image"


def zarr_version(storage: Storage) -> int | None:
    """2 or 3: the Zarr version of the NGFF root group at the top of ``storage``; None if none."""
    if storage.exists("zarr.json"):
        return 3
    if storage.exists(".zattrs"):
        return 2
    return None


@dataclasses.dataclass(frozen=True)
class Published:
    """How a browser opens a dataset in a bucket: ``source`` (``precomputed://…``,
    ``zarr2://…``, ``zarr3://…``), a Neuroglancer ``link`` opening it, and ``first_key``,
    the object the viewer reads first (the one :func:`check_access` asks about)."""

    source: str
    link: str | None
    first_key: str


def format_of(storage: Storage, info: dict) -> formats.Format | None:
    """The format of the dataset in ``storage`` whose ``info`` is given: the one its job record
    names, else the one its objects show (None if neither tells)."""
    try:
        record = json.loads(storage.get(JOB_RECORD) or b"null")
    except ValueError:
        record = None
    recorded = record.get("format") if isinstance(record, dict) else None
    return formats.of_dataset(storage, info, recorded if isinstance(recorded, str) and recorded.strip() else None)


def published(storage: ObjectStorage, info: dict | VolumeInfo | None, fmt: formats.Format | None,
              points: bool = False) -> Published | None:
    """How Neuroglancer opens the dataset straight from its bucket: a volume of format ``fmt``
    (None: found from the dataset) whose ``info`` is given, or a point annotation layer
    (``points``); None when a browser cannot read that format without this project's servers
    (tiff, blockfs).

    Precomputed opens as ``precomputed://`` + :meth:`~.ObjectStorage.public_url`. Zarr and
    OME-Zarr open as ``zarr2://`` or ``zarr3://`` (the version their root group has): naming
    the version spares Neuroglancer's guess, which asks for the other version's metadata too,
    and a bucket that lets anyone read objects but not list them answers a missing object with
    403, which Neuroglancer takes for a failure, not for "absent"."""
    url = storage.public_url()
    if points:  # a source to add beside the image it belongs to
        return Published("precomputed://" + url, None, "info")
    if info is None:
        return None
    if fmt is None:
        fmt = format_of(storage, dict(info) if isinstance(info, dict) else info.to_json())
    name = dataset_name(storage)
    if fmt is not None and fmt.precomputed_native:
        source = "precomputed://" + url
        return Published(source, dataset_link(source, info, name), "info")
    if fmt is not None and fmt.ngff_root:
        version = zarr_version(storage)
        if version is None:
            return None
        source = f"zarr{version}://{url}"
        if VolumeInfo.of(info).segmentation:
            link = neuroglancer_link(viewer_state([layer(source, info, name)], info))
        else:
            link = zarr_link(source, info, name)
        return Published(source, link, "zarr.json" if version == 3 else ".zattrs")
    return None


# ---------------------------------------------------------------------------------------------
# What a browser gets


@dataclasses.dataclass
class Access:
    """What :func:`check_access` found: ``problems``, each one line, by kind (``"public"``: no
    anonymous reads; ``"cors"``: no cross-origin reads; ``"other"``), or ``unchecked``: why
    the bucket could not be asked (the network), one line."""

    url: str
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    unchecked: str | None = None

    @property
    def readable(self) -> bool:
        return not self.problems and self.unchecked is None

    def kinds(self) -> set[str]:
        return {kind for kind, _ in self.problems}


def _request(method: str, url: str, headers: dict[str, str], timeout: float) -> tuple[int, dict[str, str]]:
    """(status, response headers with lower-case names) of one unsigned request; reads at most
    64 KiB of the body. ``OSError`` (``urllib.error.URLError`` among them) when there is no answer."""
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs of our making
    except urllib.error.HTTPError as exc:
        response = exc
    with response:
        response.read(65536)
        status = response.status if response.status is not None else response.code
        return int(status), {k.lower(): v for k, v in response.headers.items()}


def _allows_origin(headers: dict[str, str], origin: str) -> bool:
    return headers.get("access-control-allow-origin", "").strip() in ("*", origin)


def _listed(headers: dict[str, str], name: str, wanted: str) -> bool:
    values = {v.strip().lower() for v in headers.get(name, "").split(",")}
    return wanted.lower() in values or "*" in values


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split())[:200] or type(exc).__name__


def check_access(storage: ObjectStorage, key: str, origin: str = VIEWER_ORIGIN,
                 timeout: float = PROBE_TIMEOUT) -> Access:
    """Whether a browser on ``origin`` can read ``key`` of ``storage`` (see the module's
    docstring): an anonymous GET and a CORS preflight of its ``http(s)://`` URL."""
    url = storage.http_url(key)
    access = Access(url)
    try:
        status, headers = _request("GET", url, {"Origin": origin}, timeout)
        if status in (401, 403):
            access.problems.append(("public", f"an anonymous GET of {url} is refused (HTTP {status}): "
                                              "the bucket is not publicly readable"))
        elif not 200 <= status < 300:
            access.problems.append(("other", f"an anonymous GET of {url} answers HTTP {status}"))
        elif not _allows_origin(headers, origin):
            access.problems.append(("cors", f"a GET of {url} from {origin} is answered without "
                                            "Access-Control-Allow-Origin: the bucket has no CORS rule for it"))
        status, headers = _request("OPTIONS", url, {"Origin": origin, "Access-Control-Request-Method": "GET",
                                                    "Access-Control-Request-Headers": "range"}, timeout)
    except (OSError, http.client.HTTPException) as exc:  # no answer (timeouts, TLS are OSErrors)
        access.problems.clear()
        access.unchecked = f"could not ask {url} whether a browser may read it ({_why(exc)})"
        return access
    asked = f"a browser's preflight (OPTIONS {url} from {origin} for a GET with Range)"
    # As the Fetch standard checks a preflight: an ok status, the origin allowed, and the Range
    # header (GET itself is a safelisted method: Access-Control-Allow-Methods need not name it).
    missing = [what for what, ok in (
        (f"Access-Control-Allow-Origin for {origin}", _allows_origin(headers, origin)),
        ("Range in Access-Control-Allow-Headers", _listed(headers, "access-control-allow-headers", "range")))
        if not ok]
    if "cors" not in access.kinds():
        if not 200 <= status < 300:
            access.problems.append(("cors", f"{asked} is refused (HTTP {status}): the bucket has no CORS rule for it"))
        elif missing:
            access.problems.append(("cors", f"{asked} is answered without {', '.join(missing)}"))
    return access


def mixed_content(storage: ObjectStorage) -> str | None:
    """Why an ``https://`` viewer cannot read the bucket at all, whatever its settings: a plain
    ``http://`` endpoint that is not this machine (browsers block such mixed content; they
    allow ``http://127.0.0.1`` and ``http://localhost``). None when that is not the case."""
    endpoint = storage.endpoint()
    if endpoint is None or not endpoint.lower().startswith("http://"):
        return None
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if local:
        return None
    return (f"{endpoint} is plain http://: Neuroglancer at {VIEWER_ORIGIN} (https) may not read it "
            "(browsers block mixed content); give the server an https:// address")


# ---------------------------------------------------------------------------------------------
# What to run


def s3_cors_rules() -> dict:
    """The CORS configuration ``aws s3api put-bucket-cors`` takes: GET and HEAD, with Range,
    from every origin, the headers a viewer reads exposed."""
    return {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["*"],
                           "ExposeHeaders": EXPOSE_HEADERS, "MaxAgeSeconds": MAX_AGE}]}


def gcs_cors_rules() -> list:
    """The CORS configuration ``gcloud storage buckets update --cors-file`` takes (GCS allows a
    preflight's request headers by the same list)."""
    return [{"origin": ["*"], "method": ["GET", "HEAD"], "responseHeader": [*EXPOSE_HEADERS, "Range"],
             "maxAgeSeconds": MAX_AGE}]


def s3_read_policy(storage: ObjectStorage) -> dict:
    """A bucket policy letting anyone read the objects under the dataset's prefix (nothing else)."""
    resource = f"arn:aws:s3:::{storage.bucket}/" + (f"{storage.prefix}/*" if storage.prefix else "*")
    return {"Version": "2012-10-17", "Statement": [{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                                                     "Action": "s3:GetObject", "Resource": resource}]}


CORS_TITLE = "Let viewers in a browser read it from any site (CORS):\n\n"


def _file(name: str, doc) -> str:
    """A shell command writing ``doc`` as JSON to ``name``: indented, lists of names on one line."""
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
                  json.dumps(doc, indent=2))
    return f"cat > {name} <<'EOF'\n{text}\nEOF\n"


def advice(storage: ObjectStorage, access: Access) -> str:
    """The shell commands that make the bucket readable by browsers, for the problems found:
    each a block that writes its JSON file and runs the provider's CLI (``--endpoint-url``
    added when ``AWS_ENDPOINT_URL`` names an S3-compatible server)."""
    kinds = access.kinds()
    out = []
    if storage.scheme == "s3":
        endpoint = s3_endpoint()
        extra = f" --endpoint-url {endpoint}" if endpoint else ""
        if "public" in kinds:
            block = _file("policy.json", s3_read_policy(storage))
            if endpoint is None:
                # Buckets are made with public policies blocked: lift that block first.
                block += (f"aws s3api put-public-access-block --bucket {storage.bucket} "
                          "--public-access-block-configuration "
                          "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=false,"
                          "RestrictPublicBuckets=false\n")
            block += f"aws s3api put-bucket-policy --bucket {storage.bucket} --policy file://policy.json{extra}\n"
            out.append("Let anyone read the dataset (this replaces the bucket's policy: if it has one, add\n"
                       "the statement to it instead):\n\n" + block)
        if "cors" in kinds:
            out.append(CORS_TITLE + _file("cors.json", s3_cors_rules())
                       + f"aws s3api put-bucket-cors --bucket {storage.bucket} --cors-configuration file://cors.json"
                         f"{extra}\n")
    else:
        if "public" in kinds:
            out.append("Let anyone read the dataset:\n\n"
                       f"gcloud storage buckets add-iam-policy-binding gs://{storage.bucket} --member=allUsers "
                       "--role=roles/storage.objectViewer\n")
        if "cors" in kinds:
            out.append(CORS_TITLE + _file("cors.json", gcs_cors_rules())
                       + f"gcloud storage buckets update gs://{storage.bucket} --cors-file=cors.json\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# What a command prints


def announce(storage: Storage, info: dict | VolumeInfo | None, fmt: formats.Format | None, prog: str,
             out: TextIO, err: TextIO, check: bool = True, points: bool = False) -> Access | None:
    """After a command wrote to a bucket: print to ``out`` the source and link that open the
    dataset (see :func:`published`) from it, then (``check``) ask the bucket as a browser would and print to ``err``,
    as a warning block, what stops a browser and the commands that fix it. Nothing for local
    storage (a server of ours serves it and prints its own links). Returns what was found."""
    if not isinstance(storage, ObjectStorage):
        return None
    shown = published(storage, info, fmt, points)
    if shown is None:
        return None
    if shown.link is None:
        print(f"add it to Neuroglancer as a layer: {shown.source}", file=out)
    else:
        print(f"open in Neuroglancer: {shown.link}", file=out)
        print(f"(as a layer source: {shown.source})", file=out)
    out.flush()
    if not check:
        return None
    notes = [m for m in (mixed_content(storage),) if m]
    access = check_access(storage, shown.first_key)
    if access.unchecked:
        print(f"{prog}: warning: {access.unchecked}", file=err)
    if access.problems or notes:
        lines = [f"{prog}: warning: the data is complete, but a browser cannot read {storage.location()} yet:"]
        lines += [textwrap.fill(f"- {text}", 100, subsequent_indent="  ", break_long_words=False,
                                break_on_hyphens=False) for text in [t for _, t in access.problems] + notes]
        text = "\n".join(lines)
        fix = advice(storage, access)
        print(text + ("\n\n" + fix if fix else ""), file=err)
    err.flush()
    return access
