"""Skills and how they did: ``task_skills`` (which skills a task was shown) and
``skill_effectiveness`` (their running mean score), which skill selection reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.store.statements import Statement

if TYPE_CHECKING:
    import duckdb


def shown(cur: duckdb.DuckDBPyConnection, task_id: str, skills: list[str]) -> None:
    """Note that a task's prompt carried these skills."""
    for skill in skills:
        cur.execute("INSERT OR IGNORE INTO task_skills VALUES (?, ?)", [task_id, skill])


def effectiveness(cur: duckdb.DuckDBPyConnection) -> dict[str, tuple[float, int]]:
    """skill -> (mean score, samples)."""
    rows = cur.execute("SELECT skill, mean_score, samples FROM skill_effectiveness").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def credit(task_id: str, score: float, at: str) -> Statement:
    """Count an ended task's score into the mean of every skill it was shown."""
    return (
        """INSERT INTO skill_effectiveness
           SELECT skill, 1, ?, ? FROM task_skills WHERE task_id = ?
           ON CONFLICT (skill) DO UPDATE SET
               mean_score = (skill_effectiveness.mean_score * skill_effectiveness.samples
                             + excluded.mean_score) / (skill_effectiveness.samples + 1),
               samples = skill_effectiveness.samples + 1,
               updated_at = excluded.updated_at""",
        [score, at, task_id],
    )
