"""shoal sql and shoal stats over a large history: what the views and the checks cost.

    python3 scripts/bench_sql.py [--tasks 10000] [--repeat 5] [--json]

Builds a database of ``--tasks`` recorded tasks (two iterations each, eight tool
calls per iteration, usage rows, a finding, other messages: about 30 messages a
task), then times, as the median of ``--repeat`` runs:

- ``shoal stats``'s five named queries (one read-only connection), against a
  baseline query that sums the same totals straight from the tables;
- a user query through ``usersql.run`` (parser check, parse-tree check,
  read-only transaction) against the same SELECT on the connection;
- the Parquet export of every view;
- ``shoal sql "select count(*) from tasks"`` as a command, from the file and
  through a running orchestrator (process start included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from shoal import daemon
from shoal.paths import Home
from shoal.store import usersql
from shoal.store.database import open_reader, open_writer
from shoal.store.queries import run_query


def build(path: Path, tasks: int) -> None:
    con = open_writer(path)
    con.execute(
        """INSERT INTO tasks (id, description, cwd, options, status, phase, score, iterations,
               tokens, cost_usd, created_at, updated_at, finished_at)
           SELECT 't' || i, ['fix ', 'add ', 'refactor ', 'review '][i % 4 + 1] || 'thing ' || i,
                  '/repo/' || (i % 5),
                  '{"models": {"executor": {"model": "m' || (i % 3) || '"}}}',
                  ['accepted', 'unaccepted', 'failed'][i % 3 + 1], 'done', (i % 100) / 100.0,
                  2, 1000, 0.01, TIMESTAMP '2025-01-01' + INTERVAL (i % 60) DAY,
                  now(), TIMESTAMP '2025-01-01' + INTERVAL (i % 60) DAY + INTERVAL 90 SECOND
           FROM range($n) r(i)""",
        {"n": tasks},
    )
    con.execute(
        """INSERT INTO iterations SELECT 't' || i, n, 0.5, 0.5, '{}', '[]', 'abc', 's', 8, 500,
               0.005, 30.0, 'refine', now() FROM range($n) r(i), range(1, 3) k(n)""",
        {"n": tasks},
    )
    con.execute(
        """INSERT INTO usage_events
           SELECT now(), 't' || i, ['planner', 'executor', 'evaluator'][k + 1],
               'm' || (i % 3), 1, 300, 33, 0.003 FROM range($n) r(i), range(3) s(k)""",
        {"n": tasks},
    )
    con.execute(
        """INSERT INTO findings SELECT 't' || i, 1, 'important', 'finding ' || (i % 20), '', ''
           FROM range($n) r(i)""",
        {"n": tasks},
    )
    con.execute(
        """INSERT INTO messages
           SELECT 'm' || i || '-' || k, CASE WHEN k < 16 THEN 'exec.event' ELSE 'exec.result' END,
                  'executor-1', '*', 't' || i, NULL, 1, now(), now(), false,
                  CASE WHEN k < 16 THEN json_object('kind', 'exec.event', 'payload',
                      json_object('type', 'tool_call', 'iteration', k // 8 + 1,
                                  'name', ['read_file', 'edit_file', 'shell', 'grep'][k % 4 + 1],
                                  'detail', '{"path": "a.py"}', 'ok', k % 7 <> 0))
                       ELSE json_object('kind', 'exec.result', 'payload', json_object('n', k))
                  END
           FROM range($n) r(i), range(30) s(k)""",
        {"n": tasks},
    )
    con.close()


def median_s(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


STATS = [
    ("stats.groups", {"by": "all"}),
    ("stats.groups", {"by": "model"}),
    ("stats.daily", {"by": "model"}),
    ("stats.findings", {}),
    ("stats.tools", {}),
]
BASELINE = """SELECT count(*), count(*) FILTER (WHERE status = 'accepted'), avg(iterations),
                     (SELECT sum(prompt_tokens + completion_tokens) FROM main.usage_events)
              FROM main.tasks WHERE parent IS NULL"""
USER = "select status, count(*) as n, sum(cost_usd) from tasks group by 1"


def timings(home: Home, repeat: int) -> dict[str, float]:
    con = open_reader(home.database)
    out = {
        "stats_s": median_s(lambda: [run_query(con, n, p) for n, p in STATS], repeat),
        "stats_baseline_s": median_s(lambda: con.execute(BASELINE).fetchall(), repeat),
        "user_sql_s": median_s(lambda: usersql.run(con.cursor(), USER), repeat),
        "plain_sql_s": median_s(
            lambda: con.execute(USER.replace("from tasks", "from records.tasks")).fetchall(),
            repeat,
        ),
    }
    with tempfile.TemporaryDirectory() as out_dir:
        out["export_s"] = median_s(lambda: usersql.export(con.cursor(), Path(out_dir)), repeat)
        out["export_mb"] = sum(p.stat().st_size for p in Path(out_dir).iterdir()) / 1e6
    con.close()
    return out


def cli_s(repeat: int) -> float:
    command = [sys.executable, "-m", "shoal", "sql", "select count(*) from tasks", "--json"]
    return median_s(lambda: subprocess.run(command, check=True, capture_output=True), repeat)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="/tmp/shB-") as root:
        os.environ.update(SHOAL_HOME=root, SHOAL_PRELOAD="", SHOAL_IDLE_TIMEOUT="0")
        home = Home.resolve(root).ensure()
        t0 = time.perf_counter()
        build(home.database, args.tasks)
        figures = {"tasks": args.tasks, "build_s": time.perf_counter() - t0}
        figures["messages"] = (
            duckdb.connect(str(home.database), read_only=True)
            .execute("select count(*) from messages")
            .fetchall()[0][0]
        )
        figures.update(timings(home, args.repeat))
        figures["cli_file_s"] = cli_s(args.repeat)
        daemon.start(home)
        try:
            figures["cli_orchestrator_s"] = cli_s(args.repeat)
        finally:
            daemon.stop(home)
    report(figures, args.json)


def report(f: dict[str, float], as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: round(v, 4) for k, v in f.items()}))
        return
    print(f"shoal sql/stats over {f['tasks']:,} tasks, {f['messages']:,} messages "
          f"(built in {f['build_s']:.1f} s; median of runs)")  # fmt: skip
    rows = [
        ("shoal stats, five queries", f["stats_s"], f["stats_s"] / f["stats_baseline_s"],
         "x the totals straight from the tables"),
        ("user SELECT through usersql.run", f["user_sql_s"], f["user_sql_s"] / f["plain_sql_s"],
         "x the same SELECT on the connection"),
        ("export of every view to Parquet", f["export_s"], None, f"{f['export_mb']:.1f} MB"),
        ("shoal sql command, from the file", f["cli_file_s"], None, "process start included"),
        ("shoal sql command, orchestrator", f["cli_orchestrator_s"],
         f["cli_orchestrator_s"] / f["cli_file_s"], "x from the file"),
    ]  # fmt: skip
    for name, seconds, ratio, note in rows:
        shown = f"{ratio:6.2f}{note}" if ratio is not None else f"  {note}"
        print(f"  {name:<36} {seconds * 1000:9.1f} ms  {shown}")


if __name__ == "__main__":
    main()
