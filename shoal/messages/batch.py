"""Messages of batch refactors: a batch's start, each unit's result, its end."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from shoal.messages.base import Model, Payload, message

__all__ = [
    "BatchEnd",
    "BatchProgress",
    "BatchStart",
    "BatchUnit",
    "BatchUnitRow",
    "BatchUnitStarted",
]


class BatchUnitRow(Model, kw_only=True):
    """One unit of a batch as recorded when the batch starts."""

    unit_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    name: str
    """The file, directory or repository the unit is about."""
    source: str
    """The repository (path or URL) its isolated copy is cloned from."""
    files: list[str] = msgspec.field(default_factory=list)


@message("batch.start")
class BatchStart(Payload, kw_only=True):
    """Record a batch and its units (a resumed batch: only marks it running again)."""

    batch_id: Annotated[str, Meta(pattern=r"^[0-9A-Za-z]{4,64}$")]
    instruction: Annotated[str, Meta(min_length=1)]
    spec: dict[str, Any]
    """How it was asked for (sources, unit, verify, models, options), to resume it."""
    backend: Literal["ray", "local"]
    units: list[BatchUnitRow]


@message("batch.unit")
class BatchUnit(Payload, kw_only=True):
    """One unit finished (or was given up on); its row gets the outcome."""

    batch_id: Annotated[str, Meta(pattern=r"^[0-9A-Za-z]{4,64}$")]
    unit_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    status: Literal["accepted", "rejected", "failed", "lost", "conflict"]
    """``conflict``: accepted, but its patch could not be committed to the batch's branch."""
    attempts: Annotated[int, Meta(ge=1)]
    score: float | None = None
    verify_passed: bool | None = None
    diff: str = ""
    files_changed: list[str] = msgspec.field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0
    duration_s: float | None = None
    summary: str = ""
    error: str | None = None
    worker: str | None = None


@message("batch.end")
class BatchEnd(Payload, kw_only=True):
    batch_id: Annotated[str, Meta(pattern=r"^[0-9A-Za-z]{4,64}$")]
    status: Literal["done", "interrupted"]
    applied: dict[str, str] = msgspec.field(default_factory=dict)
    """Repository -> the branch its accepted patches were committed to."""


@message("batch.unit.started")
class BatchUnitStarted(Payload, kw_only=True):
    """Published by the driver when it hands a unit to a worker (live views)."""

    batch_id: str
    unit_id: str
    name: str
    attempt: Annotated[int, Meta(ge=1)]


@message("batch.progress")
class BatchProgress(Payload, kw_only=True):
    """Published by the orchestrator once a batch record is written: the batch started or
    ended, or a unit got its outcome; with the batch's counts after it (live views)."""

    batch_id: str
    status: Literal["running", "interrupted", "done"]
    """The batch's."""
    unit_id: str | None = None
    unit_status: str | None = None
    units: int = 0
    finished: int = 0
    """Units with an outcome."""
