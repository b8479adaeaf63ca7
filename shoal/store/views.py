"""The public views over shoal's records: what ``shoal sql`` queries and exports.

They live in the schema ``records`` (migration 9), beside the tables they read
(schema ``main``). ``shoal sql`` puts ``records`` first on the search path, so
``FROM tasks`` means the view ``records.tasks``; the tables stay reachable as
``main.<table>`` but are not an interface and change between versions. The
views are: their names and columns (documented here, in the README, and printed
by ``shoal sql --schema``) keep their meaning across migrations, which is
what lets a user's saved queries and notebooks survive an upgrade. A test
(tests/test_sql_views.py) fails when a column is added, dropped or renamed
without this list and the README changing with it.
"""

from __future__ import annotations

SCHEMA = "records"

# view -> (what a row is, {column: meaning}); columns in the views' order. Times are UTC.
VIEWS: dict[str, tuple[str, dict[str, str]]] = {
    "tasks": (
        "one row per task (subtasks, subagents and replays included)",
        {
            "task_id": "the task's id",
            "parent_id": "the task that started it (a team run's subtask, a subagent)",
            "replay_of": "the task this one replays (shoal replay), else NULL",
            "kind": "task, subtask, subagent or replay",
            "description": "what was asked",
            "cwd": "the directory it ran in",
            "repo": "the directory it was asked for (a replay: its original's cwd)",
            "status": "running, accepted, unaccepted, failed or cancelled",
            "decision": "why it stopped: quality, plateau, regression, max_iterations, ...",
            "score": "its best iteration's score (0-1)",
            "best_iteration": "the iteration whose files it left",
            "iterations": "iterations run",
            "tokens": "prompt + completion tokens of its model calls",
            "cost_usd": "what its model calls cost",
            "planner_model": "the planner's model",
            "executor_model": "the executor's model",
            "evaluator_model": "the evaluator's (judge's) model",
            "permission_mode": "default, plan, accept-edits or bypass",
            "created_at": "when it was submitted",
            "finished_at": "when it ended (NULL while running)",
            "duration_s": "seconds from submission to end",
            "files_changed": "JSON list of the files it changed",
            "summary": "the executor's summary of its work",
        },
    ),
    "iterations": (
        "one row per evaluated iteration of a task",
        {
            "task_id": "the task",
            "iteration": "1, 2, ...",
            "score": "the composite score (checks and judge)",
            "judge_score": "the judge's own score",
            "decision": "what the loop did next: refine, quality, plateau, ...",
            "tool_calls": "tool calls the executor made",
            "tokens": "tokens of the iteration's execution and evaluation",
            "cost_usd": "their cost",
            "duration_s": "seconds from the execution's start to the verdict",
            "dimensions": "JSON object: the judge's score per rubric dimension",
            "checks": "JSON list: the project's checks run and their outcome",
            "snapshot": "the commit of its files (refs/shoal/<task>/<iteration>)",
            "summary": "the executor's summary",
            "finished_at": "when it was judged",
        },
    ),
    "tool_calls": (
        "one row per tool call an executor made",
        {
            "message_id": "the exec.event message that reported it",
            "task_id": "the task",
            "iteration": "the iteration",
            "name": "the tool: read_file, edit_file, shell, ...",
            "detail": "its arguments as JSON text (shortened)",
            "ok": "false when the call failed or was refused",
            "recorded_at": "when it was recorded",
        },
    ),
    "findings": (
        "one row per finding of the judge",
        {
            "task_id": "the task",
            "iteration": "the iteration judged",
            "severity": "blocker, important or minor",
            "title": "the finding in one line",
            "detail": "what is wrong",
            "fix": "what to do",
        },
    ),
    "costs": (
        "one row per recorded batch of model calls (tasks and chat)",
        {
            "recorded_at": "when it was recorded",
            "task_id": "the task (NULL for chat)",
            "role": "planner, executor, evaluator, chat, ...",
            "model": "the model called",
            "calls": "model calls",
            "prompt_tokens": "prompt tokens",
            "completion_tokens": "completion tokens",
            "tokens": "prompt + completion tokens",
            "cost_usd": "their cost (for models litellm has prices for)",
        },
    ),
    "learnings": (
        "one row per learning in shoal's memory",
        {
            "learning_id": "the learning's id",
            "kind": "regression, plateau, blocker, insight, ...",
            "content": "what was learned",
            "confidence": "stored confidence (decay is applied when recalled)",
            "uses": "times recalled into a prompt",
            "source_task": "the task it came from",
            "team": "the team whose memory it is, else NULL",
            "created_at": "when it was learned",
            "last_used_at": "when it was last recalled",
            "forgotten": "true once forgotten (shoal memory forget)",
        },
    ),
    "messages": (
        "one row per message routed between shoal's processes",
        {
            "message_id": "the envelope's id (sortable)",
            "kind": "plan.request, exec.result, task.done, ...",
            "sender": "who sent it",
            "recipient": "whom it was for",
            "task_id": "the task it belongs to",
            "reply_to": "the message it answers",
            "attempt": "delivery attempt",
            "sent_at": "when it was sent",
            "recorded_at": "when the orchestrator received it",
            "payload": "JSON: the message's payload",
        },
    ),
}

SEARCH_PATH = f"{SCHEMA},main"
"""What unqualified names resolve against in ``shoal sql``: the views, then the tables."""
