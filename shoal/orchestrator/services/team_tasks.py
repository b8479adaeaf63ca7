"""Team task lists: a team run's subtasks (or a team's backlog) with status, owner and claims.

Every change runs on the one serial worker thread (see ``Workers``), so updates apply
in the order they were sent and a claim's check and write can never interleave with
another claim: of two concurrent claims of one task exactly one wins. A task whose
dependencies are not done is blocked.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from shoal.messages.actors import OrchestratorOk
from shoal.messages.teams import (
    TEAM_TASK_DONE,
    TeamTaskClaim,
    TeamTaskClaimResult,
    TeamTasksCreate,
    TeamTaskUpdate,
)
from shoal.store import teams as rows

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.services.workers import Workers


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class TeamTasks:
    handles = (TeamTasksCreate, TeamTaskUpdate, TeamTaskClaim)

    def __init__(self, workers: Workers) -> None:
        self.workers = workers

    def on_team_tasks_create(self, env: Envelope, payload: TeamTasksCreate) -> None:
        self.workers.run(env, lambda cur: create(cur, payload), serial=True)

    def on_team_task_update(self, env: Envelope, payload: TeamTaskUpdate) -> None:
        self.workers.run(env, lambda cur: update(cur, payload), serial=True)

    def on_team_task_claim(self, env: Envelope, payload: TeamTaskClaim) -> None:
        self.workers.run(env, lambda cur: claim(cur, payload), serial=True)


def create(cur: Any, payload: TeamTasksCreate) -> OrchestratorOk:
    rows.replace_list(cur, payload, _now())
    return OrchestratorOk(detail=f"{len(payload.tasks)} tasks in {payload.list_id}")


def update(cur: Any, payload: TeamTaskUpdate) -> OrchestratorOk:
    if not rows.update(cur, payload, _now()):
        raise LookupError(f"no task {payload.id!r} in list {payload.list_id!r}")
    return OrchestratorOk(detail=f"{payload.id}: {payload.status}")


def claim(cur: Any, payload: TeamTaskClaim) -> TeamTaskClaimResult:
    found = rows.get(cur, payload.list_id, payload.id)
    if found is None:
        return TeamTaskClaimResult(
            won=False, reason=f"no task {payload.id!r} in {payload.list_id!r}"
        )
    status, owner, depends_on = found
    if status != "pending":
        return TeamTaskClaimResult(won=False, reason=f"already {status} by {owner}")
    blocking = _blocking(cur, payload.list_id, json.loads(depends_on or "[]"))
    if blocking:
        return TeamTaskClaimResult(won=False, reason="blocked by " + ", ".join(blocking))
    rows.mark_claimed(cur, payload.list_id, payload.id, payload.owner, _now())
    return TeamTaskClaimResult(won=True)


def _blocking(cur: Any, list_id: str, depends_on: list[str]) -> list[str]:
    if not depends_on:
        return []
    done = rows.with_status(cur, list_id, TEAM_TASK_DONE)
    return [d for d in depends_on if d not in done]
