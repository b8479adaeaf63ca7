"""Messages addressed to the orchestrator, routed by kind to the service that answers it.

Each service lists the payload classes it answers (``handles``) and has a handler
named after each kind, as actors do (``task.submit`` -> ``on_task_submit(env,
payload)``). The table is built once, at start-up, and checked there: a kind two
services claim, a listed kind without its handler, or a handler for a kind that is
not listed stops the orchestrator from starting.

Handlers run on the broker's thread; one that takes time hands its work to
:class:`~shoal.orchestrator.services.workers.Workers` and returns None (the worker
replies). A returned payload is the reply. A handler's ``LookupError`` or
``ValueError`` is a ``refused`` error reply; anything else is the broker's
``handler_failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

from shoal.mailbox.envelope import Envelope, UnknownKind
from shoal.messages.actors import ErrorReply
from shoal.messages.base import InvalidMessage, Payload

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, Any], Payload | None]


class Service(Protocol):
    """One job of the orchestrator's; it may also have ``tick(now)``, ``keeps_alive()``,
    and ``owns(reply_to)`` with ``on_reply(env)`` for replies to requests it sent."""

    handles: ClassVar[tuple[type[Payload], ...]]


class Post(Protocol):
    def __call__(
        self,
        payload: Payload,
        recipient: str,
        *,
        reply_to: str | None = None,
        task_id: str | None = None,
    ) -> Envelope: ...


def handler_name(kind: str) -> str:
    return "on_" + kind.replace(".", "_")


class Router:
    def __init__(self, services: Sequence[Service], post: Post) -> None:
        self._post = post
        self.handlers: dict[str, Handler] = {}
        owner: dict[str, str] = {}
        for service in services:
            name = type(service).__name__
            kinds = [cls.kind for cls in service.handles]
            for kind in kinds:
                if kind in owner:
                    raise ValueError(f"{kind} is handled by both {owner[kind]} and {name}")
                handler = getattr(service, handler_name(kind), None)
                if handler is None:
                    raise ValueError(f"{name} lists {kind} but has no {handler_name(kind)}")
                owner[kind], self.handlers[kind] = name, handler
            unlisted = {m for m in dir(service) if m.startswith("on_") and m != "on_reply"}
            unlisted -= {handler_name(k) for k in kinds}
            if unlisted:
                raise ValueError(f"{name} has handlers for kinds it does not list: {unlisted}")
        self._askers = [s for s in services if hasattr(s, "owns")]
        self._tickers = [s.tick for s in services if hasattr(s, "tick")]
        self._keepers = [s.keeps_alive for s in services if hasattr(s, "keeps_alive")]

    def handle(self, env: Envelope) -> None:
        """Answer one message (on the broker's thread)."""
        if env.reply_to is not None:
            for asker in self._askers:
                if asker.owns(env.reply_to):  # type: ignore[attr-defined]
                    asker.on_reply(env)  # type: ignore[attr-defined]  # e.g. a task's step
                    return
        handler = self.handlers.get(env.kind)
        if handler is None and (env.reply_to is not None or env.kind == ErrorReply.kind):
            log.warning("dropped unexpected %s from %s", env.kind, env.sender)
            return  # never answer an answer with an error (see actors/runtime.py)
        if handler is None:
            message = f"the orchestrator does not handle {env.kind}"
            self._reply(env, ErrorReply(code="no_handler", message=message))
            return
        try:
            payload = env.parse_payload()
        except (InvalidMessage, UnknownKind) as exc:
            self._reply(env, ErrorReply(code="bad_payload", message=str(exc).splitlines()[0]))
            return
        try:
            reply = handler(env, payload)
        except (LookupError, ValueError) as exc:  # an unknown role, a task not running...
            reply = ErrorReply(code="refused", message=str(exc).strip("'\""))
        if reply is not None:
            self._reply(env, reply)

    def tick(self, now: float) -> None:
        for tick in self._tickers:
            tick(now)

    def keeps_alive(self) -> bool:
        return any(keeps() for keeps in self._keepers)

    def _reply(self, env: Envelope, payload: Payload) -> None:
        self._post(payload, env.sender, reply_to=env.id, task_id=env.task_id)
