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
import os
import queue
import threading
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout

import zmq

from shoal.mailbox import sockets, wire
from shoal.mailbox.envelope import ORCHESTRATOR, Envelope
from shoal.mailbox.errors import MailboxTimeout, RemoteError
from shoal.messages.actors import ErrorReply
from shoal.messages.base import Payload, from_dict

log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, endpoint: str, name: str) -> None:
        self.endpoint = endpoint
        self.name = name
        self._outbox: queue.SimpleQueue[tuple[Envelope, Future[Envelope]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._running = True
        self._thread = threading.Thread(target=self._run, name="api-bridge", daemon=True)
        self._thread.start()

    def request(self, payload: Payload, timeout: float = 10.0) -> Payload:
        """Ask the orchestrator; the reply's validated payload (RemoteError for an error)."""
        env = Envelope.of(payload, sender=self.name, recipient=ORCHESTRATOR)
        future: Future[Envelope] = Future()
        self._outbox.put((env, future))
        os.write(self._wake_w, b".")
        try:
            reply = future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise MailboxTimeout(f"no reply to {env.kind} in {timeout:g}s") from None
        if reply.kind == ErrorReply.kind:
            error = from_dict(ErrorReply, reply.payload)
            raise RemoteError(error.code, error.message)
        return reply.parse_payload()

    def close(self) -> None:
        self._running = False
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")
        self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = sockets.dealer(ctx, self.name, self.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        waiting: dict[str, Future[Envelope]] = {}
        try:
            while self._running:
                events = dict(poller.poll(1000))
                if self._wake_r in events:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 4096):
                            pass
                self._send_outbox(sock, waiting)
                while sock.get(zmq.EVENTS) & zmq.POLLIN:
                    self._receive(sock.recv_multipart(zmq.NOBLOCK), waiting)
                for message_id in [i for i, f in waiting.items() if f.done()]:
                    del waiting[message_id]  # timed out on the asking side
        except Exception:
            log.exception("the API's mailbox connection failed")
        finally:
            for future in waiting.values():
                future.cancel()
            sock.close()
            ctx.term()

    def _send_outbox(self, sock: zmq.Socket, waiting: dict[str, Future[Envelope]]) -> None:
        while True:
            try:
                env, future = self._outbox.get_nowait()
            except queue.Empty:
                return
            if future.done():
                continue  # the asker gave up already
            try:
                sock.send_multipart([wire.MSG, env.encode()])
            except zmq.ZMQError as exc:
                with contextlib.suppress(InvalidStateError):
                    future.set_exception(MailboxTimeout(f"could not send {env.kind}: {exc}"))
                continue
            waiting[env.id] = future

    def _receive(self, frames: list[bytes], waiting: dict[str, Future[Envelope]]) -> None:
        if len(frames) != 2 or frames[0] != wire.MSG:
            return  # PONGs and the like: this client does not heartbeat
        try:
            env = Envelope.decode(frames[1])
        except ValueError:
            log.warning("the API's connection got a message it could not read")
            return
        future = waiting.pop(env.reply_to or "", None)
        if future is not None:
            with contextlib.suppress(InvalidStateError):  # the asker gave up meanwhile
                future.set_result(env)
