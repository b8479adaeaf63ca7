"""The chat role: one turn of an interactive session per ``chat.turn``.

A turn rebuilds the session's conversation from its transcript (the
orchestrator's rows), compacts it first when it would fill the model's
context window, then runs the tool loop with the workspace tools and a
streaming model call: text is published as ``chat.delta`` while it arrives,
each tool call as one ``chat.tool``. The turn's messages are recorded with
``session.append`` before the ``chat.turn.result``. ``chat.cancel`` stops a turn
between streamed chunks and between tool calls; what it had done so far is
kept in the transcript, marked as interrupted.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.actors import conversation
from shoal.actors.base import Actor, inline
from shoal.actors.conversation import History
from shoal.actors.llm import clip, model_config, usage_of
from shoal.actors.turn_files import TurnFiles
from shoal.mailbox.envelope import Envelope
from shoal.messages.base import replace, to_dict
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
    SessionAppend,
    SessionMessage,
)
from shoal.messages.store import StoreQuery, StoreQueryResult
from shoal.messages.tasks import ModelChoice, Usage

if TYPE_CHECKING:
    from shoal.llm.client import Completion, ToolCall
    from shoal.tools import PermissionRequest, Toolbox, ToolResult

SYSTEM = """You are shoal, a coding agent working with a developer in a chat, in the
repository at {cwd}. Use your tools to read, search, edit and run things when a request
needs it, and answer directly when it does not. Read a file before editing it and keep
changes minimal. Answer concisely, in Markdown."""

INTERRUPTED = "[interrupted by the user]"
# Seconds between published pieces of a stream: fewer, larger messages than one per token.
_DELTA_EVERY = 0.05
# How long recording a turn may take before the turn reports it as not recorded.
_RECORD_TIMEOUT = 30.0
# How long a tool call waits for a person's approval before it counts as declined.
_ASK_TIMEOUT = 600.0


class _Session:
    """What an actor keeps of a session between turns: one turn at a time, and its tools."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.toolbox: Toolbox | None = None
        self.cwd: str | None = None
        self.always: set[str] = set()
        """Tools the person allowed for the rest of the session."""


