"""Replaying a recorded task against another model (``shoal replay``).

A task's base snapshot (``refs/shoal/<task>/0``, taken before its first
iteration) holds its repository exactly as the task found it. A replay checks
that commit out detached in a worktree of its own under
``$SHOAL_HOME/worktrees/`` and submits the task again there: the same request
and options (iterations, quality, budgets, permissions), the same loop,
checks and rubric, with another model for the chosen roles. It is a task like
any other, recorded with ``options.replay_of`` and, unless asked, with
``options.learn`` false, so the learner and the pattern-miner leave it out.

The user's work tree, index and branches are never touched: the worktree is a
separate checkout (it shares only the object store and refs, and adds none
but the replay's own ``refs/shoal/<replay>/<n>`` snapshots), it is removed when
the replay ends, and the scheduler sees it as a work tree of its own, so a
replay is never queued behind a task running in the user's tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.messages.base import from_dict, replace

if TYPE_CHECKING:
    from shoal.messages.tasks import ModelChoice, TaskSubmit
    from shoal.paths import Home

LOOP_ROLES = ("planner", "executor", "evaluator")
# Every role but the embedder (which is not a chat model) takes the model by default.
ALL_ROLES = (*LOOP_ROLES, "small")


class ReplayError(Exception):
    """A task that cannot be replayed; the message says why in one line."""


@dataclass(frozen=True)
class Recorded:
    """A recorded task as a replay needs it."""

    id: str
    description: str
    cwd: str
    options: dict[str, Any]
    base: str | None
    parent: str | None
    status: str
    decision: str | None
    score: float | None
    iterations: int
    tokens: int
    cost_usd: float
    created_at: str
    finished_at: str | None
    duration_s: float | None

    def outcome(self) -> dict[str, Any]:
        """What ``shoal replay`` compares."""
        models = self.options.get("models") or {}
        executor = models.get("executor") or models.get("default") or {}
        return {
            "task_id": self.id,
            "status": self.status,
            "decision": self.decision,
            "accepted": self.status == "accepted",
            "score": self.score,
            "iterations": self.iterations,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "duration_s": self.duration_s,
            "executor_model": executor.get("model"),
        }


def summary(sides: list[dict[str, Any]]) -> dict[str, Any]:
    """Several tasks' outcomes in sum: accepted, mean score, tokens, cost and time."""
    scores = [o["score"] for o in sides if o["score"] is not None]
    return {
        "tasks": len(sides),
        "accepted": sum(o["accepted"] for o in sides),
        "mean_score": sum(scores) / len(scores) if scores else None,
        "tokens": sum(o["tokens"] for o in sides),
        "cost_usd": sum(o["cost_usd"] for o in sides),
        "duration_s": sum(o["duration_s"] or 0.0 for o in sides),
    }


def find(home: Home, task_id: str) -> Recorded:
    """The recorded task ``task_id`` (or a unique prefix of it)."""
    from shoal.client import query as read
    from shoal.store.queries import QueryError

    try:
        reply = read(home, "task.replay", {"task_id": task_id})
    except QueryError as exc:
        if "no database yet" in str(exc):
            raise ReplayError(f"no task {task_id!r}: nothing is recorded yet") from None
        raise ReplayError(str(exc)) from None
    rows = [dict(zip(reply.columns, row, strict=True)) for row in reply.rows]
    if not rows:
        raise ReplayError(f"no task {task_id!r}; `shoal tasks` lists them")
    if len(rows) > 1:
        raise ReplayError(f"{task_id!r} matches more than one task; give more of the id")
    row = rows[0]
    row["options"] = json.loads(row["options"] or "{}")
    return Recorded(**row)


def replayable(task: Recorded) -> None:
    """Refuse, in one line, a task that cannot be replayed as it is recorded."""
    if task.status == "running":
        raise ReplayError(f"task {task.id} is still running; replay it once it has ended")
    if task.parent is not None:
        raise ReplayError(
            f"task {task.id} is a subtask of {task.parent}: replay {task.parent} instead"
        )
    if task.options.get("replay_of"):
        raise ReplayError(
            f"task {task.id} is a replay of {task.options['replay_of']}: replay that one"
        )
    if task.base is None:
        raise ReplayError(
            f"task {task.id} has no base snapshot: it ended before its first iteration"
        )


def base_of(task: Recorded) -> tuple[Path, str, Path]:
    """The repository's root, the base snapshot's commit and the task's directory in it.

    A base snapshot whose ref was deleted (snapshots pruned) is a ReplayError."""
    from shoal.workspace import snapshots
    from shoal.workspace.git import WorkspaceError, git, toplevel

    try:
        root = toplevel(task.cwd)
    except WorkspaceError:
        raise ReplayError(
            f"task {task.id} ran in {task.cwd}, which is no longer a git work tree"
        ) from None
    ref = f"{snapshots.REF_PREFIX}/{task.id}/0"
    out = git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
    sha = out.decode().strip()
    if not sha:
        raise ReplayError(
            f"task {task.id}'s base snapshot {ref} was pruned from {root}: it cannot be replayed"
        )
    try:
        relative = Path(os.path.realpath(task.cwd)).relative_to(os.path.realpath(root))
    except ValueError:
        relative = Path()
    return root, sha, relative


def candidates(home: Home, count: int, since: str | None) -> list[str]:
    """Up to ``count`` recorded tasks at random that can be replayed: ended, top-level, not
    replays, with their base snapshot still in their repository."""
    from shoal.client import query as read

    rows = read(home, "replay.candidates", {"since": since}).rows
    random.shuffle(rows)
    chosen: list[str] = []
    for task_id, cwd in rows:
        if len(chosen) == count:
            break
        if _has_base(task_id, cwd):
            chosen.append(task_id)
    return chosen


def _has_base(task_id: str, cwd: str) -> bool:
    from shoal.workspace import snapshots
    from shoal.workspace.git import WorkspaceError, git, toplevel

    try:
        ref = f"{snapshots.REF_PREFIX}/{task_id}/0^{{commit}}"
        return bool(git(toplevel(cwd), "rev-parse", "--verify", "--quiet", ref, ok=(0, 1)))
    except WorkspaceError:
        return False


def submission(
    task: Recorded, cwd: Path, model: ModelChoice, roles: tuple[str, ...], *, learn: bool
) -> TaskSubmit:
    """The recorded task again, in ``cwd``, with ``model`` for ``roles``."""
    from shoal.messages.tasks import TaskOptions, TaskSubmit

    options = from_dict(TaskOptions, task.options)
    models = dict(options.models)
    for role in roles:
        models[role] = model
    options = replace(options, models=models, replay_of=task.id, learn=learn)
    return TaskSubmit(description=task.description, cwd=str(cwd), options=options)


@contextlib.contextmanager
def worktree(home: Home, root: Path, sha: str, task_id: str) -> Iterator[Path]:
    """A detached checkout of ``sha`` under ``$SHOAL_HOME/worktrees/``, removed afterwards."""
    from shoal.ids import new_id
    from shoal.workspace import worktrees

    path = home.root / "worktrees" / f"replay-{task_id}-{new_id()[-6:].lower()}"
    worktrees.add(root, path, None, sha)
    try:
        yield path
    finally:
        worktrees.remove(root, path)
