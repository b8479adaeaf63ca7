"""A DEALER client for synchronous code (CLI commands, scripts, tests).

One client per thread: ZeroMQ sockets are not thread-safe. The client owns
its context, and closes the socket before the context.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING

import zmq

from shoal.mailbox import frames, sockets, wire
from shoal.mailbox.envelope import PUBLISH, Envelope
from shoal.mailbox.errors import MailboxTimeout, RemoteError
from shoal.messages.actors import ErrorReply
from shoal.messages.base import Payload, from_dict

if TYPE_CHECKING:
    from shoal.mailbox.curve import CurveClientKeys


def client_name(prefix: str = "client") -> str:
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"


class MailboxClient:
    """Send messages, receive them, and make request/reply calls through the broker."""

    def __init__(
        self, endpoint: str, name: str | None = None, curve: CurveClientKeys | None = None
    ) -> None:
        self.name = name or client_name()
        self._ctx = zmq.Context()
        self._sock = sockets.dealer(self._ctx, self.name, endpoint, curve)
        self._poll_items = [(self._sock, frames.POLLIN)]
        self._inbox: deque[Envelope] = deque()

    def __enter__(self) -> MailboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()
        self._ctx.term()

    @property
    def waiting(self) -> bool:
        """A message is already received and waits for ``recv``."""
        return bool(self._inbox)

    @property
    def socket(self) -> zmq.Socket:
        """The DEALER socket, to poll together with others (only ``recv`` reads it)."""
        return self._sock

    def send(
        self,
        recipient: str,
        payload: Payload,
        *,
        task_id: str | None = None,
        reply_to: str | None = None,
    ) -> Envelope:
        env = Envelope.of(
            payload, sender=self.name, recipient=recipient, task_id=task_id, reply_to=reply_to
        )
        self.send_envelope(env)
        return env

    def publish(self, payload: Payload, *, task_id: str | None = None) -> Envelope:
        return self.send(PUBLISH, payload, task_id=task_id)

    def send_envelope(self, env: Envelope) -> None:
        frames.send(self._sock, (wire.MSG, env.encode()))

    def ack(self, ids: list[str]) -> None:
        frames.send(self._sock, (wire.ACK, wire.encode_acks(ids)))

    def recv(self, timeout: float | None = None) -> Envelope | None:
        """The next message, or None after ``timeout`` seconds (None waits forever)."""
        if self._inbox:
            return self._inbox.popleft()
        return self._recv_raw(None if timeout is None else time.monotonic() + timeout)

    def request(
        self,
        recipient: str,
        payload: Payload,
        *,
        timeout: float = 10.0,
        task_id: str | None = None,
    ) -> Envelope:
        """Send and wait for the reply; a ``mailbox.error`` reply raises RemoteError."""
        env = self.send(recipient, payload, task_id=task_id)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv_raw(deadline)
            if reply is None:
                raise MailboxTimeout(f"no reply to {env.kind} from {recipient} in {timeout:g}s")
            if reply.reply_to != env.id:
                self._inbox.append(reply)
                continue
            if reply.kind == ErrorReply.kind:
                error = from_dict(ErrorReply, reply.payload)
                raise RemoteError(error.code, error.message)
            return reply

    def _recv_raw(self, deadline: float | None) -> Envelope | None:
        while True:
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not frames.zmq_poll(self._poll_items, wait_ms):
                return None
            message = frames.recv(self._sock)
            if len(message) == 2 and message[0] == wire.MSG:
                return Envelope.decode(message[1])
