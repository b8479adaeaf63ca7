"""Tasks and their steps: ``tasks``, ``iterations``, ``findings``, ``usage_events``.

Written only by the orchestrator's scheduler, as :data:`Statement` s queued on the
recorder (a task's row is written at every step); read back by ``resume`` after a
restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.store.statements import Statement

if TYPE_CHECKING:
    import duckdb

FIXED = ("id", "description", "cwd", "options", "requester", "created_at", "parent")
"""What a task's row keeps from its submission."""
CHANGING = (
    "status", "phase", "decision", "score", "best_iteration", "iterations", "tokens",
    "cost_usd", "plan", "base", "files_changed", "summary", "updated_at", "finished_at",
    "subtasks",
)  # fmt: skip
"""What each step of a task may change."""

_INSERT = (
    f"INSERT OR REPLACE INTO tasks ({', '.join(FIXED + CHANGING)}) "
    f"VALUES ({', '.join('?' * len(FIXED + CHANGING))})"
)
_UPDATE = f"UPDATE tasks SET {', '.join(f'{c} = ?' for c in CHANGING)} WHERE id = ?"


def insert(fixed: list[Any], changing: list[Any]) -> Statement:
    """A task's first row: the values of :data:`FIXED` then of :data:`CHANGING`."""
    return _INSERT, [*fixed, *changing]


def update(task_id: str, changing: list[Any]) -> Statement:
    """A task's row at a later step (an UPDATE costs DuckDB a third of an INSERT OR REPLACE)."""
    return _UPDATE, [*changing, task_id]


def iteration(values: list[Any]) -> Statement:
    """An evaluated iteration: task_id, n, score, judge_score, dimensions, checks, snapshot,
    summary, tool_calls, tokens, cost_usd, duration_s, decision, created_at."""
    return (
        "INSERT OR REPLACE INTO iterations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        values,
    )


def finding(
    task_id: str, iteration: int, severity: str, title: str, detail: str, fix: str
) -> Statement:
    return (
        "INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?)",
        [task_id, iteration, severity, title, detail, fix],
    )


def usage(
    at: str,
    task_id: str,
    role: str,
    model: str,
    calls: int,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float,
) -> Statement:
    """What one step's model calls cost."""
    return (
        "INSERT INTO usage_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [at, task_id, role, model, calls, prompt_tokens, completion_tokens, cost_usd],
    )


# --- read back after a restart (resume.py) ---------------------------------------------


def running(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """Tasks recorded as running, oldest first: id, description, cwd, options, requester,
    plan, base, iterations, created_at, decision, parent, phase."""
    return con.execute(
        """SELECT id, description, cwd, options, requester, plan, base, iterations, created_at,
                  decision, parent, phase
           FROM tasks WHERE status = 'running' ORDER BY created_at"""
    ).fetchall()


def ended(con: duckdb.DuckDBPyConnection) -> int:
    """How many tasks the records hold as ended."""
    return con.execute("SELECT count(*) FROM tasks WHERE status <> 'running'").fetchall()[0][0]


def iterations(con: duckdb.DuckDBPyConnection, task_id: str) -> list[tuple[int, float, str]]:
    """(n, score, snapshot) of a task's evaluated iterations, in order."""
    return con.execute(
        "SELECT n, score, snapshot FROM iterations WHERE task_id = ? ORDER BY n", [task_id]
    ).fetchall()


def findings(
    con: duckdb.DuckDBPyConnection, task_id: str, iteration: int
) -> list[tuple[str, str, str | None, str | None]]:
    """(severity, title, detail, fix) of one iteration's findings."""
    return con.execute(
        "SELECT severity, title, detail, fix FROM findings WHERE task_id = ? AND iteration = ?",
        [task_id, iteration],
    ).fetchall()


def spent(con: duckdb.DuckDBPyConnection, task_id: str) -> tuple[int, int, int, float]:
    """(calls, prompt tokens, completion tokens, cost) of a task's model calls so far."""
    ((calls, prompt, completion, cost),) = con.execute(
        """SELECT coalesce(sum(calls), 0), coalesce(sum(prompt_tokens), 0),
                  coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0)
           FROM usage_events WHERE task_id = ?""",
        [task_id],
    ).fetchall()
    return calls, prompt, completion, cost
