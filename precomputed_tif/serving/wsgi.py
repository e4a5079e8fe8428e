"""``serve_precomputed``: the WSGI front door, for Apache mod_wsgi, gunicorn and friends.

A WSGI script (``precomputed.wsgi``)::

    from precomputed_tif.serving.wsgi import serve_precomputed

    CONFIG_FILE = "/etc/sources.json"

    def application(environ, start_response):
        return serve_precomputed(environ, start_response, CONFIG_FILE)

Each process keeps one catalog per config file, so stores are opened once and
reused; edits to the config file take effect on the next request.
"""

from __future__ import annotations

import logging
import threading

from ..errors import PrecomputedTifError
from .core import REASONS, REQUEST_HEADERS, ConfigCatalog, handle, text_response

log = logging.getLogger(__name__)

_catalogs: dict[str, ConfigCatalog] = {}
_catalogs_lock = threading.Lock()


def _catalog(config_file: str):
    with _catalogs_lock:
        catalog = _catalogs.get(config_file)
        if catalog is None:
            catalog = ConfigCatalog(config_file)
            _catalogs[config_file] = catalog
    return catalog.current()


def serve_precomputed(environ, start_response, config_file: str):
    """Answer one WSGI request for the sources listed in ``config_file`` (a sources.json)."""
    method = environ.get("REQUEST_METHOD", "GET")
    headers = {name: environ.get("HTTP_" + name.upper().replace("-", "_"), "") for name in REQUEST_HEADERS}
    try:
        if environ.get("SERVER_PROTOCOL") == "HTTP/1.1" and "HTTP_HOST" not in environ:
            # HTTP/1.1 requires a Host (RFC 9112 3.2). Apache and nginx answer 400 before the app
            # is called; gunicorn passes such a request on, so it is refused here.
            response = text_response(400)
        else:
            # PEP 3333 hands the decoded path over as latin-1 characters; undo that to get UTF-8 names.
            path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
            response = handle(_catalog(config_file), method, path, headers)
    except (UnicodeEncodeError, UnicodeDecodeError):  # no such name can exist
        response = text_response(404)
    except PrecomputedTifError as exc:
        log.error("%s", exc)
        response = text_response(503, "server configuration is broken; see the server log")
    start_response(f"{response.status} {REASONS.get(response.status, '')}", response.headers)
    if isinstance(response.body, (bytes, bytearray)):
        return [response.body]
    return response.body
