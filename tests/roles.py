"""Actor roles used only by tests, loaded by import path (``tests.roles:CounterActor``)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

from shoal.actors.base import KEEP, Actor, inline
from shoal.mailbox.envelope import Envelope
from shoal.messages.actors import EchoReply, EchoRequest
from shoal.messages.base import Payload, message


@message("test.count")
class CountRequest(Payload, kw_only=True):
    fail: bool = False


@message("test.count.result")
class CountReply(Payload, kw_only=True):
    total: int
    handled_by: str


class CounterActor(Actor):
    """Counts the messages its handler really ran for (to prove idempotency)."""

    role = "counter"

    def setup(self) -> None:
        self.total = 0

    @inline
    def on_test_count(self, msg: Envelope, payload: CountRequest) -> CountReply:
        if payload.fail:
            raise RuntimeError("asked to fail")
        self.total += 1
        return CountReply(total=self.total, handled_by=self.ctx.name)


@message("test.ping")
class PingRequest(Payload, kw_only=True):
    target: str
    count: int
    timeout: float = 60.0


@message("test.ping.result")
class PingResult(Payload, kw_only=True):
    received: int
    duplicates: int
    missing: list[int]
    seconds: float


class PingerActor(Actor):
    """Sends ``count`` echo requests to another actor and checks every reply arrives once."""

    role = "pinger"

    def setup(self) -> None:
        self.lock = threading.Lock()
        self.seen: Counter[int] = Counter()
        self.expected = 0
        self.done = threading.Event()

    def on_test_ping(self, msg: Envelope, payload: PingRequest) -> PingResult:
        with self.lock:
            self.seen.clear()
            self.expected = payload.count
            self.done.clear()
        start = time.monotonic()
        for seq in range(payload.count):
            self.ctx.send(payload.target, EchoRequest(text="ping", seq=seq))
        self.done.wait(payload.timeout)
        with self.lock:
            missing = [s for s in range(payload.count) if s not in self.seen]
            return PingResult(
                received=sum(self.seen.values()),
                duplicates=sum(c - 1 for c in self.seen.values()),
                missing=missing[:100],
                seconds=time.monotonic() - start,
            )

    @inline
    def on_echo_reply(self, msg: Envelope, payload: EchoReply) -> None:
        with self.lock:
            self.seen[payload.seq or 0] += 1
            if len(self.seen) >= self.expected:
                self.done.set()


@message("test.keep")
class KeepRequest(Payload, kw_only=True):
    text: str


@message("test.kept")
class KeptRequest(Payload, kw_only=True):
    release: bool = False


@message("test.kept.result")
class KeptReply(Payload, kw_only=True):
    texts: list[str]
    pid: int


class KeeperActor(Actor):
    """Holds every ``test.keep`` unacked until asked to release them (``KEEP``)."""

    role = "keeper"

    def setup(self) -> None:
        self.kept: dict[str, str] = {}

    @inline
    def on_test_keep(self, msg: Envelope, payload: KeepRequest) -> object:
        self.kept[msg.id] = payload.text
        return KEEP

    @inline
    def on_test_kept(self, msg: Envelope, payload: KeptRequest) -> KeptReply:
        texts = sorted(self.kept.values())
        if payload.release:
            self.ctx.release(list(self.kept))
            self.kept.clear()
        return KeptReply(texts=texts, pid=os.getpid())
