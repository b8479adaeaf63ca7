"""Recurring work the pattern-miner found (``patterns``), with the SKILL.md it proposed."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from shoal.messages.memory import MinedPattern


def record(
    cur: duckdb.DuckDBPyConnection, patterns: Sequence[MinedPattern], now: dt.datetime
) -> None:
    """Each pattern as found now (one found again replaces its row)."""
    for p in patterns:
        cur.execute(
            "INSERT OR REPLACE INTO patterns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                p.id,
                p.kind,
                p.summary,
                p.samples,
                p.confidence,
                json.dumps(p.task_ids),
                p.proposal,
                "proposed" if p.proposal else "new",
                now,
            ],
        )
