"""The queries behind ``shoal stats``: figures over the public views, grouped one way.

What counts (README, "shoal stats"): tasks are top-level tasks (subtasks and
subagents are part of the task that started them) created since ``since``;
their tokens and cost are every model call of the task and its children
(``costs`` rows, each counted once). A task's group is its executor's model,
the day it was submitted (UTC), its repository, or its category (the words
of its description, as the evaluator picks a rubric). By role, a task is in
the group of every role that made a model call for it, with that role's own
tokens and cost, so per-role tasks add up to more than the tasks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Grouping = Literal["all", "model", "role", "day", "repo", "category"]


class CategoryWord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str = Field(max_length=64)
    word: str = Field(min_length=1, max_length=64)
    rank: int = Field(ge=0)
    """Categories are tried in rank order; the first with a word in the description wins."""


class StatsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str | None = Field(None, max_length=40)
    """ISO time (UTC): only tasks submitted from then on; None: all."""
    by: Grouping = "all"
    categories: list[CategoryWord] = Field(default_factory=list, max_length=1000)
    limit: int = Field(10, ge=1, le=1000)
    """Rows of the findings and tools lists."""


# Tasks and the top-level task each belongs to, then the tasks in scope with their group.
_SCOPE = """
WITH RECURSIVE roots(id, root) AS (
    SELECT task_id, task_id FROM records.tasks WHERE parent_id IS NULL
    UNION ALL
    SELECT t.task_id, r.root FROM records.tasks t JOIN roots r ON t.parent_id = r.id
),
words AS (
    SELECT w.category, w.word, w.rank
    FROM (SELECT unnest(CAST($categories AS STRUCT(category VARCHAR, word VARCHAR,
                                                   rank INTEGER)[]), recursive := true)) w
),
scope AS (
    SELECT t.*,
           CASE $by
               WHEN 'model' THEN coalesce(t.executor_model, '-')
               WHEN 'day' THEN strftime(t.created_at, '%Y-%m-%d')
               WHEN 'repo' THEN t.repo
               WHEN 'category' THEN coalesce(
                   (SELECT arg_min(w.category, w.rank) FROM words w
                    WHERE contains(lower(t.description), lower(w.word))),
                   'general')
               ELSE 'all'
           END AS task_key
    FROM records.tasks t
    WHERE t.parent_id IS NULL
      AND ($since IS NULL OR t.created_at >= CAST($since AS TIMESTAMP))
),
usage AS (
    SELECT r.root, c.role, sum(c.calls) AS calls, sum(c.tokens) AS tokens,
           sum(c.cost_usd) AS cost_usd
    FROM records.costs c JOIN roots r ON c.task_id = r.id
    GROUP BY r.root, c.role
),
keyed AS (
    SELECT s.task_id, s.status, s.iterations, s.duration_s, s.created_at,
           CASE WHEN $by = 'role' THEN u.role ELSE s.task_key END AS key,
           coalesce(sum(u.calls), 0) AS calls,
           coalesce(sum(u.tokens), 0) AS tokens,
           coalesce(sum(u.cost_usd), 0.0) AS cost_usd
    FROM scope s LEFT JOIN usage u ON u.root = s.task_id
    GROUP BY ALL
)
"""

STATS_QUERIES: dict[str, tuple[type[BaseModel], str]] = {
    "stats.groups": (
        StatsParams,
        _SCOPE
        + """
SELECT key,
       count(*) AS tasks,
       count(*) FILTER (WHERE status = 'accepted') AS accepted,
       count(*) FILTER (WHERE status = 'unaccepted') AS unaccepted,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE status = 'running') AS running,
       count(*) FILTER (WHERE status = 'accepted')
           / nullif(count(*) FILTER (WHERE status <> 'running'), 0) AS acceptance_rate,
       avg(iterations) FILTER (WHERE status <> 'running') AS iterations_per_task,
       avg(duration_s) FILTER (WHERE status = 'accepted') AS mean_time_to_accept_s,
       sum(calls) AS calls,
       sum(tokens) AS tokens,
       sum(cost_usd) AS cost_usd
FROM keyed WHERE key IS NOT NULL
GROUP BY key ORDER BY CASE WHEN $by = 'day' THEN key END, tasks DESC, key""",
    ),
    "stats.daily": (
        StatsParams,
        _SCOPE
        + """
SELECT key, strftime(created_at, '%Y-%m-%d') AS day, count(*) AS tasks,
       count(*) FILTER (WHERE status = 'accepted') AS accepted,
       sum(tokens) AS tokens, sum(cost_usd) AS cost_usd
FROM keyed WHERE key IS NOT NULL
GROUP BY ALL ORDER BY key, day""",
    ),
    "stats.findings": (
        StatsParams,
        _SCOPE
        + """
SELECT f.title,
       CASE WHEN bool_or(f.severity = 'blocker') THEN 'blocker'
            WHEN bool_or(f.severity = 'important') THEN 'important'
            ELSE 'minor' END AS severity,
       count(*) AS times,
       count(DISTINCT s.task_id) AS tasks
FROM records.findings f JOIN roots r ON f.task_id = r.id JOIN scope s ON s.task_id = r.root
GROUP BY f.title ORDER BY times DESC, f.title LIMIT $limit""",
    ),
    "stats.tools": (
        StatsParams,
        _SCOPE
        + """
SELECT c.name,
       count(*) AS calls,
       count(*) FILTER (WHERE NOT c.ok) AS failed,
       count(*) FILTER (WHERE NOT c.ok) / count(*) AS failure_rate
FROM records.tool_calls c JOIN roots r ON c.task_id = r.id JOIN scope s ON s.task_id = r.root
GROUP BY c.name HAVING count(*) FILTER (WHERE NOT c.ok) > 0
ORDER BY failed DESC, failure_rate DESC, c.name LIMIT $limit""",
    ),
}
