"""The chat's connection to the orchestrator: a session, its turns, and their events.

Thin, like every client: the conversation lives in the transcript and the
work in the ``chat`` actor. A turn is sent to ``role:chat``; its text and tool
calls arrive as events on the bus (``chat.delta``, ``chat.tool``), its end as
the ``chat.turn.result``. Ctrl-C while a turn runs sends ``chat.cancel`` to the actor
that took it (named by its ``chat.started`` event).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shoal.ids import new_id
from shoal.mailbox.envelope import ORCHESTRATOR, ROLE_PREFIX, Envelope
from shoal.messages.actors import ErrorReply, OrchestratorStatusResult
from shoal.messages.base import Payload, from_dict
from shoal.messages.chat import (
    Attachment,
    ChatAnswer,
    ChatAsk,
    ChatCancel,
    ChatCompact,
    ChatCompactResult,
    ChatDelta,
    ChatStarted,
    ChatTool,
    ChatTurn,
    ChatTurnResult,
    SessionClear,
    SessionInfo,
    SessionOpen,
)
from shoal.messages.tasks import ModelChoice, PermissionRule

if TYPE_CHECKING:
    from shoal.paths import Home

# After Ctrl-C, how long to wait for the actor to stop the turn before leaving it behind.
CANCEL_GRACE = 5.0


class TurnView(Protocol):
    """Where a turn's events are shown (a rich terminal, or plain text)."""

    def delta(self, event: ChatDelta) -> None: ...

    def tool(self, event: ChatTool) -> None: ...

    def note(self, text: str) -> None: ...

    def ask(self, event: ChatAsk) -> tuple[bool, bool]:
        """Whether the person allows the call, and whether always (for the session)."""
        ...


@dataclass
class ChatSettings:
    """What every turn carries: where, with which model, under which permissions."""

    cwd: str
    model: ModelChoice
    small_model: ModelChoice | None = None
    permission_mode: str = "accept-edits"
    permission_rules: list[PermissionRule] = field(default_factory=list)
    context_window: int | None = None
    can_ask: bool = False
    """A person answers approval questions (a terminal chat)."""


class ChatClient:
    def __init__(self, home: Home, settings: ChatSettings) -> None:
        from shoal.client import Client
        from shoal.mailbox.client import client_name

        self.home = home
        self.settings = settings
        # Subscribed before the first turn, so no event of it is missed.
        self.channel = Client(home).channel(["chat."], client_name("chat"))
        self.session: SessionInfo | None = None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def session_id(self) -> str:
        assert self.session is not None, "no session open"
        return self.session.id

    def request(self, recipient: str, payload: Payload, timeout: float = 30.0) -> Payload:
        return self.channel.request(payload, to=recipient, timeout=timeout)

    def status(self) -> OrchestratorStatusResult:
        from shoal.messages.actors import OrchestratorStatus

        reply = self.request(ORCHESTRATOR, OrchestratorStatus(), timeout=10.0)
        assert isinstance(reply, OrchestratorStatusResult)
        return reply

    def open(
        self,
        *,
        session_id: str | None = None,
        name: str | None = None,
        continue_last: bool = False,
    ) -> SessionInfo:
        s = self.settings
        info = self.request(
            ORCHESTRATOR,
            SessionOpen(
                cwd=s.cwd,
                session_id=session_id,
                name=name,
                continue_last=continue_last,
                model=s.model.model,
                permission_mode=s.permission_mode,  # type: ignore[arg-type]
            ),
        )
        assert isinstance(info, SessionInfo)
        self.session = info
        return info

    def clear(self) -> None:
        self.request(ORCHESTRATOR, SessionClear(session_id=self.session_id))

    def compact(self, keep_turns: int = 1) -> ChatCompactResult:
        s = self.settings
        reply = self.request(
            ROLE_PREFIX + "chat",
            ChatCompact(
                session_id=self.session_id,
                cwd=s.cwd,
                model=s.model,
                small_model=s.small_model,
                keep_turns=keep_turns,
            ),
            timeout=300,
        )
        assert isinstance(reply, ChatCompactResult)
        return reply

    def turn(
        self, text: str, attachments: list[Attachment], view: TurnView
    ) -> ChatTurnResult | None:
        """Run one turn, showing its events; None if it failed or was left behind."""
        s = self.settings
        turn_id = new_id()
        sent = self.channel.send(
            ChatTurn(
                session_id=self.session_id,
                turn_id=turn_id,
                text=text,
                attachments=attachments,
                cwd=s.cwd,
                model=s.model,
                small_model=s.small_model,
                permission_mode=s.permission_mode,  # type: ignore[arg-type]
                permission_rules=s.permission_rules,
                context_window=s.context_window,
                can_ask=s.can_ask,
            ),
            to=ROLE_PREFIX + "chat",
        )
        actor: str | None = None
        cancel_at: float | None = None
        while True:
            try:
                if cancel_at is not None and time.monotonic() - cancel_at > CANCEL_GRACE:
                    view.note("the turn did not stop in time; it finishes in the background")
                    return None
                reply, event = self.channel.receive(0.05)
                if event is not None and event.payload.get("turn_id") == turn_id:
                    actor = self._event(event, actor, cancel_at is not None, view)
                if reply is not None and reply.reply_to == sent.id:
                    self._drain(turn_id, view)
                    return self._result(reply, view)
            except KeyboardInterrupt:
                if cancel_at is not None:
                    view.note("left the turn behind; it finishes in the background")
                    return None
                cancel_at = time.monotonic()
                view.note("interrupting… (Ctrl-C again to stop waiting)")
                if actor is not None:
                    self.channel.send(ChatCancel(turn_id=turn_id), to=actor)

    def _event(
        self, event: Envelope, actor: str | None, cancelling: bool, view: TurnView
    ) -> str | None:
        """One event of the turn shown or answered; the actor running the turn once it said."""
        if event.kind == ChatStarted.kind:
            if cancelling:
                self.channel.send(ChatCancel(turn_id=event.payload["turn_id"]), to=event.sender)
            return event.sender
        if event.kind == ChatAsk.kind:
            ask = from_dict(ChatAsk, event.payload)
            allow, always = view.ask(ask)
            answer = ChatAnswer(ask_id=ask.ask_id, allow=allow, always=always)
            self.channel.send(answer, to=event.sender)
        else:
            self._show(event, view)
        return actor

    def _drain(self, turn_id: str, view: TurnView) -> None:
        """Events of the turn still on their way (they travel beside the reply, not before it)."""
        while (event := self.channel.event(timeout=0.05)) is not None:
            if event.payload.get("turn_id") == turn_id and event.kind != ChatStarted.kind:
                self._show(event, view)

    @staticmethod
    def _show(event: Envelope, view: TurnView) -> None:
        payload: Any = event.parse_payload()
        if isinstance(payload, ChatDelta):
            view.delta(payload)
        elif isinstance(payload, ChatTool):
            view.tool(payload)

    @staticmethod
    def _result(reply: Envelope, view: TurnView) -> ChatTurnResult | None:
        if reply.kind == ErrorReply.kind:
            view.note(f"error: {from_dict(ErrorReply, reply.payload).message}")
            return None
        return from_dict(ChatTurnResult, reply.payload)