class ChatActor(Actor):
    role = "chat"
    concurrency = 4
    """Sessions chatting at once; turns of one session wait for each other."""

    def setup(self) -> None:
        self.cancelled: set[str] = set()
        self._sessions: dict[str, _Session] = {}
        self._guard = threading.Lock()
        self.questions: dict[str, threading.Event] = {}
        self.answers: dict[str, ChatAnswer] = {}

    @inline
    def on_chat_answer(self, msg: Envelope, payload: ChatAnswer) -> None:
        question = self.questions.get(payload.ask_id)
        if question is not None:
            self.answers[payload.ask_id] = payload
            question.set()

    @inline
    def on_chat_cancel(self, msg: Envelope, payload: ChatCancel) -> None:
        if len(self.cancelled) > 10_000:  # cancels of turns that had already ended
            self.cancelled.clear()
        self.cancelled.add(payload.turn_id)

    def on_chat_turn(self, msg: Envelope, payload: ChatTurn) -> ChatTurnResult:
        session = self._session(payload.session_id)
        with session.lock:
            try:
                return Turn(self, session, payload).run()
            finally:
                self.cancelled.discard(payload.turn_id)

    def on_chat_compact(self, msg: Envelope, payload: ChatCompact) -> ChatCompactResult:
        session = self._session(payload.session_id)
        with session.lock:
            hist = self.load(payload.session_id)
            window = conversation.context_window(payload.model.model)
            before = conversation.estimate_tokens(_messages(payload.cwd, hist, []))
            hist, folded, summary = self.compact(
                payload.session_id,
                hist,
                payload.small_model,
                keep_turns=payload.keep_turns,
                window=window,
            )
            after = conversation.estimate_tokens(_messages(payload.cwd, hist, []))
        return ChatCompactResult(
            summarized=folded, tokens_before=before, tokens_after=after, summary=summary
        )

    # --- shared by turns -----------------------------------------------------

    def _session(self, session_id: str) -> _Session:
        with self._guard:
            return self._sessions.setdefault(session_id, _Session())

    def load(self, session_id: str) -> History:
        reply = self.ctx.ask(
            StoreQuery(name="session.live", params={"session_id": session_id}),
            timeout=_RECORD_TIMEOUT,
        )
        assert isinstance(reply, StoreQueryResult)
        return conversation.history(conversation.records(reply))

    def record(self, append: SessionAppend) -> None:
        self.ctx.ask(append, timeout=_RECORD_TIMEOUT)

    def compact(
        self,
        session_id: str,
        hist: History,
        small: ModelChoice | None,
        *,
        window: int,
        keep_turns: int | None = None,
    ) -> tuple[History, int, str]:
        """Fold the older turns into the summary; (new history, messages folded, summary)."""
        from shoal.llm.errors import ModelError

        old, kept = conversation.split(
            hist.live, keep_turns=keep_turns, keep_tokens=int(window * conversation.KEEP_SHARE)
        )
        if not old:
            return hist, 0, hist.summary or ""
        limit = max(2_000, int(window * 0.15) * 4)  # characters: about 15% of the window
        summary, usage = "", Usage()
        if small is not None:
            from shoal.llm.client import complete

            try:
                done = complete(
                    model_config(small, "small"),
                    conversation.summary_request(hist.summary, old, limit * 4),
                )
                summary, usage = done.content.strip()[:limit], usage_of(done)
            except ModelError as exc:
                self.ctx.log.warning("summary by %s failed, using a digest: %s", small.model, exc)
        if not summary:
            summary = conversation.digest(hist.summary, old, limit)
        self.record(
            SessionAppend(
                session_id=session_id,
                messages=[
                    SessionMessage(
                        role="summary",
                        content=summary,
                        meta={"through": old[-1].seq, "messages": len(old)},
                    )
                ],
                new_turn=False,
                model=small.model if small is not None and usage.calls else None,
                usage=usage,
            )
        )
        return History(summary, kept), len(old), summary


