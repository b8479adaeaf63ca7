"""Named read queries, the same whether the orchestrator runs them or a reader does.

Clients never send SQL: they name a query and give parameters, which are
validated here. ``read`` asks the running orchestrator, or opens the file
read-only when none runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shoal.messages.store import StoreQueryResult
from shoal.store.stats import STATS_QUERIES

if TYPE_CHECKING:
    import duckdb

    from shoal.paths import Home


T = TypeVar("T")


class QueryError(ValueError):
    """Unknown query or bad parameters."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecentMessages(_Params):
    limit: int = Field(20, ge=1, le=10_000)
    kind: str | None = None
    task_id: str | None = None


class NoParams(_Params):
    pass


class TaskParams(_Params):
    task_id: str = Field(min_length=4, max_length=64, pattern=r"^[0-9A-Za-z]+$")


class ListParams(_Params):
    list_id: str = Field(min_length=1, max_length=64)


class SessionParams(_Params):
    session_id: str = Field(min_length=4, max_length=64, pattern=r"^[0-9A-Za-z]+$")
    """A session id or a unique prefix (``session.get``); the full id elsewhere."""


class RepoParams(_Params):
    repo: str = Field(min_length=1, max_length=4096)
    """A repository's root: tasks that ran in it or below it."""


class SessionList(_Params):
    limit: int = Field(20, ge=1, le=10_000)
    cwd: str | None = None


class TeamParams(_Params):
    team: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    since: str | None = None
    """ISO time; only what was recorded from then on."""
    member: str | None = Field(None, max_length=128)
    role: str | None = Field(None, max_length=128)
    """The member's role as an address (``role:executor@red``): work sent to the role, for
    the member's tasks."""
    limit: int = Field(50, ge=1, le=10_000)


class SinceParams(_Params):
    since: str | None = Field(None, max_length=40)
    """ISO time (UTC); None: from the start."""


class BatchParams(_Params):
    batch_id: str = Field(min_length=4, max_length=64, pattern=r"^[0-9A-Za-z]+$")


class CostSeriesParams(_Params):
    bucket: Literal["minute", "hour", "day"] = "hour"
    by: Literal["role", "model"] = "role"
    since: str = Field(max_length=40)
    """ISO time (UTC): the first bucket's start."""


