"""What ``shoal export`` takes out of the database: named tables, written by DuckDB's COPY.

The orchestrator runs :func:`dump` when it runs (it owns the file), else the client on
the file opened read-only; either way every table comes from one read-only transaction
(one consistent snapshot), as Parquet files (owner-only) in a directory the client
names, which the client then turns into the format asked for. The tasks' tables are the
public views of ``shoal sql`` (:mod:`shoal.store.views`), whose columns are kept across
versions; sessions and skill effectiveness have no view and are read from their tables.
No learning's vector is exported: an import embeds the text again with its own embedder.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

TABLES: dict[str, str] = {
    "tasks": "SELECT * FROM records.tasks ORDER BY created_at, task_id",
    "iterations": "SELECT * FROM records.iterations ORDER BY task_id, iteration",
    "findings": "SELECT * FROM records.findings ORDER BY task_id, iteration",
    "costs": "SELECT * FROM records.costs ORDER BY recorded_at",
    "tool_calls": "SELECT * FROM records.tool_calls ORDER BY recorded_at, message_id",
    "learnings": "SELECT * FROM records.learnings ORDER BY created_at, learning_id",
    "sessions": "SELECT * FROM main.sessions ORDER BY created_at, id",
    "session_messages": "SELECT * FROM main.session_messages ORDER BY session_id, seq",
    "skill_effectiveness": "SELECT * FROM main.skill_effectiveness ORDER BY skill",
}
"""Every table an export may hold, by the name it has in the export."""

GROUPS: dict[str, tuple[str, ...]] = {
    "tasks": ("tasks", "iterations", "findings", "costs", "tool_calls"),
    "memory": ("learnings",),
    "sessions": ("sessions", "session_messages"),
    "skills": ("skill_effectiveness",),
}
"""What ``shoal export WHAT`` takes from the database (skills also take their files)."""


class DumpError(Exception):
    """The export could not be written; the message is one line."""


def dump(cur: duckdb.DuckDBPyConnection, tables: list[str], directory: Path) -> dict[str, int]:
    """``directory/<table>.parquet`` for each of ``tables``; rows written per table."""
    import duckdb

    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise DumpError(
            f"no table {', '.join(unknown)} to export; the tables are {', '.join(TABLES)}"
        )
    if not directory.is_absolute():
        raise DumpError(f"export directory {directory} must be an absolute path")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    written: dict[str, int] = {}
    cur.execute("BEGIN TRANSACTION READ ONLY")
    try:
        for table in tables:
            target = directory / f"{table}.parquet"
            quoted = str(target).replace("'", "''")
            rows = cur.execute(f"COPY ({TABLES[table]}) TO '{quoted}' (FORMAT parquet)").fetchall()
            os.chmod(target, 0o600)
            written[table] = int(rows[0][0]) if rows else 0
    except duckdb.Error as exc:
        raise DumpError(str(exc).strip().splitlines()[0]) from None
    finally:
        with contextlib.suppress(duckdb.Error):
            cur.execute("ROLLBACK")
    return written
