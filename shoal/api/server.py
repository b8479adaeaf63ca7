"""The HTTP server: uvicorn (h11) on an event loop in a thread of the orchestrator.

uvicorn parses HTTP and keeps connections alive; shoal keeps the accept step,
because the orchestrator's file-descriptor budget is decided there:

- ``Acceptor`` accepts (listen backlog 1,024) and admits a connection only
  under the cap; over it, the connection is answered ``503`` with
  ``Retry-After`` and closed at once, never held. Out of file descriptors
  (EMFILE), it pauses accepting for a second, as asyncio does, and says so
  in the log once a minute.
- ``Gate`` knows which connections wait for a request head (new ones, and
  kept-alive ones between requests): each is closed when it has not delivered
  a complete head within ``head_timeout``, and at the cap the one that has
  waited longest (over a second) makes room for a newcomer, so idle
  connections cannot lock out requests.
- ``Protocol`` is uvicorn's h11 protocol telling the gate when a request head
  has arrived and when an answer is complete; malformed requests get JSON.

The application is FastAPI's (``app``) behind the framing step (``asgi``). Its
endpoints block on the mailbox, so FastAPI runs them on its thread pool (anyio's),
which is bounded here to ``[api] workers`` threads for the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from shoal.api.app import Served, build
from shoal.api.asgi import SERVER, AsgiApp, encode
from shoal.api.events import Hub
from shoal.api.http import Answer, App, error_body
from shoal.api.limits import OUT_OF_FDS, ApiLimits, Pressure
from shoal.api.routes import PREFIX

log = logging.getLogger(__name__)

BACKLOG = 1024
ACCEPT_BATCH = 64
"""Connections accepted per wake-up of the loop, so requests in flight are not starved."""
DISPLACE_AFTER = 1.0
"""Seconds a connection must have waited for a request head before a newcomer may take
its place at the cap."""
PAUSE_ON_EMFILE = 1.0


class Gate:
    """The connections the API holds: at most ``cap``, and how long each has waited."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int, head_timeout: float,
                 pressure: Pressure) -> None:  # fmt: skip
        self.loop = loop
        self.cap = cap
        self.head_timeout = head_timeout
        self.pressure = pressure
        self.open = 0
        self._waiting: dict[Protocol, tuple[float, asyncio.TimerHandle]] = {}
        """Oldest first: a connection goes to the end each time it starts waiting."""

    def admit(self) -> bool:
        """Take a slot for a connection just accepted; False: refuse it."""
        if self.open >= self.cap and not self._displace():
            self.pressure.note_refused()
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1

    def waiting(self, conn: Protocol) -> None:
        """``conn`` waits for a request head (again); idempotent while it does."""
        if conn not in self._waiting:
            timer = self.loop.call_later(self.head_timeout, self._expire, conn)
            self._waiting[conn] = (self.loop.time(), timer)

    def busy(self, conn: Protocol) -> None:
        """``conn`` delivered a request head: no head timeout while it is answered."""
        entry = self._waiting.pop(conn, None)
        if entry is not None:
            entry[1].cancel()

    def _expire(self, conn: Protocol) -> None:
        if self._waiting.pop(conn, None) is not None:
            self.pressure.timed_out += 1
            conn.close_idle()

    def _displace(self) -> bool:
        """Close the connection that has waited longest for a head, if over a second."""
        oldest = next(iter(self._waiting.items()), None)
        if oldest is None or self.loop.time() - oldest[1][0] < DISPLACE_AFTER:
            return False
        conn = oldest[0]
        self.busy(conn)
        self.pressure.evicted += 1
        conn.close_idle()  # its slot is released when it is gone (connection_lost)
        return True


