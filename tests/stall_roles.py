"""A test role that works without a sign of life (for stall detection)."""

from __future__ import annotations

import time

from shoal.actors.base import Actor
from shoal.mailbox.envelope import Envelope
from shoal.messages.base import Payload, message


@message("test.sleep")
class SleepRequest(Payload, kw_only=True):
    seconds: float


class SleeperActor(Actor):
    """Busy (on a handler thread) for as long as asked, sending nothing meanwhile."""

    role = "sleeper"

    def on_test_sleep(self, msg: Envelope, payload: SleepRequest) -> None:
        time.sleep(payload.seconds)
