"""Versioned schema migrations. Append to MIGRATIONS; never edit a released one."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "messages, acks and actor events",
        """
        CREATE TABLE messages (
            id          VARCHAR NOT NULL,   -- envelope id (sortable ULID)
            kind        VARCHAR NOT NULL,
            sender      VARCHAR NOT NULL,
            recipient   VARCHAR NOT NULL,
            task_id     VARCHAR,
            reply_to    VARCHAR,
            attempt     INTEGER NOT NULL,
            sent_at     TIMESTAMP NOT NULL, -- UTC
            recorded_at TIMESTAMP NOT NULL, -- UTC, when the broker received it
            tracked     BOOLEAN NOT NULL,   -- kept until acked, redelivered if lost
            body        JSON NOT NULL       -- the whole envelope as it travelled
        );
        CREATE TABLE acks (
            message_id VARCHAR NOT NULL,
            acked_at   TIMESTAMP NOT NULL
        );
        CREATE TABLE actor_events (
            happened_at TIMESTAMP NOT NULL,
            name   VARCHAR NOT NULL,
            role   VARCHAR NOT NULL,
            pid    INTEGER,
            event  VARCHAR NOT NULL,       -- started, exited, restarting, adopted, stopped
            detail VARCHAR
        );
        """,
    ),
]

LATEST = MIGRATIONS[-1][0]


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0) if row else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every migration newer than the file's version, each in one transaction."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER NOT NULL, description VARCHAR, applied_at TIMESTAMP NOT NULL)"
    )
    version = current_version(con)
    for number, description, sql in MIGRATIONS:
        if number <= version:
            continue
        con.execute("BEGIN")
        try:
            con.execute(sql)
            con.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)",
                [number, description, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        version = number
    return version
