"""Actors' lives (``actor_events``): started, exited, restarted, stalled, retired."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import duckdb


class EventRow(NamedTuple):
    at: float
    name: str
    role: str
    pid: int | None
    event: str
    detail: str


def insert(cur: duckdb.DuckDBPyConnection, events: list[EventRow]) -> None:
    cur.executemany(
        "INSERT INTO actor_events VALUES (?, ?, ?, ?, ?, ?)",
        [(dt.datetime.fromtimestamp(e.at, dt.UTC).replace(tzinfo=None), *e[1:]) for e in events],
    )
