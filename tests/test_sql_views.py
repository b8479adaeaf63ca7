"""The views shoal sql reads are a public interface: documented, and kept across migrations."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shoal.store import migrations, usersql
from shoal.store.views import VIEWS
from tests.conftest import REPO

# The interface as users see it. Changing a view's columns is a breaking change for
# everyone's saved queries: this list, views.py and the README change together or not at all.
PUBLIC = {
    "tasks": [
        "task_id", "parent_id", "replay_of", "kind", "description", "cwd", "repo", "status",
        "decision", "score", "best_iteration", "iterations", "tokens", "cost_usd",
        "planner_model", "executor_model", "evaluator_model", "permission_mode", "created_at",
        "finished_at", "duration_s", "files_changed", "summary",
    ],
    "iterations": [
        "task_id", "iteration", "score", "judge_score", "decision", "tool_calls", "tokens",
        "cost_usd", "duration_s", "dimensions", "checks", "snapshot", "summary", "finished_at",
    ],
    "tool_calls": ["message_id", "task_id", "iteration", "name", "detail", "ok", "recorded_at"],
    "findings": ["task_id", "iteration", "severity", "title", "detail", "fix"],
    "costs": [
        "recorded_at", "task_id", "role", "model", "calls", "prompt_tokens", "completion_tokens",
        "tokens", "cost_usd",
    ],
    "learnings": [
        "learning_id", "kind", "content", "confidence", "uses", "source_task", "team",
        "created_at", "last_used_at", "forgotten",
    ],
    "messages": [
        "message_id", "kind", "sender", "recipient", "task_id", "reply_to", "attempt",
        "sent_at", "recorded_at", "payload",
    ],
}  # fmt: skip


def columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    rows = con.execute(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'records' order by table_name, ordinal_position"
    ).fetchall()
    found: dict[str, list[str]] = {}
    for view, column in rows:
        found.setdefault(view, []).append(column)
    return found


def readme_views() -> dict[str, list[str]]:
    """The views table of the README's "Your work as data"."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Your work as data", 1)[1].split("\n## ", 1)[0]
    found = {}
    for line in section.splitlines():
        match = re.match(r"^\| `(\w+)` \| [^|]+ \| (.+) \|$", line)
        if match:
            found[match[1]] = re.findall(r"`(\w+)`", match[2])
    return found


def test_the_views_are_the_documented_interface_after_every_migration() -> None:
    con = duckdb.connect()
    migrations.migrate(con)
    assert columns(con) == {view: PUBLIC[view] for view in sorted(PUBLIC)}
    assert {view: list(cols) for view, (_, cols) in VIEWS.items()} == PUBLIC
    assert readme_views() == PUBLIC


def record(con: duckdb.DuckDBPyConnection) -> None:
    """Records as shoal writes them: two tasks (one a replay of the other) and their rows."""
    options = {
        "models": {
            "planner": {"model": "openai/p"},
            "executor": {"model": "openai/e"},
            "default": {"model": "openai/d"},
        },
        "permission_mode": "accept-edits",
    }
    replay = {**options, "models": {"executor": {"model": "openai/x"}}, "replay_of": "T1"}
    for task_id, opts, status, score, tokens, cost in (
        ("T1", options, "accepted", 0.9, 150, 0.25),
        ("T2", replay, "unaccepted", 0.4, 90, 0.5),
    ):
        con.execute(
            "insert into tasks (id, description, cwd, options, status, phase, score, "
            "iterations, tokens, cost_usd, files_changed, created_at, updated_at, finished_at) "
            "values (?, 'fix calc', ?, ?, ?, 'done', ?, 1, ?, ?, '[\"calc.py\"]', "
            "'2025-03-01 10:00:00', '2025-03-01 10:01:00', '2025-03-01 10:01:30')",
            [task_id, f"/r/{task_id}", json.dumps(opts), status, score, tokens, cost],
        )
        con.execute(
            "insert into iterations values (?, 1, ?, ?, '{\"correctness\": 0.9}', '[]', 'abc', "
            "'did it', 3, ?, ?, 12.5, 'quality', '2025-03-01 10:01:00')",
            [task_id, score, score, tokens, cost],
        )
        con.execute(
            "insert into usage_events values ('2025-03-01 10:00:30', ?, 'executor', ?, 2, ?, "
            "10, ?)",
            [task_id, opts["models"]["executor"]["model"], tokens - 10, cost],
        )
    con.execute("insert into findings values ('T2', 1, 'blocker', 'still wrong', 'd', 'f')")
    for n, ok in enumerate((True, False)):
        body = {"kind": "exec.event", "payload": {"type": "tool_call", "iteration": 1,
                "name": "shell", "detail": "pytest", "ok": ok}}  # fmt: skip
        con.execute(
            "insert into messages values (?, 'exec.event', 'executor-1', '*', 'T2', NULL, 1, "
            "'2025-03-01 10:00:40', '2025-03-01 10:00:41', false, ?)",
            [f"M{n}", json.dumps(body)],
        )
    con.execute(
        "insert into learnings (id, kind, content, confidence, uses, source_task, created_at, "
        "last_used_at, embedding, embedder) values ('L1', 'insight', 'run pytest', 0.7, 2, "
        "'T1', '2025-03-01', '2025-03-02', list_value(" + ", ".join(["0.0"] * 256) + "), 'x')"
    )


