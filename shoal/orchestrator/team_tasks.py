"""Team task lists: a team run's subtasks (or a team's backlog) with status, owner and claims.

Every change runs on one serial worker thread of the orchestrator (see
``Control``), so updates apply in the order they were sent and a claim's check
and write can never interleave with another claim: of two concurrent claims of
one task exactly one wins. A task whose dependencies are not done is blocked.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from shoal.messages.actors import OrchestratorOk
from shoal.messages.teams import (
    TEAM_TASK_DONE,
    TeamTaskClaim,
    TeamTaskClaimResult,
    TeamTasksCreate,
    TeamTaskUpdate,
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def create(cur: Any, payload: TeamTasksCreate) -> OrchestratorOk:
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
                _now(),
            ],
        )
    return OrchestratorOk(detail=f"{len(payload.tasks)} tasks in {payload.list_id}")


def update(cur: Any, payload: TeamTaskUpdate) -> OrchestratorOk:
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
            _now(),
            payload.list_id,
            payload.id,
        ],
    ).fetchall()
    if not rows:
        raise LookupError(f"no task {payload.id!r} in list {payload.list_id!r}")
    return OrchestratorOk(detail=f"{payload.id}: {payload.status}")


def claim(cur: Any, payload: TeamTaskClaim) -> TeamTaskClaimResult:
    rows = cur.execute(
        "SELECT status, owner, depends_on FROM team_tasks WHERE list_id = ? AND id = ?",
        [payload.list_id, payload.id],
    ).fetchall()
    if not rows:
        return TeamTaskClaimResult(
            won=False, reason=f"no task {payload.id!r} in {payload.list_id!r}"
        )
    status, owner, depends_on = rows[0]
    if status != "pending":
        return TeamTaskClaimResult(won=False, reason=f"already {status} by {owner}")
    blocking = _blocking(cur, payload.list_id, json.loads(depends_on or "[]"))
    if blocking:
        return TeamTaskClaimResult(won=False, reason="blocked by " + ", ".join(blocking))
    cur.execute(
        "UPDATE team_tasks SET status = 'claimed', owner = ?, updated_at = ? "
        "WHERE list_id = ? AND id = ? AND status = 'pending'",
        [payload.owner, _now(), payload.list_id, payload.id],
    ).fetchall()
    return TeamTaskClaimResult(won=True)


def _blocking(cur: Any, list_id: str, depends_on: list[str]) -> list[str]:
    if not depends_on:
        return []
    done = {
        row[0]
        for row in cur.execute(
            "SELECT id FROM team_tasks WHERE list_id = ? AND status IN (?, ?, ?)",
            [list_id, *TEAM_TASK_DONE],
        ).fetchall()
    }
    return [d for d in depends_on if d not in done]
