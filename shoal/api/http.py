"""Routing, authentication and validation of the HTTP API, apart from any socket.

Each request: the bearer token (when the server has one; constant-time
compare; every path but /health), then the route, the query and the JSON
body validated against the route's models, then the endpoint. Every answer
is JSON; an error is ``{"error": {"code", "message"}}`` with one line saying
what was wrong, never a traceback. ``server`` and ``asgi`` carry the bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ValidationError

from shoal.api.routes import PREFIX, ROUTES, ApiError, Endpoints, Route
from shoal.api.session import Sessions
from shoal.mailbox.errors import MailboxError

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _invalid(exc: ValidationError, where: str) -> ApiError:
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"]) or where
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ApiError(422, "invalid", f"{loc}: {first['msg']}{more}")


@dataclass(frozen=True)
class Answer:
    """What the server sends: a status, a JSON payload (None: no body) and extra headers."""

    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """A request that passed the token, routing and query checks: its endpoint is next."""

    method: str
    target: str
    route: Route
    kwargs: dict[str, Any]


class App:
    """Routing, authentication and validation, apart from the socket plumbing.

    Two steps, so the server can read a body only for a request that may send one:
    :meth:`begin` (token, route, query: cheap, on the event loop) and :meth:`finish`
    (the body's model and the endpoint, which blocks on the mailbox: on a worker thread).
    """

    def __init__(
        self, endpoints: Endpoints, token: str | None, sessions: Sessions | None = None
    ) -> None:
        self.endpoints = endpoints
        self.sessions = sessions
        """The dashboard's sessions: a good session cookie stands for the token."""
        self._token = _digest(token) if token else None

    @property
    def auth(self) -> bool:
        return self._token is not None

    def begin(self, method: str, target: str, headers: Any) -> Call | Answer:
        """The route to call, or the answer when there is none (an error, OPTIONS)."""
        return self._guard(method, target, lambda: self._begin(method, target, headers))

    def finish(self, call: Call, raw: bytes) -> Answer:
        return self._guard(call.method, call.target, lambda: self._finish(call, raw))

    def _guard(self, method: str, target: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except ApiError as exc:
            return refusal(exc)
        except MailboxError as exc:
            log.warning("%s %s: the orchestrator did not answer: %s", method, target, exc)
            message = "the orchestrator did not answer; try again"
            return Answer(503, error_body("unavailable", message))
        except Exception as exc:
            log.exception("%s %s failed", method, target)
            return Answer(500, error_body("internal", f"internal error ({type(exc).__name__})"))

    def _begin(self, method: str, target: str, headers: Any) -> Call | Answer:
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        if not path.startswith(PREFIX + "/"):
            raise ApiError(404, "not_found", f"no endpoint {url.path}; the API is under {PREFIX}")
        path = path[len(PREFIX) :]
        if self.sessions is not None and self.sessions.of_request(headers.get("Cookie") or ""):
            same_origin(headers)  # the page's own requests only
        elif self._token is not None and path != "/health":
            self._check_token(headers.get("Authorization", ""))
        elif self._token is None:
            _refuse_browsers(headers)
        if method == "OPTIONS":
            # The methods, and nothing a browser's CORS preflight could take as a yes.
            return Answer(204, None, {"Allow": _allow(self._methods(path), path)})
        route, params = self._route(method, path)
        kwargs: dict[str, Any] = dict(params)
        if route.query is not None:
            try:
                kwargs["query"] = route.query.model_validate(dict(parse_qsl(url.query)))
            except ValidationError as exc:
                raise _invalid(exc, "query") from None
        return Call(method, target, route, kwargs)

    def _finish(self, call: Call, raw: bytes) -> Answer:
        kwargs = dict(call.kwargs)
        if call.route.body is not None:
            kwargs["body"] = self._body(call.route.body, raw)
        result = getattr(self.endpoints, call.route.handler)(**kwargs)
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        extra = {"Location": result["url"]} if call.route.status == 202 and "url" in result else {}
        return Answer(call.route.status, result, extra)

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

    def _methods(self, path: str) -> list[str]:
        return [route.method for route in ROUTES if route.pattern.match(path)]

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        wanted = "GET" if method == "HEAD" else method  # HEAD: GET's answer without its body
        for route in ROUTES:
            match = route.pattern.match(path)
            if match is not None and route.method == wanted:
                return route, match.groupdict()
        allowed = self._methods(path)
        if allowed:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{method} is not allowed on {PREFIX}{path}; use {', '.join(allowed)}",
                allow=_allow(allowed, path),
            )
        raise ApiError(404, "not_found", f"no endpoint {PREFIX}{path}")

    def _body(self, model: type[BaseModel], raw: bytes) -> BaseModel:
        # Any content type: `curl -d '{...}'` says form-urlencoded and means JSON.
        try:
            data = json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError(400, "bad_request", f"the body is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ApiError(422, "invalid", "the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc, "body") from None


def refusal(exc: ApiError) -> Answer:
    """An ApiError as the answer sent: JSON, with the headers its status calls for."""
    extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if exc.allow:
        extra["Allow"] = exc.allow
    if exc.retry_after:
        extra["Retry-After"] = str(exc.retry_after)
    return Answer(exc.status, error_body(exc.code, exc.message), extra)


def _allow(methods: list[str], path: str) -> str:
    """The Allow header: the routes' methods, HEAD with GET, and OPTIONS."""
    if not methods:
        raise ApiError(404, "not_found", f"no endpoint {PREFIX}{path}")
    extra = (["HEAD"] if "GET" in methods else []) + ["OPTIONS"]
    return ", ".join(methods + extra)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _refuse_browsers(headers: Any) -> None:
    """Without a token, only programs on this machine: no web page, no rebound name.

    A browser sends ``Origin`` with a cross-site POST (even a "simple" one that needs
    no preflight), and a page reached through DNS rebinding names its own host in
    ``Host``; either would let any web page start tasks as this user.
    """
    if headers.get("Origin"):
        raise ApiError(403, "forbidden", "requests from web pages need a token (--token)")
    host = _hostname(headers.get("Host") or "")
    if host and host not in _LOOPBACK_HOSTS:
        raise ApiError(403, "forbidden", f"Host {host} is not this machine; serve with --token")


def same_origin(headers: Any) -> None:
    """A request with the session cookie comes from the dashboard's own page: a browser
    says where a request comes from (``Origin``) on every POST and cross-origin fetch."""
    origin = headers.get("Origin")
    if origin and urlsplit(origin).netloc != (headers.get("Host") or ""):
        raise ApiError(403, "forbidden", "cross-origin requests are refused")


def _hostname(value: str) -> str:
    """``[::1]:9742`` -> ``[::1]``, ``localhost:9742`` -> ``localhost``."""
    if value.startswith("["):
        return value.partition("]")[0] + "]"
    return value.partition(":")[0].lower()
