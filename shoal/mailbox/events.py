"""Subscribers to the orchestrator's event bus (PUB/SUB, topic = message kind).

Topics are prefixes: ``"actor."`` receives ``actor.started`` and ``actor.exited``;
an empty list of topics receives everything.
"""

from __future__ import annotations

import zmq

from shoal.mailbox import sockets
from shoal.mailbox.envelope import Envelope


class Subscriber:
    def __init__(self, endpoint: str, topics: list[str] | None = None) -> None:
        self._ctx = zmq.Context()
        self._sock = sockets.subscriber(self._ctx, endpoint, topics or [])

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def socket(self) -> zmq.Socket:
        """The SUB socket, to poll together with others (only ``recv`` reads it)."""
        return self._sock

    def recv(self, timeout: float | None = None) -> Envelope | None:
        if not self._sock.poll(None if timeout is None else int(timeout * 1000)):
            return None
        _topic, body = self._sock.recv_multipart()
        return Envelope.decode(body)

    def close(self) -> None:
        self._sock.close()
        self._ctx.term()


class AsyncSubscriber:
    def __init__(self, endpoint: str, topics: list[str] | None = None) -> None:
        import zmq.asyncio  # asyncio costs a synchronous client ~18 ms of start-up

        self._ctx = zmq.asyncio.Context()
        self._sock = sockets.subscriber(self._ctx, endpoint, topics or [])

    async def recv(self) -> Envelope:
        _topic, body = await self._sock.recv_multipart()
        return Envelope.decode(body)

    def close(self) -> None:
        self._sock.close()
        self._ctx.term()
