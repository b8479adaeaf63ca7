"""Messages of learning: recalled context, learnings to remember, mining patterns."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from msgspec import Meta

from shoal.messages.base import Model, Payload, message
from shoal.messages.tasks import Finding, ModelChoice

__all__ = [
    "ContextRequest",
    "ContextResult",
    "ExportedLearning",
    "LearnRequest",
    "MemoryForget",
    "MemoryImport",
    "MemoryImportResult",
    "MemoryRemember",
    "MemoryRememberResult",
    "MemorySearch",
    "MineRequest",
    "MineResult",
    "MinedPattern",
    "NewLearning",
    "PatternsRecord",
    "Recalled",
    "TaskRecord",
]


@message("context.request")
class ContextRequest(Payload, kw_only=True):
    """What a role asks before prompting: relevant learnings and skills for this text."""

    text: str
    cwd: str
    role: str
    team: str | None = None
    """A team member's task: the team's own notes are recalled too."""


class Recalled(Model, kw_only=True):
    id: str
    kind: str
    content: str
    confidence: float
    """Confidence after decay, at the time of recall."""


@message("context.result")
class ContextResult(Payload, kw_only=True):
    learnings: list[Recalled] = msgspec.field(default_factory=list)
    skills: list[str] = msgspec.field(default_factory=list)
    """Names of the skills selected for the task."""
    text: str = ""
    """The block to put in the prompt (empty when there is nothing relevant)."""


class TaskRecord(Model, kw_only=True):
    """What the learner gets about a finished task."""

    task_id: str
    description: str
    cwd: str
    status: str
    decision: str
    scores: list[float]
    findings: list[Finding] = msgspec.field(default_factory=list)
    """Findings of the last evaluated iteration (unresolved at the end)."""
    model: ModelChoice | None = None
    """The small model to draft learnings with, if the task had one."""


@message("learn.request")
class LearnRequest(Payload, kw_only=True):
    record: TaskRecord


class NewLearning(Model, kw_only=True):
    kind: Annotated[str, Meta(pattern=r"^[a-z_]{2,32}$")]
    content: Annotated[str, Meta(min_length=3, max_length=2000)]
    confidence: Annotated[float, Meta(ge=0, le=1)]


@message("memory.remember")
class MemoryRemember(Payload, kw_only=True):
    learnings: list[NewLearning]
    source_task: str | None = None
    team: str | None = None
    """Write to this team's memory (recalled only for its members' tasks)."""


@message("memory.remember.result")
class MemoryRememberResult(Payload, kw_only=True):
    created: int
    reinforced: int


@message("memory.forget")
class MemoryForget(Payload, kw_only=True):
    id: Annotated[str, Meta(min_length=4)]


@message("memory.search")
class MemorySearch(Payload, kw_only=True):
    """Learnings most similar to ``text`` (answered with ``store.query.result``)."""

    text: Annotated[str, Meta(min_length=1)]
    k: Annotated[int, Meta(ge=1, le=1000)] = 10


class MinedPattern(Model, kw_only=True):
    id: str
    kind: str
    summary: str
    samples: int
    confidence: float
    task_ids: list[str]
    proposal: str | None = None
    """Name of the SKILL.md drafted from this pattern, if any."""


@message("mine.request")
class MineRequest(Payload, kw_only=True):
    """Mine the task history for patterns; draft skills for strong ones."""

    model: ModelChoice | None = None
    """Small model to draft SKILL.md files with; without one they come from a template."""


@message("mine.result")
class MineResult(Payload, kw_only=True):
    patterns: list[MinedPattern]
    proposals: list[str]
    """Names of SKILL.md files newly written to $SHOAL_HOME/skills/proposed/."""


@message("patterns.record")
class PatternsRecord(Payload, kw_only=True):
    patterns: list[MinedPattern]


class ExportedLearning(Model, kw_only=True):
    """A learning as ``shoal export`` wrote it (``records.learnings``' columns)."""

    id: Annotated[str, Meta(min_length=4, max_length=64)]
    kind: Annotated[str, Meta(min_length=1, max_length=64)]
    content: Annotated[str, Meta(min_length=1, max_length=20_000)]
    confidence: Annotated[float, Meta(ge=0, le=1)]
    uses: Annotated[int, Meta(ge=0)] = 0
    source_task: str | None = None
    team: str | None = None
    created_at: dt.datetime
    last_used_at: dt.datetime
    forgotten: bool = False


@message("memory.import")
class MemoryImport(Payload, kw_only=True):
    """Learnings from an export (``shoal import``), kept under their own ids and times."""

    learnings: Annotated[list[ExportedLearning], Meta(min_length=1, max_length=1000)]


@message("memory.import.result")
class MemoryImportResult(Payload, kw_only=True):
    imported: int
    skipped: int
    """Already here (by id)."""
