"""Messages of chat sessions: turns, their streamed events, questions to a person, transcripts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from shoal.messages.base import Model, Payload, message
from shoal.messages.tasks import ModelChoice, PermissionModeName, PermissionRule, Usage

__all__ = [
    "Attachment",
    "ChatAnswer",
    "ChatAsk",
    "ChatCancel",
    "ChatCompact",
    "ChatCompactResult",
    "ChatDelta",
    "ChatStarted",
    "ChatTool",
    "ChatTurn",
    "ChatTurnResult",
    "SessionAppend",
    "SessionClear",
    "SessionInfo",
    "SessionLine",
    "SessionMessage",
    "SessionOpen",
]


@message("session.open")
class SessionOpen(Payload, kw_only=True):
    """Open a chat session: by id (or unique prefix), by name, the last one in ``cwd``, or new."""

    cwd: str
    session_id: (
        Annotated[str, Meta(min_length=4, max_length=64, pattern=r"^[0-9A-Za-z]+$")] | None
    ) = None
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    continue_last: bool = False
    """The session used last in ``cwd`` (``shoal chat --continue``)."""
    model: str | None = None
    permission_mode: PermissionModeName = "accept-edits"
    recent: Annotated[int, Meta(ge=0, le=200)] = 6
    """How many of the latest user and assistant messages to send back (to show on resume)."""


class SessionLine(Model, kw_only=True):
    """One message of a transcript as a person reads it."""

    role: str
    content: str


@message("session.info")
class SessionInfo(Payload, kw_only=True):
    id: str
    name: str | None
    cwd: str
    created: bool
    """True when this request made the session."""
    turns: int
    tokens: int
    cost_usd: float
    model: str | None = None
    permission_mode: str | None = None
    recent: list[SessionLine] = msgspec.field(default_factory=list)


class SessionMessage(Model, kw_only=True):
    """One row of a transcript: a chat message, or a marker (``summary``, ``clear``,
    ``rewind``: the conversation goes back to before turn ``meta["turn"]``)."""

    role: Literal["user", "assistant", "tool", "summary", "clear", "rewind"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    meta: dict[str, Any] = msgspec.field(default_factory=dict)
    """``files`` (paths attached to a user message), ``through`` (last seq a summary covers),
    ``interrupted`` (the turn was stopped by the user), ``changes`` (on a user message: the
    snapshots before and after the files its turn changed, and those paths)."""


@message("session.append")
class SessionAppend(Payload, kw_only=True):
    """Record a turn's messages (the orchestrator numbers them) and what the turn cost."""

    session_id: str
    messages: list[SessionMessage]
    new_turn: bool = True
    model: str | None = None
    permission_mode: str | None = None
    usage: Usage = msgspec.field(default_factory=Usage)


@message("session.clear")
class SessionClear(Payload, kw_only=True):
    """Start a fresh conversation in the session (the transcript keeps the old one)."""

    session_id: str


class Attachment(Model, kw_only=True):
    path: str
    content: str


@message("chat.turn")
class ChatTurn(Payload, kw_only=True):
    """One user message for the chat role: runs the tool loop and replies ``chat.turn.result``."""

    session_id: str
    turn_id: Annotated[str, Meta(min_length=1, max_length=64)]
    text: Annotated[str, Meta(min_length=1, max_length=1_000_000)]
    attachments: list[Attachment] = msgspec.field(default_factory=list)
    cwd: str
    model: ModelChoice
    small_model: ModelChoice | None = None
    """Writes the summaries of compaction; without one they are a deterministic digest."""
    permission_mode: PermissionModeName = "accept-edits"
    permission_rules: list[PermissionRule] = msgspec.field(default_factory=list)
    """The allow/deny/ask rules from config, as ``shoal run`` obeys them."""
    context_window: Annotated[int, Meta(ge=256)] | None = None
    """Tokens the model can take; None: litellm's model info, else a default."""
    max_steps: Annotated[int, Meta(ge=1, le=500)] = 40
    can_ask: bool = False
    """A person is there to approve calls that ask (``chat.ask``); else they are refused."""


@message("chat.compact")
class ChatCompact(Payload, kw_only=True):
    """Summarize the older part of a session's conversation now (``/compact``)."""

    session_id: str
    cwd: str
    model: ModelChoice
    small_model: ModelChoice | None = None
    keep_turns: Annotated[int, Meta(ge=0, le=50)] = 1


@message("chat.compact.result")
class ChatCompactResult(Payload, kw_only=True):
    summarized: int
    """Messages folded into the summary (0: nothing old enough to fold)."""
    tokens_before: int
    tokens_after: int
    summary: str = ""


@message("chat.cancel")
class ChatCancel(Payload, kw_only=True):
    turn_id: str


@message("chat.started")
class ChatStarted(Payload, kw_only=True):
    """Published when an actor takes a turn, so the client knows whom to cancel."""

    session_id: str
    turn_id: str


@message("chat.delta")
class ChatDelta(Payload, kw_only=True):
    """Published: a piece of the streamed answer."""

    session_id: str
    turn_id: str
    text: str
    step: int = 0
    """The model call of the turn the text belongs to (a new one after tool calls)."""


@message("chat.tool")
class ChatTool(Payload, kw_only=True):
    """Published: one tool call of a turn, folded to one line for the chat."""

    session_id: str
    turn_id: str
    name: str
    detail: str = ""
    ok: bool = True
    denied: bool = False
    error: str = ""
    """The first line of what went wrong, when the call failed."""
    preview: str = ""
    """A few lines to show under it: an edit's short diff, a command's output tail."""


@message("chat.turn.result")
class ChatTurnResult(Payload, kw_only=True):
    text: str = ""
    """The final answer of the turn."""
    usage: Usage = msgspec.field(default_factory=Usage)
    steps: int = 0
    tool_calls: int = 0
    cancelled: bool = False
    error: str | None = None
    context_tokens: int = 0
    """Estimated tokens of the conversation sent with the last model call."""
    context_window: int = 0
    compacted: bool = False
    """The older turns were summarized before this turn (the context was filling up)."""


@message("chat.ask")
class ChatAsk(Payload, kw_only=True):
    """Published: a tool call needs the person's approval (answered by ``chat.answer``)."""

    session_id: str
    turn_id: str
    ask_id: str
    tool: str
    subject: str = ""
    summary: str = ""


@message("chat.answer")
class ChatAnswer(Payload, kw_only=True):
    ask_id: str
    allow: bool
    always: bool = False
    """Allow this tool without asking for the rest of the session."""
