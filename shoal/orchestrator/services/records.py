"""Reading the records: named queries (``store.query``), a user's own SQL (``shoal sql``,
read-only, see store/usersql.py), and the Parquet copies ``shoal sql --export`` and
``shoal export`` take.

Each runs on a worker thread, after the recorder has written everything submitted
before the question (read your writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.messages.store import (
    StoreDump,
    StoreExport,
    StoreExportResult,
    StoreQuery,
    StoreQueryResult,
    StoreSql,
    StoreSqlResult,
)
from shoal.store.queries import run_query

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.recorder import Recorder
    from shoal.orchestrator.services.workers import Workers
    from shoal.paths import Home


class Records:
    handles = (StoreQuery, StoreSql, StoreExport, StoreDump)

    def __init__(self, home: Home, recorder: Recorder, workers: Workers) -> None:
        self.home = home
        self.recorder = recorder
        self.workers = workers

    def on_store_query(self, env: Envelope, payload: StoreQuery) -> None:
        def query(cur: Any) -> StoreQueryResult:
            self.recorder.barrier()  # what the orchestrator wrote before is in the answer
            return run_query(cur, payload.name, payload.params)

        self.workers.run(env, query)

    def on_store_sql(self, env: Envelope, payload: StoreSql) -> None:
        def sql(cur: Any) -> StoreSqlResult:
            from shoal.store import usersql

            self.recorder.barrier()
            result = usersql.run(cur, payload.sql, limit=payload.limit, timeout=payload.timeout)
            path = self.home.run / "sql" / f"{env.id}.json"
            usersql.write_result(path, result)
            return StoreSqlResult(
                columns=result.columns,
                rows=len(result.rows),
                truncated=result.truncated,
                rows_file=str(path),
            )

        self.workers.run(env, sql)

    def on_store_export(self, env: Envelope, payload: StoreExport) -> None:
        def export(cur: Any) -> StoreExportResult:
            from shoal.store import usersql

            self.recorder.barrier()
            files = usersql.export(cur, Path(payload.directory))
            return StoreExportResult(directory=payload.directory, files=files)

        self.workers.run(env, export)

    def on_store_dump(self, env: Envelope, payload: StoreDump) -> None:
        def dump(cur: Any) -> StoreExportResult:
            from shoal.store.dump import DumpError, dump

            self.recorder.barrier()
            try:
                files = dump(cur, payload.tables, Path(payload.directory))
            except DumpError as exc:
                raise ValueError(str(exc)) from None
            return StoreExportResult(directory=payload.directory, files=files)

        self.workers.run(env, dump)
