"""Batch refactors (``batches``, ``batch_units``): the driver sends its records, the
orchestrator writes them here."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

from shoal.store import statements

if TYPE_CHECKING:
    import duckdb

    from shoal.messages.batch import BatchEnd, BatchStart, BatchUnit

_CHUNK = 500
"""Units per INSERT: multi-row inserts, since row-at-a-time ones are slow in DuckDB."""


def start(cur: duckdb.DuckDBPyConnection, payload: BatchStart, now: dt.datetime) -> None:
    """A batch (running again, if it is resumed) and its units, pending unless known, in one
    transaction."""
    statements.begin(cur)
    try:
        cur.execute(
            """INSERT INTO batches VALUES (?, ?, ?, 'running', ?, ?, NULL, ?, ?, NULL)
               ON CONFLICT (id) DO UPDATE SET status = 'running', backend = excluded.backend,
                  updated_at = excluded.updated_at, finished_at = NULL""",
            [
                payload.batch_id,
                payload.instruction,
                json.dumps(payload.spec),
                len(payload.units),
                payload.backend,
                now,
                now,
            ],
        ).fetchall()
        rows = [
            [payload.batch_id, u.unit_id, u.name, u.source, json.dumps(u.files)]
            for u in payload.units
        ]
        for i in range(0, len(rows), _CHUNK):
            chunk = rows[i : i + _CHUNK]
            cur.execute(
                """INSERT OR IGNORE INTO batch_units (batch_id, unit_id, name, source, files,
                       status, attempts, tokens, cost_usd) VALUES """
                + ", ".join(["(?, ?, ?, ?, ?, 'pending', 0, 0, 0)"] * len(chunk)),
                [v for row in chunk for v in row],
            ).fetchall()
        statements.commit(cur)
    except Exception:
        statements.rollback(cur)
        raise


def unit(cur: duckdb.DuckDBPyConnection, p: BatchUnit, now: dt.datetime) -> None:
    """A unit's outcome (or a later one: a conflict when its patch did not apply)."""
    cur.execute(
        """UPDATE batch_units SET status = ?, attempts = ?, score = ?, verify_passed = ?,
               diff = ?, files_changed = ?, tokens = ?, cost_usd = ?, duration_s = ?,
               summary = ?, error = ?, worker = ?, finished_at = ?
           WHERE batch_id = ? AND unit_id = ?""",
        [
            p.status,
            p.attempts,
            p.score,
            p.verify_passed,
            p.diff,
            json.dumps(p.files_changed),
            p.tokens,
            p.cost_usd,
            p.duration_s,
            p.summary,
            p.error,
            p.worker,
            now,
            p.batch_id,
            p.unit_id,
        ],
    ).fetchall()
    cur.execute("UPDATE batches SET updated_at = ? WHERE id = ?", [now, p.batch_id]).fetchall()


def end(cur: duckdb.DuckDBPyConnection, payload: BatchEnd, now: dt.datetime) -> None:
    """How a batch ended (done, interrupted...), and the branches it wrote."""
    cur.execute(
        """UPDATE batches SET status = ?, applied = ?, updated_at = ?,
               finished_at = CASE WHEN ? = 'done' THEN ? ELSE NULL END
           WHERE id = ?""",
        [payload.status, json.dumps(payload.applied), now, payload.status, now, payload.batch_id],
    ).fetchall()


def progress(cur: duckdb.DuckDBPyConnection, batch_id: str) -> tuple[str, int, int] | None:
    """A batch's status, units and units with an outcome (None: no such batch)."""
    found = cur.execute(
        """SELECT b.status, b.units,
                  (SELECT count(*) FROM batch_units u
                   WHERE u.batch_id = b.id AND u.status <> 'pending')
           FROM batches b WHERE b.id = ?""",
        [batch_id],
    ).fetchall()
    return (found[0][0], found[0][1], found[0][2]) if found else None
