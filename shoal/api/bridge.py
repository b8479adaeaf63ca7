"""The API's connection to the broker: one DEALER, owned by one thread.

HTTP requests are handled on many threads, but a ZeroMQ socket belongs to one.
Handlers hand their request to this thread and wait on a future for the reply.
Going through the mailbox keeps the API a client like the CLI: a task
submitted over HTTP takes the same path as ``shoal run`` (``task.submit`` ->
the scheduler), reads are the same named store queries. One long-lived
identity also means the ``task.done`` the scheduler sends the requester finds
someone connected (it is dropped here: webhooks and clients follow the event bus).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout

import zmq

from shoal.mailbox import frames, sockets, wire
from shoal.mailbox.envelope import ORCHESTRATOR, Envelope
from shoal.mailbox.errors import MailboxTimeout, RemoteError
from shoal.mailbox.loop import SocketLoop
from shoal.messages.actors import ErrorReply
from shoal.messages.base import Payload, from_dict

log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, endpoint: str, name: str) -> None:
        self.endpoint = endpoint
        self.name = name
        self._outbox: queue.SimpleQueue[tuple[Envelope, Future[Envelope]]] = queue.SimpleQueue()
        self._waiting: dict[str, Future[Envelope]] = {}  # by request id; the bridge thread's
        self._loop = SocketLoop(self._send_outbox)
        self._loop.every(1.0, self._forget_given_up)
        self._thread = threading.Thread(target=self._run, name="api-bridge", daemon=True)
        self._thread.start()

    def request(self, payload: Payload, timeout: float = 10.0) -> Payload:
        """Ask the orchestrator; the reply's validated payload (RemoteError for an error)."""
        env = Envelope.of(payload, sender=self.name, recipient=ORCHESTRATOR)
        future: Future[Envelope] = Future()
        self._outbox.put((env, future))
        self._loop.wake()
        try:
            reply = future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise MailboxTimeout(f"no reply to {env.kind} in {timeout:g}s") from None
        if reply.kind == ErrorReply.kind:
            error = from_dict(ErrorReply, reply.payload)
            raise RemoteError(error.code, error.message)
        return reply.parse_payload()

    def send(self, payload: Payload, to: str) -> None:
        """Send without a reply (a steering line to a member); raises if it could not go."""
        env = Envelope.of(payload, sender=self.name, recipient=to)
        future: Future[Envelope] = Future()
        self._outbox.put((env, future))
        self._loop.wake()
        try:
            future.result(10.0)  # set once the frame is out (or failed)
        except FutureTimeout:
            future.cancel()
            raise MailboxTimeout(f"could not send {env.kind} in 10s") from None

    def close(self) -> None:
        self._loop.stop()
        self._thread.join(5)
        self._loop.close()

    def _run(self) -> None:
        ctx = zmq.Context()
        self._sock = sock = sockets.dealer(ctx, self.name, self.endpoint)
        self._loop.add(sock, self._receive)
        try:
            self._loop.run()
        except Exception:
            log.exception("the API's mailbox connection failed")
        finally:
            for future in self._waiting.values():
                future.cancel()
            sock.close()
            ctx.term()

    def _forget_given_up(self, _now: float) -> None:
        waiting = self._waiting
        for message_id in [i for i, f in waiting.items() if f.done()]:
            del waiting[message_id]  # timed out on the asking side

    def _send_outbox(self) -> None:
        while True:
            try:
                env, future = self._outbox.get_nowait()
            except queue.Empty:
                return
            if future.done():
                continue  # the asker gave up already
            try:
                frames.send(self._sock, (wire.MSG, env.encode()))
            except zmq.ZMQError as exc:
                with contextlib.suppress(InvalidStateError):
                    future.set_exception(MailboxTimeout(f"could not send {env.kind}: {exc}"))
                continue
            if env.recipient != ORCHESTRATOR:  # a one-way message: no reply to wait for
                with contextlib.suppress(InvalidStateError):
                    future.set_result(env)
                continue
            self._waiting[env.id] = future

    def _receive(self, message: list[bytes]) -> None:
        if len(message) != 2 or message[0] != wire.MSG:
            return  # PONGs and the like: this client does not heartbeat
        try:
            env = Envelope.decode(message[1])
        except ValueError:
            log.warning("the API's connection got a message it could not read")
            return
        future = self._waiting.pop(env.reply_to or "", None)
        if future is not None:
            with contextlib.suppress(InvalidStateError):  # the asker gave up meanwhile
                future.set_result(env)
