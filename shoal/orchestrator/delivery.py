"""Delivery bookkeeping: which messages are unacked, and where they must go again.

A *tracked* message (one addressed to a supervised actor) stays here until
its recipient acks it (an ACK frame, or a reply whose ``reply_to`` is its id).
It is sent again when the recipient comes back as a new instance, when it
could not be delivered, or when it was delivered ``ack_timeout`` ago and the
recipient's heartbeats do not say it holds it. A message for a name nobody
has connected under yet *waits* here until it appears or ``pending_ttl`` ends.
:class:`Traffic` holds what the broker counted, for ``orchestrator.status``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shoal.mailbox.envelope import Envelope
from shoal.messages.actors import MessageCounters
from shoal.orchestrator.flow import Flow


@dataclass
class Traffic:
    """What the broker counted since it started (``dropped``: its socket loop counts those)."""

    dropped: Callable[[], int]
    started_at: float = field(default_factory=time.time)
    routed: int = 0
    undeliverable: int = 0
    redelivered: int = 0
    unrecorded: int = 0
    """Polled reads and their answers, routed but neither journaled nor recorded."""
    flow: Flow = field(default_factory=Flow)
    """Routed messages by sender, recipient and kind (the dashboard's message flow)."""

    def counters(self, recorded: int, pending: int) -> MessageCounters:
        return MessageCounters(
            routed=self.routed,
            recorded=recorded,
            dropped=self.dropped(),
            undeliverable=self.undeliverable,
            redelivered=self.redelivered,
            pending=pending,
            unrecorded=self.unrecorded,
        )


@dataclass
class Waiting:
    env: Envelope
    body: bytes
    expires: float


@dataclass
class Unacked:
    env: Envelope
    body: bytes
    target: str
    delivered: bool = False
    deadline: float = 0.0

    def next_attempt(self) -> bytes:
        """The body to send again, with the attempt number raised."""
        self.env = self.env.again()
        self.body = self.env.encode()
        return self.body


class Deliveries:
    def __init__(self, ack_timeout: float) -> None:
        self.ack_timeout = ack_timeout
        self._unacked: dict[str, Unacked] = {}
        self._by_target: dict[str, dict[str, None]] = {}
        self.waiting: dict[str, list[Waiting]] = {}
        """Messages for a recipient (a name or ``role:ROLE``) not connected yet, by recipient."""

    def __len__(self) -> int:
        return len(self._unacked)

    def pending(self) -> int:
        """Messages not acked or not delivered yet."""
        return len(self._unacked) + sum(len(w) for w in self.waiting.values())

    def track(self, env: Envelope, body: bytes, target: str) -> Unacked:
        item = Unacked(env, body, target)
        self._unacked[env.id] = item
        self._by_target.setdefault(target, {})[env.id] = None
        return item

    def delivered(self, item: Unacked, now: float) -> None:
        item.delivered = True
        item.deadline = now + self.ack_timeout

    def ack(self, message_id: str, by: str | None = None) -> bool:
        """Forget a message; ``by`` (a reply's sender) must be its target."""
        item = self._unacked.get(message_id)
        if item is None or (by is not None and by != item.target):
            return False
        del self._unacked[message_id]
        self._by_target[item.target].pop(message_id, None)
        return True

    def held(self, target: str, ids: list[str], total: int, now: float) -> None:
        """The target says it holds these: they are not lost, so push their deadlines."""
        if total > len(ids):
            ids = list(self._by_target.get(target, ()))
        for message_id in ids:
            item = self._unacked.get(message_id)
            if item is not None and item.target == target:
                item.deadline = now + self.ack_timeout

    def for_target(self, target: str) -> list[Unacked]:
        return [self._unacked[i] for i in self._by_target.get(target, ())]

    def load(self, target: str) -> int:
        return len(self._by_target.get(target, ()))

    def all(self) -> list[Unacked]:
        return list(self._unacked.values())

    def overdue(self, now: float) -> list[Unacked]:
        return [u for u in self._unacked.values() if u.delivered and u.deadline <= now]

    def undelivered(self) -> list[Unacked]:
        return [u for u in self._unacked.values() if not u.delivered]
