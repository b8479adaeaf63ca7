"""What the orchestrator's own threads send, and their request to stop.

The scheduler's steps, the services' replies (some made on worker threads) and
the supervisor's events are posted here; the broker's loop takes them at its
next turn, journals and records them like any message, and routes them. The
outbox exists before the broker and the services, so both are given it: neither
needs the other to send.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from shoal.mailbox.envelope import ORCHESTRATOR, PUBLISH, Envelope
from shoal.messages.base import Payload


class Outbox:
    def __init__(self, wake: Callable[[], None]) -> None:
        """``wake``: starts a turn of the broker's loop (thread-safe)."""
        self.queue: queue.SimpleQueue[Envelope] = queue.SimpleQueue()
        self._wake = wake
        self.draining_until: float | None = None
        """Set by :meth:`stop`: the broker stops routing once the actors are gone or then."""

    def post(
        self,
        payload: Payload,
        recipient: str,
        *,
        reply_to: str | None = None,
        task_id: str | None = None,
    ) -> Envelope:
        """Send a message from the orchestrator itself (thread-safe)."""
        env = Envelope.of(
            payload, sender=ORCHESTRATOR, recipient=recipient, reply_to=reply_to, task_id=task_id
        )
        self.queue.put(env)
        self._wake()
        return env

    def publish(self, payload: Payload) -> None:
        """Put ``payload`` on the event bus."""
        self.post(payload, PUBLISH)

    def stop(self, drain: float = 10.0) -> None:
        """Stop after the supervisor has stopped the actors (at most ``drain`` seconds)."""
        self.draining_until = time.monotonic() + drain
        self._wake()
