"""Messages that read the records: named queries, a user's SQL, the Parquet export."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from shoal.messages.base import Payload, message

__all__ = [
    "StoreDump",
    "StoreExport",
    "StoreExportResult",
    "StoreQuery",
    "StoreQueryResult",
    "StoreSql",
    "StoreSqlResult",
]


@message("store.query", polled=True)
class StoreQuery(Payload, kw_only=True):
    name: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)


@message("store.query.result", polled=True)
class StoreQueryResult(Payload, kw_only=True):
    columns: list[str]
    rows: list[list[Any]]


@message("store.sql")
class StoreSql(Payload, kw_only=True):
    """A user's own SELECT (``shoal sql``); refused unless it only reads (store/usersql.py)."""

    sql: Annotated[str, Meta(min_length=1, max_length=100_000)]
    limit: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    """Rows returned at most (the result says when there were more)."""
    timeout: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    """Seconds the query may run before it is interrupted."""


@message("store.sql.result")
class StoreSqlResult(Payload, kw_only=True):
    columns: list[str]
    rows: int
    truncated: bool = False
    rows_file: str
    """An owner-only JSON file under ``run/sql/`` holding the rows, which the client reads
    and deletes: every message is recorded, and rows sent in the reply would be copied
    into the very records they came from."""


@message("store.export")
class StoreExport(Payload, kw_only=True):
    """Write every public view as Parquet into ``directory`` (``shoal sql --export``)."""

    directory: Annotated[str, Meta(min_length=1, max_length=4096)]


@message("store.export.result")
class StoreExportResult(Payload, kw_only=True):
    directory: str
    files: dict[str, int]
    """Rows written per view (``<directory>/<view>.parquet``)."""


@message("store.dump")
class StoreDump(Payload, kw_only=True):
    """Write the named tables (``shoal.store.dump.TABLES``) as Parquet into ``directory``
    (``shoal export``); answered with ``store.export.result``."""

    tables: Annotated[list[str], Meta(min_length=1, max_length=32)]
    directory: Annotated[str, Meta(min_length=1, max_length=4096)]
