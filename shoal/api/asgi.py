"""The API as an ASGI application: a request's bytes in, :class:`App`'s answer out.

In order, so that nothing is read or run for a request that cannot be taken:

- framing, before any body is read: a POST, PUT or PATCH says how long its body
  is (``Content-Length``, or a chunked body) or gets 411; a declared body over
  1 MiB gets 413;
- ``App.begin`` (token, route, query) on the event loop;
- the body, only for a route that takes one, read to at most 1 MiB (413)
  within ``body_timeout`` (408);
- ``App.finish`` (the body's model, the endpoint) on a bounded pool of threads:
  endpoints block on the mailbox, and the loop must not.

HEAD answers as GET does, headers included, without the body (uvicorn drops it).
A request whose body was left unread is answered with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shoal import __version__
from shoal.api import pages
from shoal.api.events import Filter, Hub, serve_stream
from shoal.api.http import MAX_BODY, Answer, App, Call, refusal
from shoal.api.limits import ApiLimits
from shoal.api.routes import ApiError

log = logging.getLogger(__name__)

SERVER = f"shoal/{__version__}"
_WITH_BODY = ("POST", "PUT", "PATCH")


class Gone(Exception):
    """The client hung up before its request was complete: nobody to answer."""


class Headers:
    """A request's headers by lower-case name (the first of repeated ones)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in raw:
            self._values.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)


class AsgiApp:
    def __init__(self, app: App, limits: ApiLimits, hub: Hub) -> None:
        self.app = app
        self.hub = hub
        self.body_timeout = limits.body_timeout
        self.heartbeat = limits.heartbeat
        self.pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="api")
        self._log = RequestLog()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # no lifespan (the server runs it with lifespan off), no websockets
        method = scope["method"]
        query = scope["query_string"].decode("latin-1")
        path = scope["raw_path"].decode("latin-1")
        target = path + (f"?{query}" if query else "")
        client = (scope.get("client") or ("-",))[0]
        if pages.is_page(path):  # the dashboard: no body is read
            answer = pages.page(method, path, query, self.app.sessions)
            self._log.request(client, f"{method} {pages.shown(path, query)}", answer.status)
            await send_answer(send, answer, close=method in _WITH_BODY)
            return
        try:
            answer, unread = await self._answer(method, target, Headers(scope["headers"]), receive)
        except Gone:
            return
        if isinstance(answer, Call):
            answer = await self._stream(answer, receive, send)
            if answer is None:
                return
        self._log.request(client, f"{method} {target}", answer.status)  # logged when answered
        await send_answer(send, answer, close=unread)

    async def _stream(self, call: Call, receive: Any, send: Any) -> Answer | None:
        """Serve an event stream; the answer when it is refused instead (None: served)."""
        query = call.kwargs["query"]
        try:
            stream = self.hub.open(Filter(query.task or "", query.team or ""))
        except ApiError as exc:
            return refusal(exc)
        if call.method == "HEAD":
            self.hub.close_stream(stream)
            return Answer(200, None, {"Content-Type": "text/event-stream; charset=utf-8"})
        await serve_stream(self.hub, stream, self.heartbeat, receive, send)
        return None

    async def _answer(
        self, method: str, target: str, headers: Headers, receive: Any
    ) -> tuple[Answer | Call, bool]:
        """The answer (a Call: an event stream to serve), and whether a body was left
        unread (then the connection closes)."""
        try:
            has_body = _framing(method, headers)
        except ApiError as exc:
            return refusal(exc), True
        begun = self.app.begin(method, target, headers)
        if isinstance(begun, Answer) or begun.route.stream:
            return begun, has_body
        raw = b""
        if begun.route.body is not None and has_body:
            try:
                raw = await self._read(receive)
            except ApiError as exc:
                return refusal(exc), True
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self.pool, self.app.finish, begun, raw)
        return answer, has_body and begun.route.body is None

    async def _read(self, receive: Any) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise Gone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise _too_large()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise ApiError(
                408, "timeout", f"the body did not arrive within {self.body_timeout:g} s"
            ) from None


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


def _too_large() -> ApiError:
    return ApiError(413, "too_large", f"the body may be at most {MAX_BODY} bytes")


def encode(answer: Answer, close: bool = False) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The answer's headers and body as sent: JSON, never cached."""
    headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
    body = b""
    if isinstance(answer.payload, bytes):  # a page's file; its type is in answer.headers
        body = answer.payload
        headers.append((b"content-length", b"%d" % len(body)))
    elif answer.payload is not None:
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
