"""Every message the broker routed (``messages``) and the acks of tracked ones (``acks``).

Rows go in as Arrow tables registered for one statement (multi-row: row-at-a-time
inserts cost DuckDB orders of magnitude more). ``skip_known`` leaves out rows already
there, for replaying a journal whose rows may have been flushed before a crash.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, NamedTuple

from msgspec.structs import astuple

from shoal.mailbox.envelope import Envelope

if TYPE_CHECKING:
    import duckdb
    import pyarrow

_INSERT_MESSAGES = """
    INSERT INTO messages
    SELECT id, kind, sender, recipient, task_id, reply_to, attempt,
           make_timestamp(sent_us), make_timestamp(recorded_us), tracked, body
    FROM batch {where}
"""
_INSERT_ACKS = "INSERT INTO acks SELECT message_id, make_timestamp(acked_us) FROM batch {where}"


class MessageRow(NamedTuple):
    env: Envelope
    body: bytes
    recorded_at: float
    tracked: bool


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def _us_array(seconds: tuple[float, ...]) -> pyarrow.Array:
    """Unix seconds as whole microseconds (truncated, as :func:`_us` does)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    scaled = pc.multiply(pa.array(seconds, pa.float64()), 1_000_000.0)
    return pc.cast(scaled, pa.int64(), safe=False)


def insert(
    cur: duckdb.DuckDBPyConnection, rows: list[MessageRow], *, skip_known: bool = False
) -> None:
    import pyarrow as pa

    # Columns by transposing the rows once (the fields in the Envelope's order), and the
    # per-row conversions done by Arrow in C: a third of the time of a pass per column.
    kind, sender, recipient, id_, task_id, reply_to, attempt, sent_at, _ = zip(
        *[astuple(r.env) for r in rows], strict=True
    )
    _, bodies, recorded_at, tracked = zip(*rows, strict=True)
    table = pa.table(
        {
            "id": pa.array(id_, pa.string()),
            "kind": pa.array(kind, pa.string()),
            "sender": pa.array(sender, pa.string()),
            "recipient": pa.array(recipient, pa.string()),
            "task_id": pa.array(task_id, pa.string()),
            "reply_to": pa.array(reply_to, pa.string()),
            "attempt": pa.array(attempt, pa.int32()),
            "sent_us": _us_array(sent_at),
            "recorded_us": _us_array(recorded_at),
            "tracked": pa.array(tracked, pa.bool_()),
            "body": pa.array(bodies, pa.binary()).cast(pa.string()),  # checked to be UTF-8
        }
    )
    where = (
        "WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = batch.id)" if skip_known else ""
    )
    cur.register("batch", table)
    try:
        # DuckDB refuses more work on a connection whose last result was not consumed.
        cur.execute(_INSERT_MESSAGES.format(where=where)).fetchall()
    finally:
        # Never in place of the error above (DuckDB may have invalidated the database).
        with contextlib.suppress(Exception):
            cur.unregister("batch")


def insert_acks(
    cur: duckdb.DuckDBPyConnection, acks: list[tuple[float, str]], *, skip_known: bool = False
) -> None:
    """``acks``: (when, message id)."""
    import pyarrow as pa

    table = pa.table(
        {
            "message_id": pa.array([a[1] for a in acks], pa.string()),
            "acked_us": pa.array([_us(a[0]) for a in acks], pa.int64()),
        }
    )
    where = (
        "WHERE NOT EXISTS (SELECT 1 FROM acks a WHERE a.message_id = batch.message_id)"
        if skip_known
        else ""
    )
    cur.register("batch", table)
    try:
        cur.execute(_INSERT_ACKS.format(where=where)).fetchall()
    finally:
        # Never in place of the error above (DuckDB may have invalidated the database).
        with contextlib.suppress(Exception):
            cur.unregister("batch")


def unacked(con: duckdb.DuckDBPyConnection, since: dt.datetime) -> list[str]:
    """Bodies of tracked messages recorded after ``since`` (naive UTC) and never acked."""
    rows = con.execute(
        """SELECT m.body FROM messages m
           WHERE m.tracked AND m.recorded_at > ?
             AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.message_id = m.id)
           ORDER BY m.id""",
        [since],
    ).fetchall()
    return [r[0] for r in rows]


def last_request(
    con: duckdb.DuckDBPyConnection, task_id: str, kinds: tuple[str, ...]
) -> tuple[str, str, str] | None:
    """(id, kind, body) of the last message of one of ``kinds`` the orchestrator sent for a
    task."""
    rows = con.execute(
        """SELECT id, kind, body FROM messages WHERE task_id = ? AND sender = 'orchestrator'
           AND list_contains(?, kind) ORDER BY id DESC LIMIT 1""",
        [task_id, list(kinds)],
    ).fetchall()
    return rows[0] if rows else None


def reply_to_orchestrator(con: duckdb.DuckDBPyConnection, request_id: str) -> str | None:
    """The body of a recorded reply to the orchestrator's request ``request_id``."""
    rows = con.execute(
        "SELECT body FROM messages WHERE reply_to = ? AND recipient = 'orchestrator' LIMIT 1",
        [request_id],
    ).fetchall()
    return rows[0][0] if rows else None


def last_of_kind(con: duckdb.DuckDBPyConnection, task_id: str, kind: str) -> str | None:
    """The body of a task's last recorded message of ``kind``."""
    rows = con.execute(
        "SELECT body FROM messages WHERE task_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
        [task_id, kind],
    ).fetchall()
    return rows[0][0] if rows else None
