"""Webhook deliveries (``webhook_deliveries``): one row per attempt."""

from __future__ import annotations

import datetime as dt

from shoal.store.statements import Statement


def attempt(
    delivery_id: str,
    attempt: int,
    event: str,
    task_id: str | None,
    webhook: str,
    target: str,
    status_code: int | None,
    ok: bool,
    error: str | None,
    duration_ms: float,
    attempted_at: dt.datetime,
    retry_at: dt.datetime | None,
) -> Statement:
    """One attempt at delivering an event (``retry_at``: when the next one is due)."""
    return (
        "INSERT INTO webhook_deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            delivery_id,
            attempt,
            event,
            task_id,
            webhook,
            target,
            status_code,
            ok,
            error,
            duration_ms,
            attempted_at,
            retry_at,
        ],
    )
