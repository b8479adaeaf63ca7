"""A user's own SQL over the records (``shoal sql``): checked, run where nothing can be written.

Read-only is enforced three times over, each by DuckDB itself rather than by
looking for keywords:

1. DuckDB's parser splits the text into statements: exactly one is taken, and
   only of type SELECT (``WITH``, ``FROM tasks``, ``DESCRIBE``, ``SUMMARIZE``
   and ``VALUES`` are SELECTs; ``DELETE``, ``COPY``, ``ATTACH``, ``PRAGMA``,
   ``SET``, ``INSTALL``/``LOAD``, ``CALL``, ``EXPORT`` ... are not).
2. Its serialised parse tree (``json_serialize_sql``) names every table and
   table function the SELECT reads: table functions other than a few that read
   no file (``range``, ``unnest``, the ``duckdb_*`` catalog) and names that are
   file paths (``FROM 'x.csv'``) are refused, so a query reads the records and
   nothing else on the machine, whichever process runs it.
3. It runs in a ``BEGIN TRANSACTION READ ONLY`` transaction on a cursor of its
   own, where DuckDB refuses any write (``nextval`` included). Without an
   orchestrator the file is also opened read-only with external access
   (files, extensions, ATTACH) switched off. In the orchestrator, which owns the
   file for writing, the read-only transaction is the wall: DuckDB has no
   read-only connection beside a writer in one process, and external access is
   a setting of the whole database there, which the recorder and ``--export``
   need.

A transaction also makes the answer consistent: it sees the records as they
were when it began, however much the orchestrator writes meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import math
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.store.views import SCHEMA, SEARCH_PATH, VIEWS

if TYPE_CHECKING:
    import duckdb


MAX_SQL_CHARS = 100_000
DEFAULT_LIMIT = 10_000
DEFAULT_TIMEOUT = 60.0

# Table functions that read nothing but the records or their own arguments.
_TABLE_FUNCTIONS = frozenset(
    {"range", "generate_series", "unnest", "json_each", "json_tree", "pragma_table_info"}
)
_CATALOG_PREFIX = "duckdb_"
# A name DuckDB would resolve as a file (replacement scan) has a dot, slash or colon.
_NAME = re.compile(r"^[^./:\\]+$")


class SqlError(ValueError):
    """A statement refused, or one DuckDB could not run; the message is one line."""


@dataclass
class Result:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    """More rows than the limit: only the first ``limit`` are here."""


def check(cur: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one SELECT that reads tables and views (SqlError says why)."""
    import duckdb

    if len(sql) > MAX_SQL_CHARS:
        raise SqlError(f"the statement is {len(sql)} characters; at most {MAX_SQL_CHARS}")
    try:
        statements = cur.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(_first_line(exc)) from None
    if len(statements) != 1:
        raise SqlError(
            f"one statement at a time, and this is {len(statements)}: shoal sql runs a single "
            "SELECT"
        )
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    if kind != "SELECT":
        raise SqlError(f"shoal sql only reads: {kind} statements are refused; write one SELECT")
    tree = json.loads(cur.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    if tree.get("error"):
        raise SqlError(f"shoal sql cannot check this SELECT: {tree.get('error_message')}")
    for what, name in _sources(tree):
        if what == "function" and not _allowed_function(name):
            raise SqlError(
                f"{name}() reads outside the records: shoal sql reads the views and tables "
                "only (see `shoal sql --schema`)"
            )
        if what == "table" and not _NAME.match(name):
            raise SqlError(
                f"{name!r} is not a table or view: shoal sql reads the records, not files"
            )


def _allowed_function(name: str) -> bool:
    name = name.lower()
    return name in _TABLE_FUNCTIONS or name.startswith(_CATALOG_PREFIX)


def _sources(node: Any) -> Iterator[tuple[str, str]]:
    """Every table function and table name in a serialised parse tree."""
    if isinstance(node, dict):
        if node.get("type") == "TABLE_FUNCTION":
            yield "function", str((node.get("function") or {}).get("function_name", ""))
        elif node.get("type") == "BASE_TABLE":
            yield "table", str(node.get("table_name", ""))
        for value in node.values():
            yield from _sources(value)
    elif isinstance(node, list):
        for value in node:
            yield from _sources(value)


def begin(cur: duckdb.DuckDBPyConnection) -> None:
    """Make ``cur`` a read-only transaction that resolves names to the views first."""
    cur.execute("BEGIN TRANSACTION READ ONLY")
    cur.execute(f"SET SESSION search_path = '{SEARCH_PATH}'")
    # Python variables in scope are not tables (DuckDB would scan a DataFrame by name).
    cur.execute("SET SESSION python_enable_replacements = false")


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """No files, extensions or other databases for a read-only connection of our own
    (DuckDB cannot switch external access back on while the database is open)."""
    con.execute("SET enable_external_access = false")


def run(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    *,
    limit: int = DEFAULT_LIMIT,
    timeout: float = DEFAULT_TIMEOUT,
) -> Result:
    """Check and run ``sql`` on ``cur`` (a fresh cursor); at most ``limit`` rows, stopped
    after ``timeout`` seconds."""
    import duckdb

    try:
        begin(cur)
        check(cur, sql)
        timer = threading.Timer(timeout, cur.interrupt)
        timer.start()
        try:
            cur.execute(sql)
            columns = _unique([d[0] for d in cur.description or []])
            rows = cur.fetchmany(limit + 1)
        finally:
            timer.cancel()
    except duckdb.InterruptException:
        raise SqlError(
            f"the query ran for {timeout:g}s and was stopped: narrow it, or raise --timeout"
        ) from None
    except duckdb.Error as exc:
        raise SqlError(_first_line(exc)) from None
    finally:
        _rollback(cur)
    return Result(
        columns=columns,
        rows=[[jsonable(v) for v in row] for row in rows[:limit]],
        truncated=len(rows) > limit,
    )


def export(cur: duckdb.DuckDBPyConnection, directory: Path) -> dict[str, int]:
    """Every view as ``DIRECTORY/<view>.parquet`` (owner-only), from one consistent
    snapshot; rows written per view."""
    import duckdb

    if not directory.is_absolute():
        raise SqlError(f"export directory {directory} must be an absolute path")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SqlError(f"cannot make {directory}: {exc.strerror}") from None
    written: dict[str, int] = {}
    cur.execute("BEGIN TRANSACTION READ ONLY")
    try:
        for view in VIEWS:
            target = directory / f"{view}.parquet"
            quoted = str(target).replace("'", "''")
            rows = cur.execute(
                f"COPY (SELECT * FROM {SCHEMA}.{view}) TO '{quoted}' (FORMAT parquet)"
            ).fetchall()
            os.chmod(target, 0o600)
            written[view] = int(rows[0][0]) if rows else 0
    except duckdb.Error as exc:
        raise SqlError(_first_line(exc)) from None
    finally:
        _rollback(cur)
    return written


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    import duckdb

    # No transaction may be left to end (DuckDB ended a failed one itself).
    with contextlib.suppress(duckdb.Error):
        cur.execute("ROLLBACK")


def _unique(names: list[str]) -> list[str]:
    """Column names as keys: a second ``count`` becomes ``count_2``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def jsonable(value: Any) -> Any:
    """A DuckDB value as JSON can hold it (times as ISO text, decimals as numbers)."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_length(sql: str) -> None:
    if len(sql) > MAX_SQL_CHARS:
        raise SqlError(f"the statement is {len(sql)} characters; at most {MAX_SQL_CHARS}")


# --- results handed from the orchestrator to the client through a file ----------------
# Every message is recorded: rows sent in a reply would be copied into the messages
# table (a `SELECT * FROM messages` into itself). The orchestrator writes them to an
# owner-only file under run/ and the reply names it; the client reads and deletes it.


def write_result(path: Path, result: Result) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    _remove_stale(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"columns": result.columns, "rows": result.rows}, f, default=str)


def read_result(path: Path, truncated: bool) -> Result:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    finally:
        path.unlink(missing_ok=True)
    return Result(columns=data["columns"], rows=data["rows"], truncated=truncated)


def _remove_stale(folder: Path, age: float = 3600.0) -> None:
    """Results a client never came for (it was interrupted) go after an hour."""
    import time

    now = time.time()
    for old in folder.glob("*.json"):
        try:
            if now - old.stat().st_mtime > age:
                old.unlink()
        except OSError:
            continue
