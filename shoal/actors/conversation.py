"""The conversation a chat turn sends, rebuilt from the transcript, and its compaction.

The transcript rows (``session.messages``) are replayed: a ``clear`` marker
starts over, a ``summary`` marker replaces every message it covers with its
text. What is left is the live conversation. Before the context window
fills, the older turns are folded into a summary (by the small model, or a
deterministic digest without one) and only the latest turns stay verbatim.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from shoal.messages.store import StoreQueryResult

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 128_000
"""Tokens assumed for a model litellm knows nothing about."""
COMPACT_AT = 0.75
"""Compact when the conversation is estimated at this share of the window."""
KEEP_SHARE = 0.3
"""The latest turns kept verbatim may take at most this share of the window."""


@dataclass
class Record:
    seq: int
    turn: int
    role: str
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        """The OpenAI chat message this row was."""
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


def records(reply: StoreQueryResult) -> list[Record]:
    out = []
    for row in reply.rows:
        values = dict(zip(reply.columns, row, strict=True))
        out.append(
            Record(
                seq=values["seq"],
                turn=values["turn"],
                role=values["role"],
                content=values["content"],
                tool_calls=json.loads(values["tool_calls"]) if values["tool_calls"] else None,
                tool_call_id=values["tool_call_id"],
                meta=json.loads(values["meta"]) if values["meta"] else {},
            )
        )
    return out


@dataclass
class History:
    summary: str | None
    """The summary of the compacted turns, if any."""
    live: list[Record]
    """The messages after the last clear, not covered by the summary."""


def history(rows: list[Record]) -> History:
    summary: str | None = None
    live: list[Record] = []
    for r in rows:
        if r.role == "clear":
            summary, live = None, []
        elif r.role == "summary":
            through = int(r.meta.get("through", r.seq))
            summary, live = r.content, [m for m in live if m.seq > through]
        elif r.role == "rewind":  # back to before that turn: it and the later ones go
            turn = int(r.meta.get("turn", r.turn + 1))
            live = [m for m in live if m.turn < turn]
        else:
            live.append(r)
    return History(summary, live)


def estimate_tokens(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    """About four characters a token: cheap, offline, and close enough to decide compaction."""
    size = len(json.dumps(messages, ensure_ascii=False))
    if tools:
        size += len(json.dumps(tools))
    return size // 4 + 1


def context_window(model: str, override: int | None = None) -> int:
    """Input tokens ``model`` takes: the override, litellm's model info, or a default."""
    if override:
        return override
    from shoal.llm.client import _litellm  # configured: no price-list fetch, quiet logs

    try:
        info = _litellm().get_model_info(model)
        tokens = info.get("max_input_tokens") or info.get("max_tokens")
        if isinstance(tokens, int) and tokens > 0:
            return tokens
    except Exception:  # litellm raises for models it has no entry for
        pass
    return DEFAULT_WINDOW


def turns(live: list[Record]) -> list[list[Record]]:
    """The live messages grouped by turn, oldest first."""
    grouped: list[list[Record]] = []
    for r in live:
        if grouped and grouped[-1][0].turn == r.turn:
            grouped[-1].append(r)
        else:
            grouped.append([r])
    return grouped


def split(
    live: list[Record], *, keep_turns: int | None, keep_tokens: int
) -> tuple[list[Record], list[Record]]:
    """(older messages to fold into the summary, latest ones to keep verbatim).

    With ``keep_turns`` that many turns are kept; otherwise as many of the
    latest as fit in ``keep_tokens`` (at least one).
    """
    grouped = turns(live)
    if keep_turns is not None:
        kept = grouped[len(grouped) - keep_turns :] if keep_turns else []
    else:
        kept, used = [], 0
        for turn in reversed(grouped):
            size = estimate_tokens([r.to_message() for r in turn])
            if kept and used + size > keep_tokens:
                break
            kept.insert(0, turn)
            used += size
    old = grouped[: len(grouped) - len(kept)]
    return [r for t in old for r in t], [r for t in kept for r in t]


def digest(previous: str | None, old: list[Record], limit: int) -> str:
    """A summary without a model: each older turn as its request, its tools and its answer."""
    lines = [previous.strip()] if previous else []
    for turn in turns(old):
        asked = next((r.content for r in turn if r.role == "user" and r.content), "")
        tools = [
            _call_line(call) for r in turn if r.role == "assistant" for call in r.tool_calls or []
        ]
        answers = [r.content for r in turn if r.role == "assistant" and r.content]
        lines.append(f"- The user asked: {_short(asked, 300)}")
        if tools:
            lines.append(f"  Tools used: {_short(', '.join(tools), 300)}")
        if answers:
            lines.append(f"  You answered: {_short(answers[-1], 400)}")
    text = "\n".join(lines)
    # The latest lines matter most: cut from the front.
    return text if len(text) <= limit else "…" + text[-limit:]


def summary_request(previous: str | None, old: list[Record], limit: int) -> list[dict[str, Any]]:
    """The messages asking a (small) model to summarize the older turns."""
    parts = [f"Summary so far:\n{previous}"] if previous else []
    for r in old:
        if r.role == "tool":
            parts.append(f"[tool result] {_short(r.content or '', 500)}")
        elif r.tool_calls:
            calls = ", ".join(_call_line(c) for c in r.tool_calls)
            parts.append(f"[assistant called] {calls}" + (f"\n{r.content}" if r.content else ""))
        else:
            parts.append(f"[{r.role}] {r.content or ''}")
    transcript = "\n\n".join(parts)
    if len(transcript) > limit:
        transcript = "…" + transcript[-limit:]
    return [
        {
            "role": "system",
            "content": "Summarize this conversation between a developer and a coding agent "
            "so the agent can continue it: what was asked, what was decided, which files were "
            "read or changed and how, and what is still open. Be brief and concrete; bullet "
            "points; no preamble.",
        },
        {"role": "user", "content": transcript},
    ]


def _call_line(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    name = function.get("name", "?")
    try:
        args = json.loads(function.get("arguments") or "{}")
    except ValueError:
        args = {}
    subject = next(
        (str(args[k]) for k in ("path", "pattern", "command", "args", "name") if k in args), ""
    )
    return f"{name}({_short(subject, 60)})" if subject else name


def _short(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
