"""A batch refactor's records: the driver sends them, only the orchestrator writes them,
on the one serial worker thread: in the order they came, so the batch's progress events
count up, and never two at once (each record also updates its ``batches`` row, and two
concurrent updates of one row make DuckDB refuse one: "Conflict on update")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.messages.actors import OrchestratorOk
from shoal.messages.base import Payload
from shoal.messages.batch import BatchEnd, BatchProgress, BatchStart, BatchUnit
from shoal.store import batches

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.services.workers import Workers


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Batches:
    handles = (BatchStart, BatchUnit, BatchEnd)

    def __init__(self, workers: Workers, publish: Callable[[Payload], None]) -> None:
        self.workers = workers
        self.publish = publish
        """Puts a ``batch.progress`` on the event bus once a record is written."""

    def on_batch_start(self, env: Envelope, payload: BatchStart) -> None:
        def start(cur: Any) -> OrchestratorOk:
            batches.start(cur, payload, _utcnow())
            self._progress(cur, payload.batch_id)
            return OrchestratorOk(detail=f"batch {payload.batch_id}: {len(payload.units)} units")

        self.workers.run(env, start, serial=True)

    def on_batch_unit(self, env: Envelope, payload: BatchUnit) -> None:
        def unit(cur: Any) -> OrchestratorOk:
            batches.unit(cur, payload, _utcnow())
            self._progress(cur, payload.batch_id, payload.unit_id, payload.status)
            return OrchestratorOk(detail=f"{payload.unit_id}: {payload.status}")

        self.workers.run(env, unit, serial=True)

    def on_batch_end(self, env: Envelope, payload: BatchEnd) -> None:
        def end(cur: Any) -> OrchestratorOk:
            batches.end(cur, payload, _utcnow())
            self._progress(cur, payload.batch_id)
            return OrchestratorOk(detail=f"batch {payload.batch_id}: {payload.status}")

        self.workers.run(env, end, serial=True)

    def _progress(
        self, cur: Any, batch_id: str, unit_id: str | None = None, unit_status: str | None = None
    ) -> None:
        found = batches.progress(cur, batch_id)
        if found is None:
            return  # a unit of a batch never started: nothing to show
        status, units, finished = found
        self.publish(
            BatchProgress(
                batch_id=batch_id,
                status=status,  # type: ignore[arg-type]
                unit_id=unit_id,
                unit_status=unit_status,
                units=units,
                finished=finished,
            )
        )
