"""shoal sql: read-only SQL over the records, through the orchestrator or the file itself."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shoal import client, daemon
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.mailbox.client import MailboxClient
from shoal.messages.actors import ActorSpawn, EchoRequest
from shoal.paths import Home
from shoal.store import usersql
from shoal.store.database import open_writer
from shoal.store.views import VIEWS
from tests.conftest import shoal
from tests.test_cli import assert_one_line_error
from tests.test_loop import call, make_repo, model_env, plan, verdict

ALPHA = "fix the add function (alpha)"  # accepted; category bugfix
BETA = "review calc.py and leave it (beta)"  # unaccepted; category review
GAMMA = "tidy up calc (gamma)"  # failed: the executor's model refuses; category general
BLOCKER = {"severity": "blocker", "title": "nothing was changed", "detail": "", "fix": ""}


def three_tasks(tmp_path: Path) -> dict[str, str]:
    """One accepted, one unaccepted and one failed task, run through the CLI; ids by status."""
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": {
                    "routes": {
                        "(alpha)": [
                            call("read_file", path="missing.py"),  # a failed tool call
                            call("read_file", path="calc.py"),
                            call(
                                "edit_file", path="calc.py", old_string="a - b", new_string="a + b"
                            ),
                            call("finish", summary="add now adds"),
                        ],
                        "(beta)": [call("finish", summary="left it as it was")],
                        "(gamma)": [{"status": 400, "error": {"message": "model refuses"}}],
                    }
                },
                "scripted-evaluator": {
                    "routes": {"(alpha)": [verdict(0.95)], "(beta)": [verdict(0.3, BLOCKER)]}
                },
            }
        }
    )
    ids: dict[str, str] = {}
    with ScriptedModelServer(script) as server:
        for description in (ALPHA, BETA, GAMMA):
            ran = shoal(
                "run", description, "-C", str(repo), "--json", "-i", "1",
                env=model_env(server), timeout=120,
            )  # fmt: skip
            assert ran.stdout.strip(), ran.stderr
            out = json.loads(ran.stdout)
            ids[out["status"]] = out["task_id"]
    assert set(ids) == {"accepted", "unaccepted", "failed"}, ids
    return ids


def sql_json(*args: str) -> list[dict[str, Any]]:
    result = shoal("sql", *args, "--json", check=True)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_three_tasks_are_queried_and_a_delete_is_refused_with_or_without_the_orchestrator(
    home: Home, tmp_path: Path
) -> None:
    ids = three_tasks(tmp_path)
    assert daemon.running_pid(home) is not None  # through the orchestrator first
    for path in ("orchestrator", "file"):
        counts = sql_json("select status, count(*) as n from tasks group by 1")
        assert {r["status"]: r["n"] for r in counts} == {
            "accepted": 1, "unaccepted": 1, "failed": 1,
        }, path  # fmt: skip
        refused = shoal("sql", "delete from tasks")
        assert refused.returncode == 1
        assert_one_line_error(refused, "DELETE statements are refused")
        assert sql_json("select count(*) as n from main.tasks") == [{"n": 3}], path
        shoal("orchestrator", "stop", check=True)  # then straight from the file, read-only
    assert daemon.running_pid(home) is None
    rows = sql_json(
        "select task_id, kind, status, executor_model, replay_of from tasks order by created_at"
    )
    assert [(r["task_id"], r["kind"], r["executor_model"], r["replay_of"]) for r in rows] == [
        (ids[s], "task", "openai/scripted-executor", None)
        for s in ("accepted", "unaccepted", "failed")
    ]
    calls = sql_json(f"select name, ok from tool_calls where task_id = '{ids['accepted']}'")
    assert [(c["name"], c["ok"]) for c in calls] == [
        ("read_file", False), ("read_file", True), ("edit_file", True), ("finish", True),
    ]  # fmt: skip
    judged = sql_json("select task_id, iteration, score from iterations order by score desc")
    assert [(j["task_id"], j["iteration"]) for j in judged] == [
        (ids["accepted"], 1), (ids["unaccepted"], 1),
    ]  # fmt: skip
    # The views agree with the tables they read: a task's tokens are its model calls.
    agree = sql_json(
        "select t.task_id, t.tokens, sum(c.tokens) as spent from tasks t "
        "join costs c using (task_id) group by all"
    )
    assert agree and all(a["tokens"] == a["spent"] for a in agree)
    csv = shoal("sql", "select status from tasks order by status", "--csv", check=True)
    assert csv.stdout == "status\naccepted\nfailed\nunaccepted\n"
    piped = shoal("sql", "select status, iterations from tasks order by status", check=True)
    assert piped.stdout.splitlines() == [
        "status\titerations", "accepted\t1", "failed\t1", "unaccepted\t1",
    ]  # fmt: skip


WRITES = {
    "delete from main.tasks": "DELETE statements are refused",
    "update tasks set status = 'x'": "UPDATE statements are refused",
    "insert into main.tasks select * from main.tasks": "INSERT statements are refused",
    "create table t as select 1": "CREATE statements are refused",
    "create temp table t as select 1": "CREATE statements are refused",
    "drop view records.tasks": "DROP statements are refused",
    "attach '{dir}/other.duckdb' as other": "ATTACH statements are refused",
    "copy (select * from tasks) to '{dir}/out.csv'": "COPY statements are refused",
    "copy tasks from '{dir}/in.csv'": "COPY statements are refused",
    "export database '{dir}/dump'": "EXPORT statements are refused",
    "pragma enable_checkpoint_on_shutdown": "PRAGMA statements are refused",
    "set threads = 1": "SET statements are refused",
    "reset threads": "SET statements are refused",
    "install httpfs": "LOAD statements are refused",
    "load json": "LOAD statements are refused",
    "checkpoint": "CALL statements are refused",
    "vacuum": "VACUUM statements are refused",
    "begin transaction": "TRANSACTION statements are refused",
    "select 1; delete from main.tasks": "one statement at a time, and this is 2",
    "select 1; drop table main.tasks;": "one statement at a time, and this is 2",
    "select * from read_csv('{dir}/in.csv')": "read_csv() reads outside the records",
    "select * from read_text('/etc/hostname')": "read_text() reads outside the records",
    "select * from '{dir}/in.csv'": "is not a table or view",
    "select * from query('select 1')": "query() reads outside the records",
    "with gone as (delete from main.tasks returning *) select * from gone": "",
}


def fingerprint(home: Home) -> str:
    """Every row of every table but the message log (which records the requests)."""
    con = duckdb.connect(str(home.database), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main' "
            "and table_name not in ('messages', 'acks') order by 1").fetchall()]  # fmt: skip
        views = con.execute(
            "select table_name, view_definition from information_schema.views "
            "where table_schema = 'records' order by 1"
        ).fetchall()
        digest = hashlib.sha256(repr(views).encode())
        for table in tables:
            rows = con.execute(f'select * from main."{table}" order by all').fetchall()
            digest.update(repr((table, rows)).encode())
        return digest.hexdigest()
    finally:
        con.close()


def seeded(home: Home) -> None:
    """A database with a task in it, written as a test set-up (no orchestrator yet)."""
    home.ensure()
    con = open_writer(home.database)
    con.execute(
        "insert into tasks (id, description, cwd, options, status, phase, iterations, tokens, "
        "cost_usd, created_at, updated_at) values ('t1', 'x', '/r', '{}', 'accepted', 'done', "
        "1, 5, 0.5, now(), now())"
    )
    con.close()


@pytest.mark.parametrize("path", ["file", "orchestrator"])
def test_every_kind_of_write_is_refused_in_one_line_and_nothing_changes(
    home: Home, tmp_path: Path, path: str
) -> None:
    seeded(home)
    (tmp_path / "in.csv").write_text("a\n1\n")
    before, file_bytes = fingerprint(home), hashlib.sha256(home.database.read_bytes()).digest()
    if path == "orchestrator":
        daemon.start(home)
    for statement, reason in WRITES.items():
        with pytest.raises(usersql.SqlError) as refused:
            client.sql(home, statement.format(dir=tmp_path))
        message = str(refused.value)
        assert reason in message and "\n" not in message, (statement, message)
    for cli in ("delete from tasks", "select 1; drop table main.tasks", "attach 'x.db'"):
        result = shoal("sql", cli, cwd=tmp_path)
        assert result.returncode == 1
        assert_one_line_error(result, "ATTACH" if "attach" in cli else "shoal sql")
    assert client.sql(home, "select sum(tokens) as t from tasks").rows == [[5]]
    if path == "file":  # opened read-only: not a byte of the file changed
        assert hashlib.sha256(home.database.read_bytes()).digest() == file_bytes
    daemon.stop(home)
    assert fingerprint(home) == before  # the orchestrator added only to its message log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # no file was written


def test_a_query_while_the_orchestrator_writes_sees_one_consistent_snapshot(
    orchestrator: Home,
) -> None:
    home = orchestrator
    daemon.request(home, ActorSpawn(role="echo"))
    stop = threading.Event()

    def flood() -> None:
        with MailboxClient(home.mailbox_endpoint) as client:
            client.request("echo-1", EchoRequest(text="warm"), timeout=30)
            while not stop.is_set():
                for seq in range(200):
                    client.send("echo-1", EchoRequest(text="w", seq=seq))
                for _ in range(200):
                    client.recv(timeout=30)

    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    # Two ways to count the same rows, in one statement: equal only in one snapshot.
    statement = (
        "select (select count(*) from messages) as total, "
        "(select sum(n) from (select count(*) as n from messages group by kind)) as by_kind, "
        "(select count(*) from messages where kind = 'echo.request') as asked, "
        "(select count(*) from messages where kind = 'echo.reply') as answered"
    )
    seen = []
    try:
        for _ in range(15):
            ((total, by_kind, asked, answered),) = client.sql(home, statement).rows
            assert total == by_kind
            seen.append((total, asked, answered))
    finally:
        stop.set()
        writer.join(timeout=60)
    totals = [s[0] for s in seen]
    assert totals == sorted(totals) and len(set(totals)) > 1, seen  # it was writing meanwhile
    assert all(answered <= asked for _, asked, answered in seen)
    via_cli = sql_json(statement)
    assert via_cli[0]["total"] == via_cli[0]["by_kind"] >= totals[-1]


def test_a_long_query_is_stopped_at_its_timeout_and_rows_beyond_the_limit_are_said(
    orchestrator: Home,
) -> None:
    slow = shoal(
        "sql",
        "select sum(a.range * b.range) from range(200000) a, range(200000) b",
        "--timeout",
        "0.5",
        timeout=60,
    )
    assert slow.returncode == 1
    assert_one_line_error(slow, "ran for 0.5s and was stopped")
    many = shoal("sql", "select * from range(50) t(n)", "--limit", "7", "--json")
    assert [json.loads(line)["n"] for line in many.stdout.splitlines()] == list(range(7))
    assert "only the first 7 rows" in many.stderr
    results = orchestrator.run / "sql"
    assert not any(results.iterdir())  # the rows' file was read and removed
    assert stat.S_IMODE(results.stat().st_mode) == 0o700


@pytest.mark.parametrize("path", ["orchestrator", "file"])
def test_export_writes_every_view_as_parquet(home: Home, tmp_path: Path, path: str) -> None:
    seeded(home)
    if path == "orchestrator":
        daemon.start(home)
    out = tmp_path / "export"
    result = shoal("sql", "--export", str(out), "--json", check=True)
    files = json.loads(result.stdout)["files"]
    assert set(files) == set(VIEWS) and files["tasks"] == 1
    con = duckdb.connect()
    for view, rows in files.items():
        parquet = out / f"{view}.parquet"
        assert stat.S_IMODE(parquet.stat().st_mode) == 0o600
        assert con.execute(f"select count(*) from '{parquet}'").fetchall() == [(rows,)]
        names = [d[0] for d in con.execute(f"select * from '{parquet}' limit 0").description]
        assert names == list(VIEWS[view][1]), view
    assert con.execute(f"select task_id, cost_usd from '{out}/tasks.parquet'").fetchall() == [
        ("t1", 0.5)
    ]
    bad = shoal("sql", "--export", "/proc/nope/dir")
    assert_one_line_error(bad)


def test_schema_lists_the_views_and_bad_usage_is_one_line(home: Home) -> None:
    before = shoal("sql", "--schema", "--json", check=True)  # no database yet: types unknown
    assert json.loads(before.stdout)["tasks"]["columns"][0] == {
        "name": "task_id", "type": "?", "description": "the task's id",
    }  # fmt: skip
    seeded(home)
    described = json.loads(shoal("sql", "--schema", "--json", check=True).stdout)
    assert list(described) == list(VIEWS)
    for view, (_, columns) in VIEWS.items():
        assert [c["name"] for c in described[view]["columns"]] == list(columns)
        assert all(c["type"] != "?" for c in described[view]["columns"])
    text = shoal("sql", "--schema", check=True).stdout
    assert "tool_calls: one row per tool call" in text and "  cost_usd " in text
    for args in ((), ("select 1", "--schema"), ("select 1", "--json", "--csv")):
        result = shoal("sql", *args)
        assert result.returncode == 2
        assert_one_line_error(result)
    assert_one_line_error(shoal("sql", "selec 1"), "syntax error")
    assert_one_line_error(shoal("sql", "select nope from tasks"), "nope")
    assert os.environ.get("SHOAL_HOME") == str(home.root)
