"""An export's tables in the CLI's own in-memory DuckDB (``shoal export``, ``shoal import``).

Not the records: the tables ``store.dump`` wrote as Parquet are loaded into a scratch
database of the exporting process, where secrets are replaced and from where they are
written as JSON or Parquet (see ``shoal.backup``). Table names come from
``store.dump.GROUPS`` and ``skill_files``, never from the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.store.usersql import jsonable

if TYPE_CHECKING:
    import duckdb


def load(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    """Table ``table`` as the Parquet file ``path`` holds it."""
    con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM read_parquet(?)', [str(path)])


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0])


def skill_files(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, str, str, str]]) -> None:
    """Table ``skill_files``: (skill, state, path, content, encoding) per file."""
    con.execute(
        "CREATE TABLE skill_files (skill VARCHAR, state VARCHAR, path VARCHAR, "
        "content VARCHAR, encoding VARCHAR)"
    )
    if rows:
        con.executemany("INSERT INTO skill_files VALUES (?, ?, ?, ?, ?)", rows)


def text_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(column, type) of a table's VARCHAR and JSON columns."""
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
        [table],
    ).fetchall()
    return [(c, kind) for c, kind in columns if kind in ("VARCHAR", "JSON")]


def replace_text(
    con: duckdb.DuckDBPyConnection, table: str, column: str, kind: str, old: str, new: str
) -> int:
    """``old`` replaced by ``new`` in every value of a text column; how many values changed."""
    back = "::JSON" if kind == "JSON" else ""
    rows = con.execute(
        f'UPDATE "{table}" SET "{column}" = replace("{column}"::VARCHAR, ?, ?){back} '
        f'WHERE contains("{column}"::VARCHAR, ?)',
        [old, new, old],
    ).fetchall()
    return int(rows[0][0]) if rows else 0


def write_parquet(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    quoted = str(path).replace("'", "''")
    con.execute(f"COPY \"{table}\" TO '{quoted}' (FORMAT parquet)")


def rows(con: duckdb.DuckDBPyConnection, table: str) -> list[dict[str, Any]]:
    """A table's rows as JSON-ready dicts."""
    result = con.execute(f'SELECT * FROM "{table}"')
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, (jsonable(v) for v in row), strict=True)) for row in result.fetchall()]
