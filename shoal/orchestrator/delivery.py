"""Delivery bookkeeping: which messages are unacked, and where they must go again.

A *tracked* message (one addressed to a supervised actor) stays here until
its recipient acks it (an ACK frame, or a reply whose ``reply_to`` is its id).
It is sent again when the recipient comes back as a new instance, when it
could not be delivered, or when it was delivered ``ack_timeout`` ago and the
recipient's heartbeats do not say it holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.mailbox.envelope import Envelope


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

    def __len__(self) -> int:
        return len(self._unacked)

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
