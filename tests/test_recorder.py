"""The recorder: a flush writes messages and statements together; a bad part loses nothing else."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest

from shoal.mailbox.envelope import Envelope
from shoal.messages.actors import EchoRequest
from shoal.orchestrator.recorder import MessageRow, Recorder
from shoal.store.database import Writer

USAGE = "INSERT INTO usage_events VALUES (now()::TIMESTAMP, ?, 'executor', 'm', 1, 10, 2, 0.0)"


def _rows(n: int) -> list[MessageRow]:
    envs = [Envelope.of(EchoRequest(text=f"m{i}"), sender="a", recipient="b") for i in range(n)]
    return [MessageRow(env, env.encode(), time.time(), True) for env in envs]


def _record(
    tmp_path: Path, statements: list[tuple[str, list[object]]]
) -> tuple[Recorder, duckdb.DuckDBPyConnection]:
    db = Writer(tmp_path / "shoal.duckdb")
    con = db.con
    recorder = Recorder(db, flush_interval=0.05)
    rows = _rows(5)
    # Queued before the thread starts: everything lands in one flush.
    recorder.submit(1, rows, [(time.time(), rows[0].env.id)])
    for sql, params in statements:
        recorder.write(sql, params)
    recorder.start()
    assert recorder.barrier()
    recorder.stop()
    return recorder, con


@pytest.mark.timeout(30)
def test_one_flush_writes_messages_acks_and_statements(tmp_path: Path) -> None:
    recorder, con = _record(tmp_path, [(USAGE, ["t1"]), (USAGE, ["t2"])])
    assert con.execute("SELECT count(*) FROM messages").fetchone() == (5,)
    assert con.execute("SELECT count(*) FROM acks").fetchone() == (1,)
    tasks = con.execute("SELECT task_id FROM usage_events ORDER BY 1").fetchall()
    assert tasks == [("t1",), ("t2",)]
    assert (recorder.recorded, recorder.failures) == (5, 0)


@pytest.mark.timeout(30)
def test_a_bad_statement_is_skipped_and_nothing_else_of_its_flush_is_lost(tmp_path: Path) -> None:
    bad = ("INSERT INTO no_such_table VALUES (?)", [1])
    recorder, con = _record(tmp_path, [(USAGE, ["before"]), bad, (USAGE, ["after"])])
    assert con.execute("SELECT count(*) FROM messages").fetchone() == (5,)
    assert con.execute("SELECT count(*) FROM acks").fetchone() == (1,)
    tasks = con.execute("SELECT task_id FROM usage_events ORDER BY 1").fetchall()
    assert tasks == [("after",), ("before",)]
    assert recorder.recorded == 5
