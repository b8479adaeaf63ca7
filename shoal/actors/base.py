"""The actor base: typed handlers chosen by message kind.

A handler's name is decided by the kind it answers (textual's convention):
``echo.request`` is handled by ``on_echo_request(self, msg, payload)``, where
``payload`` is already validated against the kind's model. Returning a
payload replies to the sender (which also acks the request); returning None
acks it; returning :data:`KEEP` holds the message unacked until the actor calls
``ctx.release(msg.id)``: if the process dies before that, the broker hands the
message to the next instance. Handlers run on a worker thread, so they may block
(a model call); ``@inline`` marks a fast handler that runs on the mailbox loop itself.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from shoal.mailbox.envelope import Envelope
from shoal.messages.base import Payload

if TYPE_CHECKING:
    from shoal.mailbox.curve import MailboxAddress
    from shoal.paths import Home

F = TypeVar("F", bound=Callable[..., Any])


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()
"""A handler's answer meaning: not done with this message yet (see ``ActorContext.release``)."""


def inline(handler: F) -> F:
    """Run this handler on the mailbox loop: it must be quick and never block."""
    handler.__shoal_inline__ = True  # type: ignore[attr-defined]
    return handler


def is_inline(handler: Callable[..., Any]) -> bool:
    return getattr(handler, "__shoal_inline__", False)


def aside(handler: F) -> F:
    """Run this handler on a thread of its own, beside the actor's work: short blocking
    work that must not wait behind a long handler (it is not counted as the actor's work)."""
    handler.__shoal_aside__ = True  # type: ignore[attr-defined]
    return handler


def is_aside(handler: Callable[..., Any]) -> bool:
    return getattr(handler, "__shoal_aside__", False)


class ActorContext:
    """What an actor may use of its process: its identity, home, and outgoing mail."""

    def __init__(
        self,
        name: str,
        role: str,
        home: Home,
        post: Callable[[Envelope], None],
        mailbox: MailboxAddress | None = None,
        release: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.name = name
        self.role = role
        self.home = home
        self.mailbox = mailbox
        self.log = logging.getLogger(f"shoal.actor.{name}")
        self._post = post
        self._release = release

    def send(
        self,
        recipient: str,
        payload: Payload,
        *,
        task_id: str | None = None,
        reply_to: str | None = None,
    ) -> Envelope:
        """Send a message; safe to call from handler threads (never blocks)."""
        env = Envelope.of(
            payload, sender=self.name, recipient=recipient, task_id=task_id, reply_to=reply_to
        )
        self._post(env)
        return env

    def release(self, message_ids: list[str]) -> None:
        """Ack messages a handler kept (it answered KEEP); safe from any thread."""
        if message_ids and self._release is not None:
            self._release(list(message_ids))

    def post(self, env: Envelope) -> None:
        """Send an envelope built by the caller (who needs its id before a reply can arrive)."""
        self._post(env)

    def publish(self, payload: Payload, *, task_id: str | None = None) -> Envelope:
        return self.send("*", payload, task_id=task_id)

    def ask(
        self, payload: Payload, *, timeout: float = 10.0, task_id: str | None = None
    ) -> Payload:
        """A request/reply to the orchestrator on a connection of its own (from handler threads)."""
        from shoal.mailbox.client import MailboxClient
        from shoal.mailbox.envelope import ORCHESTRATOR

        name = f"{self.name}.ask-{secrets.token_hex(3)}"
        endpoint = self.mailbox.endpoint if self.mailbox else self.home.mailbox_endpoint
        curve = self.mailbox.curve if self.mailbox else None
        with MailboxClient(endpoint, name, curve) as client:
            return client.request(
                ORCHESTRATOR, payload, timeout=timeout, task_id=task_id
            ).parse_payload()


class Actor:
    """Subclass, set ``role``, and add ``on_<kind>`` handlers."""

    role: ClassVar[str]
    concurrency: ClassVar[int] = 1
    """How many handlers may run at once on worker threads."""

    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx

    def setup(self) -> None:
        """Called once in the actor process before the first message."""

    def teardown(self) -> None:
        """Called once when the process stops gracefully."""

    def handler_for(self, kind: str) -> Callable[[Envelope, Payload], Payload | None] | None:
        return getattr(self, "on_" + kind.replace(".", "_"), None)
