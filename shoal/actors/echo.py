"""The echo role: answers every ``echo.request`` with its text. Used by tests and benchmarks."""

from __future__ import annotations

import time

from shoal.actors.base import Actor, inline
from shoal.mailbox.envelope import Envelope
from shoal.messages.actors import EchoReply, EchoRequest


class EchoActor(Actor):
    role = "echo"

    @inline
    def on_echo_request(self, msg: Envelope, payload: EchoRequest) -> EchoReply:
        if payload.delay:
            time.sleep(payload.delay)
        return EchoReply(text=payload.text, seq=payload.seq, handled_by=self.ctx.name)