QUERIES: dict[str, tuple[type[BaseModel], str]] = {
    "team.tasks": (
        ListParams,
        """SELECT id, title, status, owner, depends_on, task_id, score, branch, note, updated_at
           FROM team_tasks WHERE list_id = $list_id ORDER BY rowid""",
    ),
    "tasks.children": (
        TaskParams,
        """SELECT id, status, phase, decision, score, iterations, tokens, cost_usd,
                  summary, created_at, finished_at
           FROM tasks WHERE parent = $task_id ORDER BY created_at""",
    ),
    "messages.recent": (
        RecentMessages,
        """SELECT id, kind, sender, recipient, task_id, reply_to, attempt, sent_at
           FROM messages
           WHERE ($kind IS NULL OR kind = $kind) AND ($task_id IS NULL OR task_id = $task_id)
           ORDER BY recorded_at DESC, id DESC LIMIT $limit""",
    ),
    "messages.summary": (
        NoParams,
        """SELECT kind, count(*) AS messages, count(DISTINCT id) AS distinct_ids,
                  max(recorded_at) AS last_at
           FROM messages GROUP BY kind ORDER BY messages DESC""",
    ),
    "actor_events.recent": (
        RecentMessages,
        """SELECT happened_at, name, role, pid, event, detail FROM actor_events
           WHERE $kind IS NULL OR event = $kind
           ORDER BY happened_at DESC LIMIT $limit""",
    ),
    "schema.version": (NoParams, "SELECT max(version) AS version FROM schema_version"),
    "tasks.background": (
        RecentMessages,
        """SELECT id, parent,
                  CASE WHEN (options->>'evaluate') = 'false' THEN 'subagent' ELSE 'subtask' END
                      AS kind,
                  status, phase, score, tokens, cost_usd, created_at, finished_at, description
           FROM tasks WHERE parent IS NOT NULL AND ($kind IS NULL OR status = $kind)
           ORDER BY created_at DESC LIMIT $limit""",
    ),
    "tasks.recent": (
        RecentMessages,
        """SELECT id, status, decision, score, iterations, tokens, cost_usd, created_at,
                  description
           FROM tasks WHERE $kind IS NULL OR status = $kind
           ORDER BY created_at DESC LIMIT $limit""",
    ),
    "task.get": (
        TaskParams,
        """SELECT id, description, cwd, status, phase, decision, score, best_iteration,
                  iterations, tokens, cost_usd, plan, files_changed, summary, created_at,
                  finished_at, parent, subtasks
           FROM tasks WHERE id = $task_id OR id LIKE $task_id || '%' ORDER BY created_at DESC
           LIMIT 2""",
    ),
    "task.iterations": (
        TaskParams,
        """SELECT n, score, judge_score, dimensions, checks, snapshot, summary, tool_calls,
                  tokens, cost_usd, duration_s, decision
           FROM iterations WHERE task_id = $task_id ORDER BY n""",
    ),
    "task.findings": (
        TaskParams,
        """SELECT iteration, severity, title, detail, fix FROM findings
           WHERE task_id = $task_id ORDER BY iteration, severity""",
    ),
    "task.base": (
        TaskParams,
        """SELECT base FROM tasks WHERE id = $task_id""",
    ),
    "task.tool_calls": (
        TaskParams,
        """SELECT (body->'payload'->>'iteration') AS iteration,
                  (body->'payload'->>'name') AS name,
                  (body->'payload'->>'detail') AS detail, (body->'payload'->>'ok') AS ok
           FROM messages
           WHERE kind = 'exec.event' AND task_id = $task_id
             AND (body->'payload'->>'type') = 'tool_call'
           ORDER BY id""",
    ),
    "memory.list": (
        RecentMessages,
        """SELECT id, kind, content, confidence, uses, source_task, created_at, last_used_at
           FROM learnings WHERE NOT forgotten AND ($kind IS NULL OR kind = $kind)
           ORDER BY last_used_at DESC LIMIT $limit""",
    ),
    # Mining leaves out tasks that asked not to be learned from (replays: options.learn).
    "mining.tasks": (
        NoParams,
        """SELECT id, description, score FROM tasks
           WHERE status != 'running' AND (options->>'learn') IS DISTINCT FROM 'false'
           ORDER BY created_at DESC LIMIT 10000""",
    ),
    "mining.tool_calls": (
        NoParams,
        """SELECT task_id, (body->'payload'->>'name') AS name FROM messages
           WHERE kind = 'exec.event' AND (body->'payload'->>'type') = 'tool_call'
             AND task_id NOT IN (SELECT id FROM tasks WHERE (options->>'learn') = 'false')
           ORDER BY id""",
    ),
    "mining.findings": (
        NoParams,
        """SELECT task_id, title FROM findings
           WHERE task_id NOT IN (SELECT id FROM tasks WHERE (options->>'learn') = 'false')
           ORDER BY task_id, iteration""",
    ),
    "skills.effectiveness": (
        NoParams,
        "SELECT skill, samples, mean_score, updated_at FROM skill_effectiveness ORDER BY skill",
    ),
    "webhooks.deliveries": (
        RecentMessages,
        """SELECT delivery_id, attempt, event, task_id, webhook, target, status_code, ok,
                  error, duration_ms, attempted_at, retry_at
           FROM webhook_deliveries
           WHERE ($kind IS NULL OR event = $kind) AND ($task_id IS NULL OR task_id = $task_id)
           ORDER BY attempted_at DESC, attempt DESC LIMIT $limit""",
    ),
    "sessions.list": (
        SessionList,
        """SELECT id, name, cwd, turns, tokens, cost_usd, model, updated_at, created_at, title
           FROM sessions
           WHERE ($cwd IS NULL OR cwd = $cwd) AND (turns > 0 OR name IS NOT NULL)
           ORDER BY updated_at DESC, id DESC LIMIT $limit""",
    ),
    "session.get": (
        SessionParams,
        """SELECT id, name, cwd, turns, tokens, cost_usd, model, permission_mode, title,
                  created_at, updated_at
           FROM sessions WHERE id = $session_id OR id LIKE $session_id || '%'
           ORDER BY updated_at DESC LIMIT 2""",
    ),
    "session.messages": (
        SessionParams,
        """SELECT seq, turn, role, content, tool_calls, tool_call_id, meta, created_at
           FROM session_messages WHERE session_id = $session_id ORDER BY seq""",
    ),
    "session.live": (
        SessionParams,
        # What a turn rebuilds its conversation from: after the last clear, the last
        # summary and the messages it does not cover (never the whole transcript).
        """WITH cleared AS (
               SELECT coalesce(max(seq), 0) AS seq FROM session_messages
               WHERE session_id = $session_id AND role = 'clear'),
           summary AS (
               SELECT max(m.seq) AS seq, arg_max(CAST(m.meta->>'through' AS INTEGER), m.seq)
                      AS through
               FROM session_messages m, cleared
               WHERE m.session_id = $session_id AND m.role = 'summary' AND m.seq > cleared.seq)
           SELECT m.seq, m.turn, m.role, m.content, m.tool_calls, m.tool_call_id, m.meta,
                  m.created_at
           FROM session_messages m, cleared, summary
           WHERE m.session_id = $session_id AND m.seq > cleared.seq
             AND (m.seq = summary.seq
                  OR (m.role NOT IN ('summary', 'clear')
                      AND m.seq > coalesce(summary.through, cleared.seq)))
           ORDER BY m.seq""",
    ),
    "costs.summary": (
        NoParams,
        """SELECT role, model, sum(calls) AS calls, sum(prompt_tokens) AS prompt_tokens,
                  sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd
           FROM usage_events GROUP BY role, model ORDER BY cost_usd DESC, role""",
    ),
    "task.costs": (
        TaskParams,
        """SELECT role, model, sum(calls) AS calls, sum(prompt_tokens) AS prompt_tokens,
                  sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd
           FROM usage_events WHERE task_id = $task_id
           GROUP BY role, model ORDER BY cost_usd DESC, role""",
    ),
    "team.usage": (
        TeamParams,
        # Members are named ROLE@TEAM-N; what their replies cost is in the replies.
        """SELECT sender,
                  sum(CAST(body->'payload'->'usage'->>'prompt_tokens' AS BIGINT)
                      + CAST(body->'payload'->'usage'->>'completion_tokens' AS BIGINT))
                      AS tokens,
                  sum(CAST(body->'payload'->'usage'->>'cost_usd' AS DOUBLE)) AS cost_usd
           FROM messages
           WHERE kind IN ('plan.result', 'exec.result', 'eval.result')
             AND regexp_full_match(sender, '.*@' || $team || '-[0-9]+')
             AND ($since IS NULL OR recorded_at >= CAST($since AS TIMESTAMP))
           GROUP BY sender""",
    ),
    "member.messages": (
        TeamParams,
        # A member's recent messages both ways (its events too: they go to "*"), newest
        # first: what its pane shows, for a member with no pane (the dashboard). Work is
        # sent to the role: taken as the member's when the member sent something about
        # the same task (its first event follows at once); so are those tasks' progress
        # events, which its pane shows too.
        """SELECT body FROM messages
           WHERE (sender = $member OR recipient = $member
                  OR ((recipient = $role
                       OR (recipient = '*'
                           AND kind IN ('task.progress', 'team.progress', 'task.done')))
                      AND task_id IN (SELECT task_id FROM messages WHERE sender = $member)))
             AND ($since IS NULL OR recorded_at >= CAST($since AS TIMESTAMP))
           ORDER BY recorded_at DESC, id DESC LIMIT $limit""",
    ),
    "team.transcripts": (
        TeamParams,
        """SELECT captured_at, member, role, pane_id, reason, lines, text
           FROM pane_transcripts
           WHERE team = $team AND ($since IS NULL OR captured_at >= CAST($since AS TIMESTAMP))
             AND ($member IS NULL OR member = $member)
           ORDER BY captured_at DESC LIMIT $limit""",
    ),
    "batches.recent": (
        RecentMessages,
        """SELECT id, status, units, backend, created_at, finished_at, instruction
           FROM batches WHERE $kind IS NULL OR status = $kind
           ORDER BY created_at DESC LIMIT $limit""",
    ),
    "batch.get": (
        BatchParams,
        """SELECT id, instruction, spec, status, units, backend, applied, created_at,
                  updated_at, finished_at
           FROM batches WHERE id = $batch_id OR id LIKE $batch_id || '%'
           ORDER BY created_at DESC LIMIT 2""",
    ),
    "batch.units": (
        BatchParams,
        """SELECT unit_id, name, source, files, status, attempts, score, verify_passed,
                  files_changed, tokens, cost_usd, duration_s, summary, error, worker,
                  finished_at, diff
           FROM batch_units WHERE batch_id = $batch_id ORDER BY name""",
    ),
    "views.columns": (
        NoParams,
        """SELECT table_name AS view, column_name AS column, data_type AS type
           FROM information_schema.columns WHERE table_schema = 'records'
           ORDER BY table_name, ordinal_position""",
    ),
    "task.replay": (
        TaskParams,
        # What shoal replay needs of a recorded task: its request, options and base.
        """SELECT id, description, cwd, options, base, parent, status, decision, score,
                  iterations, tokens, cost_usd, created_at, finished_at,
                  epoch(finished_at) - epoch(created_at) AS duration_s
           FROM tasks WHERE id = $task_id OR id LIKE $task_id || '%' ORDER BY created_at DESC
           LIMIT 2""",
    ),
    "tasks.last_here": (
        RepoParams,
        # What `shoal undo` undoes: the latest top-level task that ended in this repository.
        """SELECT id FROM tasks
           WHERE parent IS NULL AND finished_at IS NOT NULL
             AND (cwd = $repo OR starts_with(cwd, $repo || '/'))
           ORDER BY created_at DESC LIMIT 1""",
    ),
    "replay.candidates": (
        SinceParams,
        """SELECT id, cwd FROM tasks
           WHERE parent IS NULL AND base IS NOT NULL AND (options->>'replay_of') IS NULL
             AND status IN ('accepted', 'unaccepted', 'failed')
             AND ($since IS NULL OR created_at >= CAST($since AS TIMESTAMP))
           ORDER BY created_at DESC LIMIT 10000""",
    ),
    "batches.overview": (
        RecentMessages,
        # The dashboard's list: each batch with how many of its units ended how.
        """SELECT b.id, b.status, b.units, b.backend, b.created_at, b.finished_at,
                  b.instruction,
                  count(u.unit_id) FILTER (u.status <> 'pending') AS finished,
                  count(u.unit_id) FILTER (u.status = 'accepted') AS accepted,
                  count(u.unit_id) FILTER (u.status IN ('rejected', 'failed', 'lost',
                                                        'conflict')) AS not_accepted,
                  coalesce(sum(u.tokens), 0) AS tokens, coalesce(sum(u.cost_usd), 0) AS cost_usd
           FROM batches b LEFT JOIN batch_units u ON u.batch_id = b.id
           WHERE $kind IS NULL OR b.status = $kind
           GROUP BY ALL ORDER BY b.created_at DESC LIMIT $limit""",
    ),
    "batch.started": (
        BatchParams,
        # Units handed to a worker (the driver's batch.unit.started events), with their
        # latest attempt: a pending one of a running batch is running.
        """SELECT body->'payload'->>'unit_id' AS unit_id,
                  max(CAST(body->'payload'->>'attempt' AS INTEGER)) AS attempt
           FROM messages
           WHERE kind = 'batch.unit.started' AND body->'payload'->>'batch_id' = $batch_id
           GROUP BY ALL""",
    ),
    "costs.series": (
        CostSeriesParams,
        """SELECT date_trunc($bucket, happened_at) AS t,
                  CASE WHEN $by = 'model' THEN coalesce(model, '?') ELSE role END AS key,
                  sum(calls) AS calls, sum(prompt_tokens + completion_tokens) AS tokens,
                  sum(cost_usd) AS cost_usd
           FROM usage_events WHERE happened_at >= CAST($since AS TIMESTAMP)
           GROUP BY ALL ORDER BY t, key""",
    ),
}
QUERIES.update(STATS_QUERIES)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def run_query(
    con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]
) -> StoreQueryResult:
    if name not in QUERIES:
        raise QueryError(f"unknown query {name!r}; known: {', '.join(sorted(QUERIES))}")
    model, sql = QUERIES[name]
    try:
        values = model.model_validate(params).model_dump()
    except ValidationError as exc:
        raise QueryError(f"{name}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
    used = {k: v for k, v in values.items() if f"${k}" in sql}
    cur = con.execute(sql, used)
    columns = [d[0] for d in cur.description]
    rows = [[_jsonable(v) for v in row] for row in cur.fetchall()]
    return StoreQueryResult(columns=columns, rows=rows)


def read_file(home: Home, name: str, params: dict[str, Any]) -> StoreQueryResult:
    """Run a named query on the database file opened read-only (see :func:`on_file`).

    Clients call :func:`shoal.client.query`, which asks the orchestrator when one runs.
    """
    return on_file(home, lambda con: run_query(con, name, params))


class OutdatedFile(Exception):
    """The file needs migrating first, which only its writer (the orchestrator) does."""


def on_file(home: Home, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """``work`` on the database file opened read-only (closed afterwards).

    DatabaseBusy: a writer holds the file; OutdatedFile: it needs migrating first; a
    missing or damaged file is one line saying so (never shown as an empty history).
    """
    import duckdb

    from shoal.store.database import DatabaseInvalid, missing, open_reader, unusable
    from shoal.store.migrations import LATEST, current_version

    if not home.database.exists():
        raise missing(home.database) or QueryError(
            f"no database yet at {home.database}; run a command that records first"
        )
    con = open_reader(home.database)
    try:
        if current_version(con) < LATEST:
            raise OutdatedFile(str(home.database))
        return work(con)
    except duckdb.Error as exc:  # a damaged block shows only when it is read
        error = unusable(home.database, exc)
        if isinstance(error, DatabaseInvalid):
            raise error from None
        raise
    finally:
        con.close()
