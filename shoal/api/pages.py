"""The dashboard's pages: ``/`` and its files under ``/static/``, and ``/login``.

The page and its script and style ship in the package (``shoal/api/static``: no CDN,
no build step) and hold nothing secret, so they are served to anyone who may reach
the API; everything they show comes from /api/v1 with the session cookie that
``/login?code=...`` sets (see :mod:`shoal.api.session`). Headers keep the page from
loading anything from elsewhere and from being framed.
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from shoal.api.http import Answer, error_body
from shoal.api.session import Sessions

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_GUARDS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _files() -> dict[str, Any]:
    folder = resources.files("shoal.api") / "static"
    return {f.name: f for f in folder.iterdir() if f.is_file() and f.name[0] != "."}


PATHS = ("/", "/index.html", "/login", "/static/{name}")
"""The dashboard's paths, each answered by :func:`page` on GET (and HEAD)."""


def page(path: str, query: str, sessions: Sessions | None) -> Answer:
    """The answer to a GET of one of the dashboard's paths (:data:`PATHS`)."""
    if path == "/login":
        return _login(query, sessions)
    name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
    found = _files().get(name)
    if found is None:
        return Answer(404, error_body("not_found", f"no file {path}"))
    kind = _TYPES.get(name[name.rfind(".") :], "application/octet-stream")
    return Answer(200, found.read_bytes(), {"Content-Type": kind, **_GUARDS})


def _login(query: str, sessions: Sessions | None) -> Answer:
    code = dict(parse_qsl(query)).get("code", "")
    value = sessions.redeem(code) if sessions is not None and code else None
    if value is None:
        message = "this login link was used or has expired; `shoal dashboard` prints a new one"
        return Answer(401, error_body("unauthorized", message), dict(_GUARDS))
    assert sessions is not None
    return Answer(303, None, {"Location": "/", "Set-Cookie": sessions.set_cookie(value), **_GUARDS})


def shown(path: str, query: str) -> str:
    """A request's target as the log may show it: never a login code."""
    if path == "/login":
        return "/login?code=..."
    return path + (f"?{query}" if query else "")
