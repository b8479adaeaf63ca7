"""The HTTP server: a stdlib ThreadingHTTPServer on a thread of the orchestrator.

Each request: the bearer token (when the server has one; constant-time
compare; every path but /health), then the route, the query and the JSON
body validated against the route's models, then the endpoint. Every answer
is JSON; an error is ``{"error": {"code", "message"}}`` with one line saying
what was wrong, never a traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ValidationError

from shoal import __version__
from shoal.api.routes import PREFIX, ROUTES, ApiError, Endpoints, Route
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


class App:
    """Routing, authentication and validation, apart from the socket plumbing."""

    def __init__(self, endpoints: Endpoints, token: str | None) -> None:
        self.endpoints = endpoints
        self._token = _digest(token) if token else None

    @property
    def auth(self) -> bool:
        return self._token is not None

    def handle(
        self, method: str, target: str, headers: Any, read_body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        try:
            return self._handle(method, target, headers, read_body)
        except ApiError as exc:
            extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            if exc.allow:
                extra["Allow"] = exc.allow
            return exc.status, _error(exc.code, exc.message), extra
        except MailboxError as exc:
            log.warning("%s %s: the orchestrator did not answer: %s", method, target, exc)
            return 503, _error("unavailable", "the orchestrator did not answer; try again"), {}
        except Exception as exc:
            log.exception("%s %s failed", method, target)
            return 500, _error("internal", f"internal error ({type(exc).__name__})"), {}

    def _handle(
        self, method: str, target: str, headers: Any, read_body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        if not path.startswith(PREFIX + "/"):
            raise ApiError(404, "not_found", f"no endpoint {url.path}; the API is under {PREFIX}")
        path = path[len(PREFIX) :]
        if self._token is not None and path != "/health":
            self._check_token(headers.get("Authorization", ""))
        elif self._token is None:
            _refuse_browsers(headers)
        route, params = self._route(method, path)
        kwargs: dict[str, Any] = dict(params)
        if route.query is not None:
            try:
                kwargs["query"] = route.query.model_validate(dict(parse_qsl(url.query)))
            except ValidationError as exc:
                raise _invalid(exc, "query") from None
        if route.body is not None:
            kwargs["body"] = self._body(route.body, headers, read_body)
        result = getattr(self.endpoints, route.handler)(**kwargs)
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        extra = {"Location": result["url"]} if route.status == 202 and "url" in result else {}
        return route.status, result, extra

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

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route in ROUTES:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == method:
                return route, match.groupdict()
            allowed.append(route.method)
        if allowed:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{method} is not allowed on {PREFIX}{path}; use {', '.join(allowed)}",
                allow=", ".join(allowed),
            )
        raise ApiError(404, "not_found", f"no endpoint {PREFIX}{path}")

    def _body(self, model: type[BaseModel], headers: Any, read_body: Any) -> BaseModel:
        # Any content type: `curl -d '{...}'` says form-urlencoded and means JSON.
        raw = read_body()
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


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    server_version = f"shoal/{__version__}"
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = self.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            self._send(413, _error("too_large", f"the body may be at most {MAX_BODY} bytes"), {})
            return
        if length is None and self.headers.get("Transfer-Encoding"):
            self._send(411, _error("length_required", "send a Content-Length"), {})
            return

        def read_body() -> bytes:
            return self.rfile.read(int(length)) if length else b""

        status, payload, extra = self.server.app.handle(method, self.path, self.headers, read_body)
        self._send(status, payload, extra)

    def _send(self, status: int, payload: Any, extra: dict[str, str]) -> None:
        body = json.dumps(payload, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (a malformed request line, HEAD...) as JSON too."""
        self.close_connection = True
        reason = message or self.responses.get(code, ("error",))[0]
        self._send(code, _error("bad_request" if code < 500 else "internal", reason), {})

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Refusals are worth a line in the orchestrator's log; every poll is not.
        level = logging.INFO if str(code).isdigit() and int(code) >= 400 else logging.DEBUG
        log.log(level, "api %s %r %s", self.address_string(), self.requestline, code)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("api %s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-request: one line in the log, not a traceback on stderr.
        log.info("api %s: connection failed: %s", client_address[0], sys.exc_info()[1])

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class HttpServer:
    """The listening socket and its serving thread."""

    def __init__(self, host: str, port: int, app: App) -> None:
        self.app = app
        self._server = _Server((host.strip("[]"), port), app)  # binds now: errors surface here
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="api-http"
        )
        self._thread.daemon = True
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PREFIX}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


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


def _hostname(value: str) -> str:
    """``[::1]:9742`` -> ``[::1]``, ``localhost:9742`` -> ``localhost``."""
    if value.startswith("["):
        return value.partition("]")[0] + "]"
    return value.partition(":")[0].lower()
