"""Who may use the HTTP API, and what an answer is, apart from any framework or socket.

Each request under /api/v1 is checked before it is routed or its body read: the
bearer token (when the server has one; constant-time compare; every path but
/health), or the dashboard's session cookie (then a browser's ``Origin`` must be
the page's own), or, without a token, no web page and no rebound host name.
Every answer is JSON; an error is ``{"error": {"code", "message"}}`` with one
line saying what was wrong, never a traceback. ``app`` builds the FastAPI
application on this; ``asgi`` and ``server`` carry the bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from shoal.api.routes import PREFIX, ROUTES, ApiError, Endpoints
from shoal.api.session import Sessions

MAX_BODY = 1024 * 1024


class HeaderLookup(Protocol):
    def get(self, key: str, default: None = None) -> str | None: ...


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True)
class Answer:
    """What the server sends: a status, a JSON payload (None: no body; bytes: a file, its
    type in ``headers``) and extra headers."""

    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


class App:
    """The API as served: its endpoints, and who may call them (token, dashboard sessions)."""

    def __init__(
        self, endpoints: Endpoints, token: str | None, sessions: Sessions | None = None
    ) -> None:
        self.endpoints = endpoints
        self.sessions = sessions
        """The dashboard's sessions: a good session cookie stands for the token."""
        self._token = _digest(token) if token else None
        self._public = frozenset(PREFIX + r.path for r in ROUTES if not r.auth)

    @property
    def auth(self) -> bool:
        return self._token is not None

    def admit(self, path: str, headers: HeaderLookup) -> None:
        """Raise ApiError (401, 403) unless this request under /api/v1 may go on."""
        if self.sessions is not None and self.sessions.of_request(headers.get("cookie") or ""):
            same_origin(headers)  # the page's own requests only
        elif self._token is not None and path not in self._public:
            self._check_token(headers.get("authorization") or "")
        elif self._token is None:
            _refuse_browsers(headers)

    def _check_token(self, header: str) -> None:
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            _digest(given.strip()), self._token or b""
        )
        if not ok:
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            )


def refusal(exc: ApiError) -> Answer:
    """An ApiError as the answer sent: JSON, with the headers its status calls for."""
    extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if exc.allow:
        extra["Allow"] = exc.allow
    if exc.retry_after:
        extra["Retry-After"] = str(exc.retry_after)
    return Answer(exc.status, error_body(exc.code, exc.message), extra)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _refuse_browsers(headers: HeaderLookup) -> None:
    """Without a token, only programs on this machine: no web page, no rebound name.

    A browser sends ``Origin`` with a cross-site POST (even a "simple" one that needs
    no preflight), and a page reached through DNS rebinding names its own host in
    ``Host``; either would let any web page start tasks as this user.
    """
    if headers.get("origin"):
        raise ApiError(403, "forbidden", "requests from web pages need a token (--token)")
    host = _hostname(headers.get("host") or "")
    if host and host not in _LOOPBACK_HOSTS:
        raise ApiError(403, "forbidden", f"Host {host} is not this machine; serve with --token")


def same_origin(headers: HeaderLookup) -> None:
    """A request with the session cookie comes from the dashboard's own page: a browser
    says where a request comes from (``Origin``) on every POST and cross-origin fetch."""
    origin = headers.get("origin")
    if origin and urlsplit(origin).netloc != (headers.get("host") or ""):
        raise ApiError(403, "forbidden", "cross-origin requests are refused")


def _hostname(value: str) -> str:
    """``[::1]:9742`` -> ``[::1]``, ``localhost:9742`` -> ``localhost``."""
    if value.startswith("["):
        return value.partition("]")[0] + "]"
    return value.partition(":")[0].lower()
