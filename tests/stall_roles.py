"""A test role that works without a sign of life (for stall detection)."""

from __future__ import annotations

import time

from shoal.actors.base import Actor, aside
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


@message("test.aside")
class AsideRequest(Payload, kw_only=True):
    pass


@message("test.aside.result")
class AsideResult(Payload, kw_only=True):
    sleeping: bool
    """Whether the work handler was still asleep when this was answered."""


class AsideSleeperActor(Actor):
    """Sleeps on its work thread; answers ``test.aside`` beside it (an ``@aside`` handler)."""

    role = "aside-sleeper"

    def setup(self) -> None:
        self.sleeping = False

    def on_test_sleep(self, msg: Envelope, payload: SleepRequest) -> None:
        self.sleeping = True
        try:
            time.sleep(payload.seconds)
        finally:
            self.sleeping = False

    @aside
    def on_test_aside(self, msg: Envelope, payload: AsideRequest) -> AsideResult:
        return AsideResult(sleeping=self.sleeping)
