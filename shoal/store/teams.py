"""A team's records: its task lists (``team_tasks``) and its panes' scrollback
(``pane_transcripts``).

Team task list changes run on the orchestrator's one serial worker thread, so a
claim's check (:func:`get`) and its write (:func:`mark_claimed`) never interleave
with another claim.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from shoal.store.statements import Statement

if TYPE_CHECKING:
    import duckdb

    from shoal.messages.teams import TeamTasksCreate, TeamTaskUpdate


def replace_list(
    cur: duckdb.DuckDBPyConnection, payload: TeamTasksCreate, now: dt.datetime
) -> None:
    """The list ``payload.list_id`` as ``payload.tasks``, every one pending."""
    cur.execute("DELETE FROM team_tasks WHERE list_id = ?", [payload.list_id])
    for t in payload.tasks:
        cur.execute(
            "INSERT INTO team_tasks VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, NULL, NULL, NULL, "
            "NULL, ?)",
            [
                payload.list_id,
                t.id,
                t.title,
                t.detail,
                json.dumps(t.files),
                json.dumps(t.depends_on),
                payload.owner,
                now,
            ],
        )


def update(cur: duckdb.DuckDBPyConnection, payload: TeamTaskUpdate, now: dt.datetime) -> bool:
    """A task's new status (and its run, score, branch, note); False if there is no such task."""
    rows = cur.execute(
        """UPDATE team_tasks SET status = ?, task_id = coalesce(?, task_id),
               score = coalesce(?, score), branch = coalesce(?, branch), note = ?,
               updated_at = ?
           WHERE list_id = ? AND id = ? RETURNING id""",
        [
            payload.status,
            payload.task_id,
            payload.score,
            payload.branch,
            payload.detail,
            now,
            payload.list_id,
            payload.id,
        ],
    ).fetchall()
    return bool(rows)


def get(
    cur: duckdb.DuckDBPyConnection, list_id: str, task_id: str
) -> tuple[str, str | None, str | None] | None:
    """(status, owner, depends_on as JSON) of one task, or None."""
    rows = cur.execute(
        "SELECT status, owner, depends_on FROM team_tasks WHERE list_id = ? AND id = ?",
        [list_id, task_id],
    ).fetchall()
    return rows[0] if rows else None


def mark_claimed(
    cur: duckdb.DuckDBPyConnection, list_id: str, task_id: str, owner: str, now: dt.datetime
) -> None:
    cur.execute(
        "UPDATE team_tasks SET status = 'claimed', owner = ?, updated_at = ? "
        "WHERE list_id = ? AND id = ? AND status = 'pending'",
        [owner, now, list_id, task_id],
    ).fetchall()


def with_status(
    cur: duckdb.DuckDBPyConnection, list_id: str, statuses: tuple[str, ...]
) -> set[str]:
    """Ids of a list's tasks in one of ``statuses``."""
    rows = cur.execute(
        "SELECT id FROM team_tasks WHERE list_id = ? AND list_contains(?, status)",
        [list_id, list(statuses)],
    ).fetchall()
    return {row[0] for row in rows}


def transcript(row: Any) -> Statement:
    """A pane's scrollback when it ended (a ``launchers.tmux.TranscriptRow``)."""
    return (
        "INSERT INTO pane_transcripts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            row.captured_at,
            row.team,
            row.member,
            row.role,
            row.pane_id,
            row.reason,
            row.text.count("\n"),
            row.text,
        ],
    )
