"""Session rows, written by the orchestrator (the one DuckDB writer) on its worker threads.

A transcript is append-only: every message of every turn gets the next
``seq`` of its session, and markers (``summary`` after a compaction, ``clear``
after ``/clear``) are rows too, so ``shoal sessions export`` shows everything
that happened while the conversation a turn sends is rebuilt from the rows
after the last marker (:mod:`shoal.actors.conversation`).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

from shoal.ids import new_id
from shoal.messages.actors import OrchestratorOk
from shoal.messages.chat import (
    SessionAppend,
    SessionClear,
    SessionInfo,
    SessionLine,
    SessionMessage,
    SessionOpen,
)

# Numbering a session's rows reads max(seq) then inserts: one writer at a time.
_lock = threading.Lock()

_COLUMNS = "id, name, cwd, turns, tokens, cost_usd, model, permission_mode"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def open_session(cur: Any, p: SessionOpen) -> SessionInfo:
    with _lock:
        row, created = _find(cur, p), False
        if row is None:
            row, created = _create(cur, p), True
    session_id = row[0]
    recent = []
    if p.recent:
        rows = cur.execute(
            """SELECT role, coalesce(meta->>'text', content) FROM session_messages
               WHERE session_id = ? AND role IN ('user', 'assistant') AND content IS NOT NULL
               ORDER BY seq DESC LIMIT ?""",
            [session_id, p.recent],
        ).fetchall()
        # A user message's own words ("text"), without the files attached to it.
        recent = [SessionLine(role=r[0], content=r[1]) for r in reversed(rows)]
    return SessionInfo(
        id=session_id,
        name=row[1],
        cwd=row[2],
        created=created,
        turns=row[3],
        tokens=row[4],
        cost_usd=row[5],
        model=row[6],
        permission_mode=row[7],
        recent=recent,
    )


def _find(cur: Any, p: SessionOpen) -> tuple[Any, ...] | None:
    if p.session_id:
        rows = cur.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE id = ? OR id LIKE ? || '%' LIMIT 2",
            [p.session_id, p.session_id],
        ).fetchall()
        if not rows:
            raise LookupError(f"no session {p.session_id!r}; `shoal sessions list` shows them")
        if len(rows) > 1:
            raise LookupError(f"{p.session_id!r} matches more than one session; give more of it")
        return rows[0]
    if p.name:
        rows = cur.execute(f"SELECT {_COLUMNS} FROM sessions WHERE name = ?", [p.name]).fetchall()
        return rows[0] if rows else None
    if p.continue_last:
        rows = cur.execute(
            # A chat left without a word is no conversation to continue.
            f"SELECT {_COLUMNS} FROM sessions WHERE cwd = ? AND turns > 0 "
            "ORDER BY updated_at DESC, id DESC LIMIT 1",
            [p.cwd],
        ).fetchall()
        if not rows:
            raise LookupError(f"no session in {p.cwd} yet to continue; start one with shoal chat")
        return rows[0]
    return None


def _create(cur: Any, p: SessionOpen) -> tuple[Any, ...]:
    now = _now()
    row = (new_id(), p.name, p.cwd, 0, 0, 0.0, p.model, p.permission_mode)
    cur.execute(
        "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, NULL, 0, 0, 0.0, ?, ?)",
        [row[0], p.name, p.cwd, p.model, p.permission_mode, now, now],
    )
    return row


def append(cur: Any, p: SessionAppend) -> OrchestratorOk:
    with _lock:
        rows = cur.execute("SELECT turns FROM sessions WHERE id = ?", [p.session_id]).fetchall()
        if not rows:
            raise LookupError(f"no session {p.session_id!r}")
        turn = rows[0][0] + (1 if p.new_turn else 0)
        seq = cur.execute(
            "SELECT coalesce(max(seq), 0) FROM session_messages WHERE session_id = ?",
            [p.session_id],
        ).fetchall()[0][0]
        now = _now()
        values = [
            _row(p.session_id, seq + i, turn, m, now) for i, m in enumerate(p.messages, start=1)
        ]
        cur.execute("BEGIN")
        try:
            if values:
                marks = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(values))
                cur.execute(
                    f"INSERT INTO session_messages VALUES {marks}",
                    [v for row in values for v in row],
                )
            title = next(
                (m.meta.get("text") or m.content for m in p.messages if m.role == "user"), None
            )
            cur.execute(
                """UPDATE sessions SET turns = ?, tokens = tokens + ?, cost_usd = cost_usd + ?,
                       model = coalesce(?, model), permission_mode = coalesce(?, permission_mode),
                       title = coalesce(title, ?), updated_at = ?
                   WHERE id = ?""",
                [
                    turn,
                    p.usage.tokens,
                    p.usage.cost_usd,
                    p.model,
                    p.permission_mode,
                    _title(title),
                    now,
                    p.session_id,
                ],
            )
            if p.usage.calls:
                cur.execute(
                    "INSERT INTO usage_events VALUES (?, NULL, 'chat', ?, ?, ?, ?, ?)",
                    [
                        now,
                        p.model,
                        p.usage.calls,
                        p.usage.prompt_tokens,
                        p.usage.completion_tokens,
                        p.usage.cost_usd,
                    ],
                )
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
    return OrchestratorOk(detail=f"{len(values)} messages")


def clear(cur: Any, p: SessionClear) -> OrchestratorOk:
    append(
        cur,
        SessionAppend(
            session_id=p.session_id, messages=[SessionMessage(role="clear")], new_turn=False
        ),
    )
    return OrchestratorOk(detail="cleared")


def _row(session_id: str, seq: int, turn: int, m: SessionMessage, now: dt.datetime) -> list[Any]:
    return [
        session_id,
        seq,
        turn,
        m.role,
        m.content,
        json.dumps(m.tool_calls) if m.tool_calls is not None else None,
        m.tool_call_id,
        json.dumps(m.meta) if m.meta else None,
        now,
    ]


def _title(text: str | None) -> str | None:
    if not text:
        return None
    line = " ".join(text.split())
    return line if len(line) <= 80 else line[:77] + "..."
