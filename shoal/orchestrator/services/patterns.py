"""What the pattern-miner found: its patterns recorded (on a worker thread), its result
logged."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from shoal.messages.actors import OrchestratorOk
from shoal.messages.memory import MineResult, PatternsRecord
from shoal.store import patterns

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.services.workers import Workers

log = logging.getLogger(__name__)


class Patterns:
    handles = (MineResult, PatternsRecord)

    def __init__(self, workers: Workers) -> None:
        self.workers = workers

    def on_mine_result(self, env: Envelope, payload: MineResult) -> None:
        log.info(
            "mining found %d patterns; proposed %s",
            len(payload.patterns),
            payload.proposals or "nothing new",
        )

    def on_patterns_record(self, env: Envelope, payload: PatternsRecord) -> None:
        def record(cur: Any) -> OrchestratorOk:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            patterns.record(cur, payload.patterns, now)
            return OrchestratorOk(detail=f"{len(payload.patterns)} patterns")

        self.workers.run(env, record)
