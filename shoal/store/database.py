"""Opening the DuckDB file: the one writer, and read-only readers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.store.migrations import migrate

if TYPE_CHECKING:
    import duckdb


class DatabaseBusy(Exception):
    """Another process holds the database file for writing."""


def open_writer(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the database for writing, migrated, owner-only."""
    import duckdb

    old_umask = os.umask(0o077)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        raise DatabaseBusy(f"{path} is locked by another process: {exc}") from exc
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    migrate(con)
    return con


def open_reader(path: Path) -> duckdb.DuckDBPyConnection:
    import duckdb

    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        raise DatabaseBusy(f"{path} is locked by another process: {exc}") from exc
