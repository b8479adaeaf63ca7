"""The DEALER client for asyncio code (the HTTP API, async actors, tests).

A reader task takes frames off the socket: replies resolve the waiting
request's future, everything else goes to the inbox queue that ``recv`` reads.
"""

from __future__ import annotations

import asyncio
import contextlib

import zmq
import zmq.asyncio

from shoal.mailbox import sockets, wire
from shoal.mailbox.client import client_name
from shoal.mailbox.envelope import PUBLISH, Envelope
from shoal.mailbox.errors import MailboxTimeout, RemoteError
from shoal.messages.actors import ErrorReply
from shoal.messages.base import Payload, from_dict


class AsyncMailboxClient:
    def __init__(self, endpoint: str, name: str | None = None) -> None:
        self.name = name or client_name("aclient")
        self._ctx = zmq.asyncio.Context()
        self._sock = sockets.dealer(self._ctx, self.name, endpoint)
        self._inbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self._waiting: dict[str, asyncio.Future[Envelope]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def __aenter__(self) -> AsyncMailboxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._sock.close()
        self._ctx.term()

    async def send(
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
        await self._sock.send_multipart([wire.MSG, env.encode()])
        return env

    async def publish(self, payload: Payload, *, task_id: str | None = None) -> Envelope:
        return await self.send(PUBLISH, payload, task_id=task_id)

    async def ack(self, ids: list[str]) -> None:
        await self._sock.send_multipart([wire.ACK, wire.encode_acks(ids)])

    async def recv(self, timeout: float | None = None) -> Envelope | None:
        try:
            return await asyncio.wait_for(self._inbox.get(), timeout)
        except TimeoutError:
            return None

    async def request(
        self,
        recipient: str,
        payload: Payload,
        *,
        timeout: float = 10.0,
        task_id: str | None = None,
    ) -> Envelope:
        env = Envelope.of(payload, sender=self.name, recipient=recipient, task_id=task_id)
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._waiting[env.id] = future
        try:
            await self._sock.send_multipart([wire.MSG, env.encode()])
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise MailboxTimeout(
                f"no reply to {env.kind} from {recipient} in {timeout:g}s"
            ) from None
        finally:
            self._waiting.pop(env.id, None)
        if reply.kind == ErrorReply.kind:
            error = from_dict(ErrorReply, reply.payload)
            raise RemoteError(error.code, error.message)
        return reply

    async def _read(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            if len(frames) != 2 or frames[0] != wire.MSG:
                continue
            env = Envelope.decode(frames[1])
            future = self._waiting.get(env.reply_to or "")
            if future is not None and not future.done():
                future.set_result(env)
            else:
                self._inbox.put_nowait(env)
