"""Rebuilding running tasks after an orchestrator restart, from what DuckDB recorded.

Every step of a task is a row: the task row (plan, base snapshot, iteration
count, status), one row per evaluated iteration, findings, and every message.
The request a task was waiting for is the last step request the orchestrator
sent for it; being tracked, it is redelivered to an actor on its own, so the
task only has to wait for its reply again. A reply that was recorded but never
handled (the crash came in between) is handled at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import TYPE_CHECKING

from shoal.mailbox.envelope import Envelope
from shoal.messages.base import from_dict, from_json
from shoal.messages.tasks import ExecResult, Finding, Plan, TaskOptions, TaskSubmit, Usage
from shoal.orchestrator.scheduler import Iteration, TaskRun
from shoal.store import messages
from shoal.store import tasks as task_rows

if TYPE_CHECKING:
    import duckdb

    from shoal.orchestrator.scheduler import Scheduler

log = logging.getLogger(__name__)

_STEP_KINDS = ("plan.request", "team.run", "exec.request", "eval.request", "workspace.restore")


def resume(scheduler: Scheduler, con: duckdb.DuckDBPyConnection) -> int:
    """Put every task recorded as running back into ``scheduler``; returns how many."""
    rows = task_rows.running(con)
    late_replies = []
    for row in rows:
        try:
            late = _resume_one(scheduler, con, row)
        except Exception:
            log.exception("task %s could not be resumed; it stays as recorded", row[0])
            continue
        if late is not None:
            late_replies.append(late)
    for env in late_replies:
        scheduler.on_reply(env)
    # "Mine after every fifth task" counts the history, not this orchestrator's lifetime
    # (it exits when idle): the count goes on from the tasks already recorded as ended.
    scheduler.finished = task_rows.ended(con)
    return len(rows)


def _resume_one(
    scheduler: Scheduler, con: duckdb.DuckDBPyConnection, row: tuple
) -> Envelope | None:
    """Adopt one task; return a reply recorded for it but never handled, if any."""
    task = _task(con, row)
    if row[11] == "queued":  # it waited for another task's work tree: it waits again
        scheduler.requeue(task)
        return None
    pending = messages.last_request(con, task.id, _STEP_KINDS)
    if pending is None:
        log.warning("task %s has no recorded step to wait for; failing it", task.id)
        scheduler.adopt(task, None)
        scheduler.fail(task, "error: orchestrator restarted before the first step")
        return None
    request_id, kind, body = pending
    if kind in ("exec.request", "eval.request"):
        task.iteration = json.loads(body)["payload"]["iteration"]
    task.phase = {
        "plan.request": "planning",
        "exec.request": "executing",
        "eval.request": "evaluating",
        "team.run": "teamwork",
    }.get(kind, "restoring")
    scheduler.adopt(task, request_id)
    reply = messages.reply_to_orchestrator(con, request_id)
    log.info("resumed task %s at iteration %d, waiting for %s", task.id, task.iteration, request_id)
    return Envelope.decode(reply.encode()) if reply else None


def _task(con: duckdb.DuckDBPyConnection, row: tuple) -> TaskRun:
    task_id, description, cwd, options, requester, plan, base, iterations, created_at = row[:9]
    decision, parent = row[9], row[10]
    submit = TaskSubmit(
        description=description,
        cwd=cwd,
        options=from_json(TaskOptions, options),
        parent=parent,
    )
    created = created_at.replace(tzinfo=dt.UTC).timestamp()
    task = TaskRun(
        task_id,
        submit,
        requester or "",
        created_at=created,
        started=time.monotonic() - (time.time() - created),
    )
    task.plan = from_json(Plan, plan) if plan else None
    task.base = base
    task.iteration = iterations
    task.exec_started = time.monotonic()
    if decision:  # it was concluding (restoring the best iteration) when the crash came
        task.stop = decision
        task.status = (
            "accepted"
            if decision == "quality"
            else "cancelled"
            if decision == "cancelled"
            else "failed"
            if decision.startswith("error")
            else "unaccepted"
        )
    task.usage = _usage(con, task_id)
    task.history = [Iteration(*row) for row in task_rows.iterations(con, task_id)]
    if task.history:
        task.findings = [
            Finding(severity=s, title=t, detail=d or "", fix=f or "")
            for s, t, d, f in task_rows.findings(con, task_id, task.history[-1].n)
        ]
    last_exec = messages.last_of_kind(con, task_id, ExecResult.kind)
    if last_exec:
        task.exec_result = from_dict(ExecResult, json.loads(last_exec)["payload"])
        task.last_summary = task.exec_result.summary
    return task


def _usage(con: duckdb.DuckDBPyConnection, task_id: str) -> Usage:
    calls, prompt, completion, cost = task_rows.spent(con, task_id)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost, calls=calls)