class Turn:
    """One user message and everything the model does about it."""

    def __init__(self, actor: ChatActor, session: _Session, request: ChatTurn) -> None:
        self.actor = actor
        self.session = session
        self.request = request
        self.usage = Usage()
        self.new: list[SessionMessage] = []
        self.calls = 0
        self._pieces: list[str] = []
        self._streamed = ""
        self._last_publish = 0.0
        self._step = -1  # the model call of this turn: 0, 1, ...
        self._tools: list[dict[str, Any]] = []
        self.window = 0
        self.context_tokens = 0
        self.files = TurnFiles(request.cwd, request.session_id)
        """What the turn's calls change, kept for ``/rewind``."""

    # --- the turn ----------------------------------------------------------------

    def run(self) -> ChatTurnResult:
        from shoal.agent import Agent, BudgetReached, Cancelled, Finished, ModelError

        r = self.request
        self.actor.ctx.publish(ChatStarted(session_id=r.session_id, turn_id=r.turn_id))
        toolbox = self._toolbox()
        self.window = conversation.context_window(r.model.model, r.context_window)
        self.new.append(_user_message(r.text, r.attachments))
        messages, compacted = self._conversation(toolbox)
        agent = Agent(
            self, toolbox, model_config(r.model, "executor"), max_turns=r.max_steps, stream=True
        )
        error, cancelled = None, False
        try:
            agent.run(messages)
        except (Finished, BudgetReached):
            pass
        except Cancelled:
            cancelled = True
            self._flush()
        except ModelError as exc:
            error = str(exc)
        self.usage, self.calls = agent.usage, agent.calls
        text = self._interrupted() if cancelled else agent.text
        if error is None or len(self.new) > 1:
            error = self._record() or error
        return ChatTurnResult(
            text=text,
            usage=self.usage,
            steps=sum(1 for m in self.new if m.role == "assistant"),
            tool_calls=self.calls,
            cancelled=cancelled,
            error=error,
            context_tokens=self.context_tokens,
            context_window=self.window,
            compacted=compacted,
        )

    def _conversation(self, toolbox: Toolbox) -> tuple[list[dict[str, Any]], bool]:
        """The session so far plus the new message, compacted first if it would not fit."""
        r = self.request
        hist = self.actor.load(r.session_id)
        messages = _messages(r.cwd, hist, self.new)
        self._tools = toolbox.schemas()
        if (
            conversation.estimate_tokens(messages, self._tools)
            <= conversation.COMPACT_AT * self.window
        ):
            return messages, False
        hist, folded, _ = self.actor.compact(r.session_id, hist, r.small_model, window=self.window)
        return _messages(r.cwd, hist, self.new), folded > 0

    # --- the agent's host -----------------------------------------------------------

    def turn_starts(self, messages: list[dict[str, Any]]) -> None:
        self.check()
        self._step += 1
        self._streamed = ""
        self.context_tokens = conversation.estimate_tokens(messages, self._tools)

    def check(self) -> None:
        from shoal.agent import Cancelled

        if self.request.turn_id in self.actor.cancelled:
            raise Cancelled

    def on_delta(self, text: str) -> None:
        self.check()
        self._pieces.append(text)
        self._streamed += text
        if time.monotonic() - self._last_publish >= _DELTA_EVERY:
            self._flush()

    def on_completion(self, completion: Completion, message: dict[str, Any]) -> None:
        self._flush()
        self.new.append(
            SessionMessage(
                role="assistant",
                content=completion.content or None,
                tool_calls=message.get("tool_calls"),
            )
        )
        self._streamed = ""

    def on_tool(self, call: ToolCall, result: ToolResult, message: dict[str, Any]) -> None:
        from shoal.tools.preview import preview

        r, output = self.request, result.output
        self.actor.ctx.publish(
            ChatTool(
                session_id=r.session_id,
                turn_id=r.turn_id,
                name=call.name,
                detail=_subject(call.arguments),
                ok=result.ok,
                denied=result.denied,
                error=""
                if result.ok
                else clip(output.strip().splitlines()[0] if output.strip() else "", 300),
                preview=""
                if result.denied
                else preview(call.name, call.arguments, result.ok, output),
            )
        )
        self.new.append(SessionMessage(role="tool", content=output, tool_call_id=call.id))

    def _toolbox(self) -> Toolbox:
        from shoal.tools import Permissions, Toolbox, Workspace
        from shoal.tools.permissions import Rule
        from shoal.tools.web import web_fetch

        r, s = self.request, self.session
        if s.toolbox is None or s.cwd != r.cwd:
            # Kept between turns: a file read in one turn may be edited in the next.
            outputs = self.actor.ctx.home.root / "outputs"
            outputs.mkdir(mode=0o700, exist_ok=True)
            s.toolbox, s.cwd = Toolbox(Workspace([Path(r.cwd)], outputs)), r.cwd
            s.toolbox.add([web_fetch(lambda box=s.toolbox: box.permissions)])
        rules = [Rule.model_validate(to_dict(rule)) for rule in r.permission_rules]
        s.toolbox.permissions = Permissions(mode=r.permission_mode, rules=rules)
        s.toolbox.asker = self._ask if r.can_ask else None
        s.toolbox.watch = self.files.watch
        return s.toolbox

    def _ask(self, request: PermissionRequest) -> bool:
        """Ask the person in the chat (``chat.ask``) and wait for the answer or a cancel."""
        from shoal.ids import new_id
        from shoal.tools.permissions import covered_by_always

        if covered_by_always(request, self.session.always):
            return True
        r, actor = self.request, self.actor
        ask_id = new_id()
        question = actor.questions[ask_id] = threading.Event()
        try:
            actor.ctx.publish(
                ChatAsk(
                    session_id=r.session_id,
                    turn_id=r.turn_id,
                    ask_id=ask_id,
                    tool=request.tool,
                    subject=clip(request.subject, 300),
                    summary=request.summary,
                )
            )
            deadline = time.monotonic() + _ASK_TIMEOUT
            while not question.wait(0.1):
                if r.turn_id in actor.cancelled or time.monotonic() > deadline:
                    return False
            answer = actor.answers.pop(ask_id)
        finally:
            actor.questions.pop(ask_id, None)
        if answer.allow and answer.always:
            self.session.always.add(request.tool)
        return answer.allow

    def _flush(self) -> None:
        if not self._pieces:
            return
        r = self.request
        self.actor.ctx.publish(
            ChatDelta(
                session_id=r.session_id,
                turn_id=r.turn_id,
                text="".join(self._pieces),
                step=self._step,
            )
        )
        self._pieces = []
        self._last_publish = time.monotonic()

    def _interrupted(self) -> str:
        """Close the turn's messages so the conversation stays valid, and say it was stopped."""
        last = self.new[-1]
        if last.role == "assistant" and last.tool_calls:
            answered = {m.tool_call_id for m in self.new if m.role == "tool"}
            for call in last.tool_calls:
                if call.get("id") not in answered:
                    self.new.append(
                        SessionMessage(
                            role="tool",
                            content="not run: the user interrupted the turn",
                            tool_call_id=call.get("id"),
                        )
                    )
        partial = self._streamed.strip()
        text = f"{partial}\n\n{INTERRUPTED}" if partial else INTERRUPTED
        self.new.append(SessionMessage(role="assistant", content=text, meta={"interrupted": True}))
        return text

    def _record(self) -> str | None:
        from shoal.mailbox.errors import MailboxError

        r = self.request
        changes = self.files.finish()
        if changes is not None:  # with the turn's user message, for /rewind
            first = self.new[0]
            self.new[0] = replace(first, meta={**first.meta, "changes": changes})
        try:
            self.actor.record(
                SessionAppend(
                    session_id=r.session_id,
                    messages=self.new,
                    model=r.model.model,
                    permission_mode=r.permission_mode,
                    usage=self.usage,
                )
            )
        except MailboxError as exc:
            self.actor.ctx.log.error("turn %s not recorded: %s", r.turn_id, exc)
            return f"the turn could not be recorded: {exc}"
        return None