class Protocol(H11Protocol):
    """uvicorn's h11 protocol, reporting to the gate (see the module's docstring)."""

    def __init__(self, *args: Any, gate: Gate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.holds_slot = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.holds_slot = True
        super().connection_made(transport)
        self.gate.waiting(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.busy(self)
        if self.holds_slot:
            self.holds_slot = False
            self.gate.release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def _track(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.gate.busy(self)
        else:
            self.gate.waiting(self)

    def close_idle(self) -> None:
        """Close a connection that owes us a request head; abort it if it does not read."""
        self.transport.close()
        if self.transport.get_write_buffer_size():
            self.transport.abort()

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse: JSON like every other answer (uvicorn's is text)."""
        client = self.client[0] if self.client else "-"
        log.info("api %s: invalid HTTP request", client)
        answer = Answer(400, error_body("bad_request", "invalid HTTP request"))
        headers, body = encode(answer, close=True)
        with contextlib.suppress(h11.LocalProtocolError):
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def _busy_response(cap: int) -> bytes:
    """The whole answer to a connection over the cap, written before it is closed."""
    message = f"the API has {cap} connections open, its limit; try again shortly"
    answer = Answer(503, error_body("unavailable", message), {"Retry-After": "1"})
    headers, body = encode(answer, close=True)
    head = b"HTTP/1.1 503 Service Unavailable\r\nserver: " + SERVER.encode() + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + body


class Acceptor:
    """Accepts connections on the listening socket, admitting them through the gate.

    Stands in for the ``asyncio.Server`` uvicorn would make (``close``, ``wait_closed``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: Callable[[], Protocol], gate: Gate) -> None:  # fmt: skip
        self.loop = loop
        self.sock = sock
        self.protocol = protocol
        self.gate = gate
        self.busy = _busy_response(gate.cap)
        self._resume: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._pause(exc)
                return
            if not self.gate.admit():
                self._refuse(conn)
                continue
            conn.setblocking(False)
            # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and an
            # accepted one reports 0: with Nagle on, the head and body of every answer on a
            # kept-alive connection waited for the client's delayed ACK (~40 ms each).
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.loop.create_task(self._connect(conn))

    def _refuse(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            conn.send(self.busy)  # a fresh socket's buffer takes it whole
        conn.close()

    async def _connect(self, conn: socket.socket) -> None:
        made: list[Protocol] = []

        def protocol() -> Protocol:
            made.append(self.protocol())
            return made[0]

        try:
            await self.loop.connect_accepted_socket(protocol, conn)
        except Exception as exc:
            log.info("api: a connection failed as it was made: %s", exc)
            conn.close()
            if not (made and made[0].holds_slot):
                self.gate.release()

    def _pause(self, exc: OSError) -> None:
        """Out of file descriptors (or another accept failure): stop accepting for a while."""
        if exc.errno in OUT_OF_FDS:
            self.gate.pressure.note_out_of_fds(exc)
        else:
            log.warning("the HTTP API could not accept a connection: %s", exc)
        self.loop.remove_reader(self.sock.fileno())
        self._resume = self.loop.call_later(PAUSE_ON_EMFILE, self._listen_again)

    def _listen_again(self) -> None:
        self._resume = None
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
        elif self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    async def wait_closed(self) -> None:
        return None


class _Uvicorn(uvicorn.Server):
    """uvicorn's server with the listening side replaced by the acceptor and its gate."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket, limits: ApiLimits,
                 pressure: Pressure, hub: Hub) -> None:  # fmt: skip
        super().__init__(config)
        self.hub = hub
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sock = sock
        self.limits = limits
        self.pressure = pressure
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = self.loop = asyncio.get_running_loop()
        config = self.config
        self.hub.start()  # subscribed now, long before the first client of a stream
        # The endpoints' threads: the pool is per event loop, its limit set on this one.
        anyio.to_thread.current_default_thread_limiter().total_tokens = self.limits.workers
        gate = Gate(loop, self.pressure.cap, self.limits.head_timeout, self.pressure)

        def protocol() -> Protocol:
            return Protocol(config=config, server_state=self.server_state, app_state={},
                            _loop=loop, gate=gate)  # fmt: skip

        self.servers = [Acceptor(loop, self.sock, protocol, gate)]  # type: ignore[list-item]
        self.started = True
        self.ready.set()


class HttpServer:
    """The listening socket (bound at once: errors surface to the caller) and its thread."""

    def __init__(self, host: str, port: int, app: App, limits: ApiLimits) -> None:
        self.app = app
        self.host = host
        sock = _bind(host, port)
        self.port: int = sock.getsockname()[1]
        self.pressure = Pressure(limits.cap())
        # Event streams may hold half the connections; the rest stay for requests.
        hub = Hub(app.endpoints.client, max(1, self.pressure.cap // 2))
        self.api = build(self.url)
        self.api.state.shoal = Served(app, hub, limits.heartbeat)
        config = uvicorn.Config(
            AsgiApp(self.api, limits),
            http="h11",
            ws="none",
            lifespan="off",
            loop="asyncio",
            log_config=None,
            log_level=logging.ERROR,  # refusals are logged here, once a minute at most
            access_log=False,
            proxy_headers=False,
            server_header=False,
            headers=[("server", SERVER)],
            backlog=BACKLOG,
            timeout_keep_alive=limits.keepalive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=3,
        )
        self._server = _Uvicorn(config, sock, limits, self.pressure, hub)
        self._thread = threading.Thread(target=self._run, name="api-http", daemon=True)
        self._thread.start()
        self._server.ready.wait(10)
        if not self._server.started:
            self.close()
            raise OSError(f"the HTTP server did not start on {host}:{self.port}")

    @property
    def cap(self) -> int:
        return self.pressure.cap

    @property
    def url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PREFIX}"

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
                runner.run(self._server.serve())
        except BaseException:
            log.exception("the HTTP API's server failed")
            self._server.sock.close()
        finally:
            self._server.ready.set()  # whoever waits for the start learns it did not

    def close(self) -> None:
        loop = self._server.loop
        if loop is not None and not loop.is_closed():
            # Streams never end on their own: end them, or the shutdown waits for them.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._server.hub.close)
        self._server.should_exit = True
        self._thread.join(6)

    def openapi(self) -> dict[str, Any]:
        """The API's OpenAPI document (FastAPI's, made once)."""
        return self.api.openapi()


def _bind(host: str, port: int) -> socket.socket:
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.create_server((address, port), family=family, backlog=BACKLOG)
