"""Where the WSGI app was documented to be imported from (Apache's mod_wsgi scripts say
``from precomputed_tif.wsgi_webserver import serve_precomputed``); it lives in :mod:`.serving.wsgi`."""

from .serving.wsgi import serve_precomputed

__all__ = ["serve_precomputed"]