def _user_message(text: str, attachments: list[Attachment]) -> SessionMessage:
    if not attachments:
        return SessionMessage(role="user", content=text)
    files = "\n\n".join(f'<file path="{a.path}">\n{a.content}\n</file>' for a in attachments)
    return SessionMessage(
        role="user",
        content=f"{text}\n\nAttached files:\n{files}",
        meta={"files": [a.path for a in attachments], "text": text},
    )


def _messages(cwd: str, hist: History, new: list[SessionMessage]) -> list[dict[str, Any]]:
    system = SYSTEM.format(cwd=cwd)
    if hist.summary:
        system += (
            "\n\nThe earlier part of this conversation was compacted into this summary:\n"
            + hist.summary
        )
    return [
        {"role": "system", "content": system},
        *(r.to_message() for r in hist.live),
        *(_message(m) for m in new),
    ]


def _message(m: SessionMessage) -> dict[str, Any]:
    message: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        message["tool_calls"] = m.tool_calls
    if m.tool_call_id is not None:
        message["tool_call_id"] = m.tool_call_id
    return message


def _subject(arguments: dict[str, Any]) -> str:
    """What a tool call acts on, for its one line in the chat."""
    for key in ("path", "command", "pattern", "args"):
        if key in arguments:
            value = arguments[key]
            text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            return clip(" ".join(text.split()), 120)
    return clip(json.dumps(arguments, ensure_ascii=False), 120) if arguments else ""
