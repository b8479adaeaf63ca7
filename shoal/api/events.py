"""``GET /api/v1/events``: the orchestrator's events as Server-Sent Events.

One subscriber to the event bus per server (``Hub``), started with the server so it
is subscribed long before a client asks (a PUB/SUB subscription takes a moment to
reach the publisher), fans each event out to the streams open at the time. A stream
is a plain ASGI response that never ends on its own: each event is one ``data:``
line of JSON (``{"id", "kind", "task_id", "sender", "sent_at", "payload"}``), with
``id:`` set to the event's id; a comment line every ``heartbeat`` seconds keeps
proxies and the browser from giving up on a quiet stream. Filters: ``?task=ID``
(the task's id or a prefix of it) and ``?team=NAME`` (events from that team's
members, or about them). Streams run on the event loop, never on the endpoint
threads: a client waiting for events costs a connection and a queue, not a thread.

A client that does not read (its queue of ``QUEUE`` events is full) is dropped:
its browser reconnects, and the page reloads what it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal.api.routes import ApiError
from shoal.mailbox.envelope import Envelope

if TYPE_CHECKING:
    from shoal.client import Client

log = logging.getLogger(__name__)

QUEUE = 1000
"""Events a stream may have waiting before its client counts as gone."""
RETRY_MS = 2000
"""How long a browser waits before reconnecting a lost stream (``retry:``)."""
_END = object()


@dataclass(frozen=True)
class Filter:
    task: str = ""
    """A task id or a prefix of one ("" for any)."""
    team: str = ""

    def wants(self, env: Envelope) -> bool:
        if self.task:
            task_id = env.task_id or str(env.payload.get("task_id") or "")
            if not task_id.startswith(self.task):
                return False
        if self.team:
            names = (env.sender, str(env.payload.get("name", "")), str(env.payload.get("role", "")))
            if not any(_in_team(n, self.team) for n in names):
                return False
        return True


def _in_team(name: str, team: str) -> bool:
    """``executor@red-1`` and ``executor@red`` are in team ``red``."""
    _, at, rest = name.partition("@")
    return bool(at) and (rest == team or rest.startswith(team + "-"))


def frame(env: Envelope) -> bytes:
    """One event as the stream sends it."""
    data = {
        "id": env.id,
        "kind": env.kind,
        "task_id": env.task_id,
        "sender": env.sender,
        "sent_at": env.sent_at,
        "payload": env.payload,
    }
    return f"id: {env.id}\ndata: {json.dumps(data, default=str)}\n\n".encode()


@dataclass(eq=False)
class Stream:
    filter: Filter
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(QUEUE))


class Hub:
    """The bus subscriber and the open streams; lives on the server's event loop."""

    def __init__(self, client: Client, limit: int) -> None:
        self.client = client
        self.limit = limit
        """Streams open at most (the rest of the connections stay for requests)."""
        self.streams: set[Stream] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        bus = self.client.events_async()
        try:
            while True:
                try:
                    env = await bus.recv()
                except ValueError:
                    continue  # not a message: nothing to pass on
                self.publish(env)
        finally:
            bus.close()

    def publish(self, env: Envelope) -> None:
        encoded = b""
        for stream in list(self.streams):
            if not stream.filter.wants(env):
                continue
            encoded = encoded or frame(env)
            try:
                stream.queue.put_nowait(encoded)
            except asyncio.QueueFull:
                log.info("api: an event stream's client does not read; it is closed")
                self._end(stream)

    def open(self, wanted: Filter) -> Stream:
        if len(self.streams) >= self.limit:
            message = f"{self.limit} event streams are open, the most the API keeps; try again"
            raise ApiError(503, "unavailable", message, retry_after=1)
        stream = Stream(wanted)
        self.streams.add(stream)
        return stream

    def close_stream(self, stream: Stream) -> None:
        self.streams.discard(stream)

    def _end(self, stream: Stream) -> None:
        self.streams.discard(stream)
        with contextlib.suppress(asyncio.QueueFull):
            stream.queue.put_nowait(_END)
        if stream.queue.full():  # no room for the end mark: make some
            stream.queue.get_nowait()
            stream.queue.put_nowait(_END)

    def close(self) -> None:
        """End every stream (the server stops) and the subscriber."""
        for stream in list(self.streams):
            self._end(stream)
        if self._task is not None:
            self._task.cancel()


async def serve_stream(hub: Hub, stream: Stream, heartbeat: float, receive: Any,
                       send: Any) -> None:  # fmt: skip
    """Send the stream's events until the client goes or the server stops."""
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no"),
    ]
    gone = asyncio.ensure_future(_disconnected(receive))
    getter: asyncio.Future[Any] | None = None
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await _body(send, f"retry: {RETRY_MS}\n: connected\n\n".encode())
        while True:
            getter = getter or asyncio.ensure_future(stream.queue.get())
            done, _ = await asyncio.wait(
                {getter, gone}, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            if gone in done:
                return
            item: Any = b": heartbeat\n\n"
            if getter in done:
                item, getter = getter.result(), None
            if item is _END:
                break
            await _body(send, item)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        hub.close_stream(stream)
        for waiting in (gone, getter):
            if waiting is not None:
                waiting.cancel()


async def _body(send: Any, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