# Queries a user saved against the views: the README's, and some of every view.
SAVED = {
    "statuses": "select status, count(*) as n from tasks group by 1 order by 1",
    "by model": "select executor_model, avg(score), sum(cost_usd) from tasks "
    "where kind = 'task' group by 1",
    "failing tools": "select name, count(*) filter (where not ok) as failed from tool_calls "
    "group by 1 order by 2 desc",
    "replays": "select r.task_id, o.score as before, r.score as after, r.repo from tasks r "
    "join tasks o on o.task_id = r.replay_of",
    "first file": "select task_id, files_changed ->> 0 as file, duration_s from tasks order by 1",
    "iterations": "select task_id, i.iteration, i.score, i.dimensions ->> 'correctness' as c, "
    "i.tokens, t.kind from iterations i join tasks t using (task_id) order by 1",
    "findings": "select t.kind, f.severity, f.title from findings f join tasks t using (task_id)",
    "costs": "select role, model, sum(tokens), sum(cost_usd) from costs group by all order by 2",
    "learnings": "select learning_id, content, uses, forgotten from learnings",
    "messages": "select kind, payload ->> 'name' as tool, count(*) from messages group by all",
}


def saved_answers(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    return {name: usersql.run(con.cursor(), sql).rows for name, sql in SAVED.items()}


# A later migration as one would write it: it adds a column, renames another (and keeps the
# view that read it), and rebuilds a table.
LATER = """
    ALTER TABLE tasks ADD COLUMN category VARCHAR;
    ALTER TABLE usage_events RENAME COLUMN cost_usd TO cost;
    CREATE OR REPLACE VIEW records.costs AS
    SELECT happened_at AS recorded_at, task_id, role, model, calls, prompt_tokens,
           completion_tokens, prompt_tokens + completion_tokens AS tokens, cost AS cost_usd
    FROM main.usage_events;
    CREATE TABLE findings_rebuilt AS SELECT *, NULL::VARCHAR AS category FROM findings;
    DROP TABLE findings;
    ALTER TABLE findings_rebuilt RENAME TO findings;
"""


def test_saved_queries_survive_the_views_arrival_and_a_later_schema_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = duckdb.connect(str(tmp_path / "shoal.duckdb"))
    # A file recorded by a shoal from before the views: migrated up to 8, records in it.
    before_views = [m for m in migrations.MIGRATIONS if m[0] < 9]
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", before_views)
        migrations.migrate(con)
    record(con)
    assert migrations.migrate(con) == migrations.LATEST  # the views arrive over old records
    answers = saved_answers(con)
    assert answers["statuses"] == [["accepted", 1], ["unaccepted", 1]]
    assert answers["by model"] == [["openai/e", 0.9, 0.25]]
    assert answers["failing tools"] == [["shell", 1]]
    assert answers["replays"] == [["T2", 0.9, 0.4, "/r/T1"]]
    assert answers["first file"] == [["T1", "calc.py", 90.0], ["T2", "calc.py", 90.0]]
    assert answers["costs"] == [
        ["executor", "openai/e", 150, 0.25],
        ["executor", "openai/x", 90, 0.5],
    ]
    later = (migrations.LATEST + 1, "a later schema change", LATER)
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, later])
    assert migrations.migrate(con) == migrations.LATEST + 1
    assert con.execute("select count(*) from main.findings where category is null").fetchall()
    assert saved_answers(con) == answers
    assert columns(con) == {view: PUBLIC[view] for view in sorted(PUBLIC)}
    con.close()
