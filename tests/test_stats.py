"""shoal stats: figures over the records, checked against sums made by hand from the tables."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shoal import daemon
from shoal.cli.stats import bar, parse_since, sparkline
from shoal.paths import Home
from tests.conftest import shoal
from tests.test_cli import assert_one_line_error
from tests.test_sql import ALPHA, BETA, GAMMA, three_tasks


def stats_json(*args: str) -> dict[str, Any]:
    return json.loads(shoal("stats", *args, "--json", check=True).stdout)


def raw(home: Home) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Tasks, usage and tool calls straight from the tables (not the views)."""
    con = duckdb.connect(str(home.database), read_only=True)
    try:

        def rows(sql: str) -> list[dict[str, Any]]:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        tasks = rows("select * from main.tasks where parent is null")
        usage = rows("select * from main.usage_events")
        calls = rows(
            "select task_id, body->'payload'->>'name' as name, body->'payload'->>'ok' as ok "
            "from main.messages where kind = 'exec.event' "
            "and body->'payload'->>'type' = 'tool_call'"
        )
    finally:
        con.close()
    return tasks, usage, calls


def by_hand(tasks: list[dict[str, Any]], usage: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of ``tasks`` as README's "shoal stats" defines them."""
    ids = {t["id"] for t in tasks}
    mine = [u for u in usage if u["task_id"] in ids]
    ended = [t for t in tasks if t["status"] != "running"]
    accepted = [t for t in tasks if t["status"] == "accepted"]
    to_accept = [(t["finished_at"] - t["created_at"]).total_seconds() for t in accepted]
    return {
        "tasks": len(tasks),
        **{s: sum(t["status"] == s for t in tasks)
           for s in ("accepted", "unaccepted", "failed", "cancelled", "running")},
        "acceptance_rate": len(accepted) / len(ended) if ended else None,
        "iterations_per_task": sum(t["iterations"] for t in ended) / len(ended),
        "mean_time_to_accept_s": sum(to_accept) / len(to_accept) if to_accept else None,
        "calls": sum(u["calls"] for u in mine),
        "tokens": sum(u["prompt_tokens"] + u["completion_tokens"] for u in mine),
        "cost_usd": sum(u["cost_usd"] for u in mine),
    }  # fmt: skip


def assert_figures(got: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-3), (name, got, expected)


def test_stats_json_matches_sums_made_by_hand_over_the_same_records(
    home: Home, tmp_path: Path
) -> None:
    ids = three_tasks(tmp_path)
    through_orchestrator = {by: stats_json("--since", "all", *by) for by in ((), ("--by", "role"))}
    daemon.stop(home)
    tasks, usage, calls = raw(home)
    assert len(tasks) == 3 and usage
    figures = stats_json("--since", "all")  # from the file, read-only
    assert figures == through_orchestrator[()]
    assert figures["since"] is None and figures["by"] is None and figures["groups"] == []
    assert_figures(figures["totals"], by_hand(tasks, usage))
    assert figures["totals"]["acceptance_rate"] == pytest.approx(1 / 3)
    assert figures["totals"]["tokens"] > 0 and figures["totals"]["calls"] >= 5
    # The period: everything is from today; nothing is from the future.
    assert stats_json()["totals"] == figures["totals"]  # --since 30d, the default
    assert stats_json("--since", "2099-01-01")["totals"]["tasks"] == 0
    # By role: each role's own tokens and cost, over the tasks it worked on.
    roles = {g["key"]: g for g in stats_json("--since", "all", "--by", "role")["groups"]}
    assert roles == {g["key"]: g for g in through_orchestrator[("--by", "role")]["groups"]}
    per_role: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for u in usage:
        per_role[u["role"]].append(u)
    assert set(roles) == set(per_role) == {"planner", "executor", "evaluator"}
    for role, used in per_role.items():
        worked_on = [t for t in tasks if any(u["task_id"] == t["id"] for u in used)]
        assert_figures(roles[role], {**by_hand(worked_on, used), "tasks": len(worked_on)})
    assert roles["evaluator"]["tasks"] == 2  # the failed task never reached its judge
    # By category (the evaluator's words), model, day and repository.
    by_category = {g["key"]: g for g in stats_json("--since", "all", "--by", "category")["groups"]}
    assert {k: g["tasks"] for k, g in by_category.items()} == {
        "bugfix": 1, "review": 1, "general": 1,
    }  # fmt: skip
    for key, description in (("bugfix", ALPHA), ("review", BETA), ("general", GAMMA)):
        alone = [t for t in tasks if t["description"] == description]
        assert_figures(by_category[key], by_hand(alone, usage))
    for by, key in (
        ("model", "openai/scripted-executor"),
        ("day", dt.datetime.now(dt.UTC).date().isoformat()),
        ("repo", str(tmp_path / "repo")),
    ):
        grouped = stats_json("--since", "all", "--by", by)
        assert [g["key"] for g in grouped["groups"]] == [key], by
        assert_figures(grouped["groups"][0], by_hand(tasks, usage))
        assert sum(d["tasks"] for d in grouped["daily"]) == 3
    # What failed most: the beta task's finding, and the read of a missing file.
    assert figures["findings"] == [
        {"title": "nothing was changed", "severity": "blocker", "times": 1, "tasks": 1}
    ]
    reads = [c for c in calls if c["name"] == "read_file"]
    failed = [c for c in reads if c["ok"] == "false"]
    assert figures["tools"] == [
        {"name": "read_file", "calls": len(reads), "failed": len(failed),
         "failure_rate": len(failed) / len(reads)},
    ]  # fmt: skip
    assert (len(failed), {c["task_id"] for c in failed}) == (1, {ids["accepted"]})


def in_terminal(*args: str, columns: int = 160) -> str:
    """The CLI's output with its stdout on a pseudo-terminal ``columns`` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", *args],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
        env={**env, "TERM": "xterm-256color"},
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode()


def test_a_terminal_gets_tables_with_bars_and_sparklines_and_a_pipe_plain_text(
    home: Home, tmp_path: Path
) -> None:
    three_tasks(tmp_path)
    rich = in_terminal("stats", "--by", "category")
    assert "\x1b[" in rich and "█" in rich and "░" in rich  # colours and inline bars
    assert "bugfix" in rich and "[blocker] nothing was changed" in rich
    assert "most frequent findings" in rich and "tools that fail most" in rich
    plain = shoal("stats", "--by", "category", check=True).stdout
    assert "\x1b[" not in plain and "█" not in plain and "░" not in plain
    lines = plain.splitlines()
    assert lines[0].startswith("shoal stats: since ") and lines[0].endswith(", by category")
    header = lines[1].split()
    assert header == ["category", "tasks", "accepted", "rate", "iter/task", "to", "accept",
                      "tokens", "cost"]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[2:6]}
    assert rows["all"][1:4] == ["3", "1", "33%"]
    assert rows["bugfix"][1:4] == ["1", "1", "100%"]
    assert "  1x [blocker] nothing was changed (1 tasks)" in lines
    assert "  read_file: 1 of 2 calls failed (50%)" in lines
    table = in_terminal("sql", "select status from tasks order by status")
    assert "accepted" in table and "3 rows" in table


def test_charts_since_and_bad_usage() -> None:
    assert bar(0.3) == "███░░░░░░░" and bar(None) == " " * 10 and bar(1.5, 4) == "████"
    assert sparkline([0, 1, 2, 4]) == "▁▂▄█" and sparkline([0, 0]) == "▁▁" and sparkline([]) == ""
    now = dt.datetime(2025, 3, 31, 12, 0, 0)
    assert parse_since("30d", now) == "2025-03-01 12:00:00"
    assert parse_since("12h", now) == "2025-03-31 00:00:00"
    assert parse_since("2w", now) == "2025-03-17 12:00:00"
    assert parse_since("all", now) is None
    assert parse_since("2025-01-31", now) == "2025-01-31 00:00:00"
    assert parse_since("2025-01-31T10:00:00+02:00", now) == "2025-01-31 08:00:00"
    for args, needle in ((("--since", "yesterday"), "--since"), (("--by", "colour"), "--by")):
        result = shoal("stats", *args)
        assert result.returncode == 2
        assert_one_line_error(result, needle)


def test_stats_without_records_say_so(home: Home) -> None:
    assert stats_json()["totals"]["tasks"] == 0
    assert shoal("stats", check=True).stdout.splitlines()[1] == "no tasks in this period"
