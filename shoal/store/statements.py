"""A statement queued for the writer, and the transaction a flush runs in.

Low-volume rows (a task's row at each step, usage, iterations, webhook deliveries)
are built as a :data:`Statement` by the module of their table and handed to the
recorder (``Recorder.write``), which runs them in order with its next flush.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

Statement = tuple[str, list[Any]]
"""SQL and its parameters."""


def run(cur: duckdb.DuckDBPyConnection, statement: Statement) -> None:
    cur.execute(*statement)


def begin(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("BEGIN")


def commit(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("COMMIT")


def rollback(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("ROLLBACK")
