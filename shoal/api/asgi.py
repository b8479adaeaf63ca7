"""The bytes side of the API: what uvicorn hands over, before and around the FastAPI app.

In order, so that nothing is read or run for a request that cannot be taken:

- framing, before any body is read: a POST, PUT or PATCH says how long its body
  is (``Content-Length``, or a chunked body) or gets 411; a declared body over
  1 MiB gets 413 (both with ``Connection: close``: what follows is not read);
- the application (``app``) gets the request with its path as sent (still
  percent-encoded, so ``..%2F`` stays inside one path parameter; a trailing ``/``
  dropped under /api/v1), a query without its blank parameters (``?status=`` is
  no filter, not an invalid one), a HEAD as a GET (uvicorn sends no body for a
  HEAD, so the answer is GET's status and headers), and a body as JSON whatever
  its ``Content-Type`` says (``curl -d`` says form-urlencoded and means JSON);
- a body, read only by a route that takes one, comes through :class:`Body`: at
  most 1 MiB (413) and in full within ``body_timeout`` of the head (408);
- every answer is marked not to be cached; one to a request whose body was left
  unread says ``Connection: close``; refusals are logged (:class:`RequestLog`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from shoal import __version__
from shoal.api import pages
from shoal.api.app import METHOD, Refused
from shoal.api.http import MAX_BODY, Answer, refusal
from shoal.api.limits import ApiLimits
from shoal.api.routes import PREFIX, ApiError

log = logging.getLogger(__name__)

SERVER = f"shoal/{__version__}"
_WITH_BODY = ("POST", "PUT", "PATCH")
_JSON = (b"content-type", b"application/json")


class Headers:
    """A request's headers by lower-case name (the first of repeated ones)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in raw:
            self._values.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)


class AsgiApp:
    def __init__(self, app: Any, limits: ApiLimits) -> None:
        self.app = app
        self.body_timeout = limits.body_timeout
        self._log = RequestLog()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # no lifespan (the server runs it with lifespan off), no websockets
        method = scope["method"]
        path = scope["raw_path"].decode("latin-1")
        if path.startswith(PREFIX + "/"):
            path = path.rstrip("/") or "/"
        line = f"{method} {pages.shown(path, scope['query_string'].decode('latin-1'))}"
        client = (scope.get("client") or ("-",))[0]
        try:
            has_body = _framing(method, Headers(scope["headers"]))
        except ApiError as exc:
            self._log.request(client, line, exc.status)
            await send_answer(send, refusal(exc), close=True)
            return
        inner = {
            **scope,
            "path": path,
            "method": "GET" if method == "HEAD" else method,
            "query_string": _without_blanks(scope["query_string"]),
            METHOD: method,
        }
        if has_body:
            inner["headers"] = [h for h in scope["headers"] if h[0] != _JSON[0]] + [_JSON]
        body = Body(receive, self.body_timeout, has_body)
        reply = Reply(send, body, lambda status: self._log.request(client, line, status))
        try:
            await self.app(inner, body.receive, reply.send)
        except Exception:  # answered 500 already (the app's handler); the traceback is here
            log.exception("%s failed", line)


class Body:
    """A request's body as the application reads it, held to 1 MiB and ``timeout``."""

    def __init__(self, receive: Any, timeout: float, expected: bool) -> None:
        self._receive = receive
        self.timeout = timeout
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.complete = not expected
        """The body was read to its end (or there is none)."""
        self.gone = False
        """The client hung up before its request was complete: nobody to answer."""
        self._size = 0

    async def receive(self) -> dict[str, Any]:
        if self.complete:  # past the body: an event stream waiting for the disconnect
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            message = f"the body did not arrive within {self.timeout:g} s"
            raise Refused(ApiError(408, "timeout", message)) from None
        if message["type"] == "http.disconnect":
            self.gone = True
            return message
        self._size += len(message.get("body", b""))
        if self._size > MAX_BODY:
            raise Refused(_too_large())
        self.complete = not message.get("more_body", False)
        return message


class Reply:
    """The application's answer on its way out: logged as it starts (unless nobody is
    there to get it), never cached, and closing the connection when the request's body
    was left unread (it cannot be told from a next request)."""

    def __init__(self, send: Any, body: Body, logged: Callable[[int], None]) -> None:
        self._send = send
        self._body = body
        self._logged = logged

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if not self._body.gone:
                self._logged(message["status"])
            headers = list(message.get("headers", ()))
            if not any(name == b"cache-control" for name, _ in headers):
                headers.append((b"cache-control", b"no-store"))
            if not self._body.complete:
                headers.append((b"connection", b"close"))
            message = {**message, "headers": headers}
        await self._send(message)


class RequestLog:
    """Refusals are worth a line in the orchestrator's log, every poll is not; and a client
    sending bad requests as fast as it can must not fill the disk: at most ``PER_SECOND``
    lines a second, and with the next one after, a line saying how many were left out."""

    PER_SECOND = 10

    def __init__(self) -> None:
        self._second = 0
        self._lines = 0

    def request(self, client: str, line: str, status: int) -> None:
        if status < 400:
            log.debug("api %s %r %d", client, line, status)
            return
        now = int(time.monotonic())
        if now != self._second:
            if self._lines > self.PER_SECOND:
                left_out = self._lines - self.PER_SECOND
                log.info("api: %d more refused request(s) in that second, not logged", left_out)
            self._second, self._lines = now, 0
        self._lines += 1
        if self._lines <= self.PER_SECOND:
            log.info("api %s %r %d", client, line, status)


def _framing(method: str, headers: Headers) -> bool:
    """Whether the request has a body to read; ApiError when it cannot be taken."""
    length = headers.get("content-length")
    if length is not None:  # h11 has checked it is a number
        if int(length) > MAX_BODY:
            raise _too_large()
        return int(length) > 0
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        return True
    if method in _WITH_BODY:
        raise ApiError(
            411,
            "length_required",
            f"a {method} needs a Content-Length (0 for no body) or a chunked body",
        )
    return False


def _without_blanks(query: bytes) -> bytes:
    return b"&".join(p for p in query.split(b"&") if p.partition(b"=")[2]) if query else query


def _too_large() -> ApiError:
    return ApiError(413, "too_large", f"the body may be at most {MAX_BODY} bytes")


def encode(answer: Answer, close: bool = False) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """An answer sent without the application (framing, the server's own): its headers
    and body, JSON, never cached."""
    headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
    body = b""
    if answer.payload is not None:
        body = json.dumps(answer.payload, default=str).encode()
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    for name, value in answer.headers.items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1", "replace")))
    if close:
        headers.append((b"connection", b"close"))
    return headers, body


async def send_answer(send: Any, answer: Answer, close: bool = False) -> None:
    headers, body = encode(answer, close)
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
