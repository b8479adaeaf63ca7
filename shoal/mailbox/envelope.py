"""The envelope every message travels in, and the payload of every message kind.

One envelope for every message (DESIGN.md §2). The payload is a JSON object
whose shape is fixed per ``kind`` by the models registered below; a receiver
validates it with :meth:`Envelope.parse_payload`. Frames are JSON: nothing is
ever unpickled from the wire.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shoal.ids import new_id

# Recipient that is not an actor but the orchestrator itself (control requests).
ORCHESTRATOR = "orchestrator"
# Recipient meaning "publish on the event bus" (topic = kind).
PUBLISH = "*"
# Prefix of a recipient that names a role: the broker picks a ready actor of it.
ROLE_PREFIX = "role:"

_KIND = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
_ADDRESS = r"^[A-Za-z0-9_.:*@/-]{1,128}$"


class Payload(BaseModel):
    """Base of every payload model; ``kind`` is the message kind it travels as."""

    model_config = ConfigDict(extra="forbid")
    kind: ClassVar[str]


PAYLOADS: dict[str, type[Payload]] = {}
P = TypeVar("P", bound=Payload)


def message(kind: str):
    """Register a payload model as the payload of ``kind``."""

    def register(cls: type[P]) -> type[P]:
        if kind in PAYLOADS:
            raise ValueError(f"message kind {kind!r} registered twice")
        cls.kind = kind
        PAYLOADS[kind] = cls
        return cls

    return register


class UnknownKind(ValueError):
    """A message's kind has no registered payload model."""


class Envelope(BaseModel):
    """One message, exactly as it travels and as it is recorded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    """Sortable unique id (ULID); handlers are idempotent by it."""
    kind: str = Field(pattern=_KIND)
    """What the message is, e.g. ``echo.request``; selects the payload model and handler."""
    sender: str = Field(pattern=_ADDRESS)
    """Address of the sending actor or client (its DEALER identity)."""
    recipient: str = Field(pattern=_ADDRESS)
    """An actor or client address, ``role:<role>``, ``orchestrator``, or ``*`` to publish."""
    task_id: str | None = Field(None, max_length=64)
    """The task this message belongs to, if any."""
    reply_to: str | None = Field(None, max_length=64)
    """Id of the message this one answers; a reply also acks that message."""
    attempt: int = Field(1, ge=1)
    """Delivery attempt, raised by the broker on each redelivery."""
    sent_at: float = Field(default_factory=time.time, ge=0, lt=1e11)
    """Unix time at which the sender made the message."""
    payload: dict[str, Any] = Field(default_factory=dict)
    """The kind's payload as a JSON object."""

    @classmethod
    def of(cls, payload: Payload, *, sender: str, recipient: str, **fields: Any) -> Envelope:
        return cls(
            kind=payload.kind,
            sender=sender,
            recipient=recipient,
            payload=payload.model_dump(mode="json"),
            **fields,
        )

    def reply(self, payload: Payload, *, sender: str | None = None) -> Envelope:
        """A message answering this one, addressed to its sender."""
        return Envelope.of(
            payload,
            sender=sender or self.recipient,
            recipient=self.sender,
            task_id=self.task_id,
            reply_to=self.id,
        )

    def parse_payload(self) -> Payload:
        """The payload validated against its kind's model."""
        model = PAYLOADS.get(self.kind)
        if model is None:
            raise UnknownKind(f"no payload model for message kind {self.kind!r}")
        return model.model_validate(self.payload)

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        return cls.model_validate_json(data)


# --- mailbox -----------------------------------------------------------------


@message("mailbox.error")
class ErrorReply(Payload):
    """A request could not be handled; sent to the requester in place of a reply."""

    code: Literal["no_handler", "bad_payload", "handler_failed", "undeliverable", "refused"]
    message: str


# --- echo (the built-in role used by tests and benchmarks) --------------------


@message("echo.request")
class EchoRequest(Payload):
    text: str = ""
    seq: int | None = None
    delay: float = Field(0.0, ge=0, le=1.0)
    """Seconds the echo actor waits before answering (to simulate work in tests)."""


@message("echo.reply")
class EchoReply(Payload):
    text: str = ""
    seq: int | None = None
    handled_by: str


# --- orchestrator control (recipient "orchestrator") -------------------------


@message("orchestrator.status")
class StatusRequest(Payload):
    pass


class ActorStatus(BaseModel):
    name: str
    role: str
    pid: int | None
    state: str
    restarts: int
    last_heartbeat: str | None
    launcher: str


class MessageCounters(BaseModel):
    routed: int
    recorded: int
    dropped: int
    undeliverable: int = 0
    redelivered: int = 0
    pending: int = 0


@message("orchestrator.status.result")
class StatusReply(Payload):
    pid: int
    home: str
    started_at: float
    actors: list[ActorStatus]
    messages: MessageCounters
    running_tasks: int = 0
    env_fingerprint: str = ""
    """Hash of the model variables the actors were started with (never the values)."""


@message("orchestrator.stop")
class StopRequest(Payload):
    pass


@message("orchestrator.ok")
class OkReply(Payload):
    detail: str = ""


@message("actor.spawn")
class SpawnRequest(Payload):
    role: str
    count: int = Field(1, ge=1, le=64)
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    launcher: str | None = None
    """local or ray; None: the orchestrator's backend setting."""


@message("actor.spawned")
class SpawnReply(Payload):
    names: list[str]


@message("actor.retire")
class RetireRequest(Payload):
    name: str


@message("store.query")
class QueryRequest(Payload):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


@message("store.rows")
class QueryReply(Payload):
    columns: list[str]
    rows: list[list[Any]]


# --- events (published by the orchestrator) ----------------------------------


@message("actor.started")
class ActorStarted(Payload):
    name: str
    role: str
    pid: int | None
    restarts: int


@message("actor.exited")
class ActorExited(Payload):
    name: str
    role: str
    pid: int | None
    reason: str


# --- the loop: plan -> execute -> evaluate -> refine ----------------------------


class Step(BaseModel):
    title: str
    detail: str = ""


class Subtask(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    title: str
    detail: str = ""
    files: list[str] = Field(default_factory=list)
    """Files this subtask owns (team runs give each subtask its own worktree)."""
    depends_on: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """What the planner submits through its ``submit_plan`` tool call."""

    steps: list[Step] = Field(min_length=1)
    subtasks: list[Subtask] = Field(default_factory=list)


class Finding(BaseModel):
    severity: Literal["blocker", "important", "minor"]
    title: str
    detail: str = ""
    fix: str = ""


class Usage(BaseModel):
    """Tokens and cost of the model calls behind one reply."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            calls=self.calls + other.calls,
        )


class ModelChoice(BaseModel):
    """A role's model as the task asked for it (keys never travel: actors read their env)."""

    model: str
    base_url: str | None = None


class TaskOptions(BaseModel):
    iterations: int = Field(3, ge=1, le=50)
    quality: float = Field(0.8, ge=0, le=1)
    budget_usd: float | None = Field(None, gt=0)
    budget_tokens: int | None = Field(None, gt=0)
    timeout: float | None = Field(None, gt=0)
    """Wall-clock budget of the whole task, in seconds."""
    plateau: float = Field(0.02, ge=0)
    """A refinement that improves the score by less than this stops the loop."""
    permission_mode: Literal["default", "plan", "accept-edits", "bypass"] = "accept-edits"
    models: dict[str, ModelChoice] = Field(default_factory=dict)
    """Per role (planner, executor, evaluator, small): the model to use."""
    team: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    """Run on this team's members (``executor@TEAM``…) where it has them."""


@message("task.submit")
class TaskSubmit(Payload):
    description: str = Field(min_length=1)
    cwd: str
    options: TaskOptions = Field(default_factory=TaskOptions)


@message("task.accepted")
class TaskAccepted(Payload):
    task_id: str


@message("task.cancel")
class TaskCancel(Payload):
    task_id: str


@message("task.progress")
class TaskProgress(Payload):
    """Published at every step of a task, for live views."""

    task_id: str
    phase: Literal["planning", "executing", "evaluating", "refining", "restoring", "done"]
    iteration: int = 0
    score: float | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    detail: str = ""


@message("task.done")
class TaskDone(Payload):
    """Published when a task ends; the learner and pattern-miner will subscribe."""

    task_id: str
    status: Literal["accepted", "unaccepted", "failed", "cancelled"]
    decision: str
    """Why it stopped: quality, max_iterations, plateau, regression, budget_*, error, cancelled."""
    score: float | None
    iterations: int
    tokens: int
    cost_usd: float
    files_changed: list[str]
    summary: str


@message("plan.request")
class PlanRequest(Payload):
    description: str
    cwd: str
    model: ModelChoice


@message("plan.result")
class PlanResult(Payload):
    plan: Plan
    usage: Usage


@message("exec.request")
class ExecRequest(Payload):
    description: str
    cwd: str
    iteration: int
    plan: Plan
    findings: list[Finding] = Field(default_factory=list)
    """The previous iteration's findings: this iteration's instructions."""
    model: ModelChoice
    permission_mode: str = "accept-edits"
    max_turns: int = Field(60, ge=1)
    token_budget: int | None = None
    team: str | None = None
    """The team the task runs for: enables the team tools (messages, team memory)."""


@message("exec.event")
class ExecEvent(Payload):
    """Published for live views: one tool call or one piece of model output."""

    iteration: int
    type: Literal["tool_call", "text", "turn"]
    name: str = ""
    detail: str = ""
    ok: bool = True


@message("exec.result")
class ExecResult(Payload):
    iteration: int
    summary: str
    turns: int
    tool_calls: int
    usage: Usage
    base: str
    """Snapshot (commit) of the workspace before iteration 1."""
    snapshot: str
    """Snapshot of the workspace after this iteration, kept on refs/shoal/<task>/<n>."""
    error: str | None = None


@message("eval.request")
class EvalRequest(Payload):
    description: str
    cwd: str
    iteration: int
    plan: Plan
    base: str
    snapshot: str
    model: ModelChoice
    rubric: str | None = None


class CheckOutcome(BaseModel):
    name: str
    kind: str
    passed: bool
    output: str = ""


class Evaluation(BaseModel):
    """What the judge submits through its ``submit_evaluation`` tool call."""

    score: float = Field(ge=0, le=1)
    dimensions: dict[str, float] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)


@message("eval.result")
class EvalResult(Payload):
    iteration: int
    score: float
    """The composite: tests, lint and judge weighed together."""
    judge: Evaluation
    checks: list[CheckOutcome] = Field(default_factory=list)
    usage: Usage


@message("workspace.restore")
class RestoreRequest(Payload):
    """Leave the workspace with the files of ``snapshot`` (the best iteration)."""

    cwd: str
    base: str
    snapshot: str


@message("workspace.restored")
class RestoreResult(Payload):
    files_changed: list[str]
    """Files that differ between the task's start and what the user is left with."""


# --- learning: memory, skills, learner ------------------------------------------


@message("context.request")
class ContextRequest(Payload):
    """What a role asks before prompting: relevant learnings and skills for this text."""

    text: str
    cwd: str
    role: str


class Recalled(BaseModel):
    id: str
    kind: str
    content: str
    confidence: float
    """Confidence after decay, at the time of recall."""


@message("context.result")
class ContextResult(Payload):
    learnings: list[Recalled] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    """Names of the skills selected for the task."""
    text: str = ""
    """The block to put in the prompt (empty when there is nothing relevant)."""


class TaskRecord(BaseModel):
    """What the learner gets about a finished task."""

    task_id: str
    description: str
    cwd: str
    status: str
    decision: str
    scores: list[float]
    findings: list[Finding] = Field(default_factory=list)
    """Findings of the last evaluated iteration (unresolved at the end)."""
    model: ModelChoice | None = None
    """The small model to draft learnings with, if the task had one."""


@message("learn.request")
class LearnRequest(Payload):
    record: TaskRecord


class NewLearning(BaseModel):
    kind: str = Field(pattern=r"^[a-z_]{2,32}$")
    content: str = Field(min_length=3, max_length=2000)
    confidence: float = Field(ge=0, le=1)


@message("memory.remember")
class RememberRequest(Payload):
    learnings: list[NewLearning]
    source_task: str | None = None


@message("memory.remembered")
class RememberResult(Payload):
    created: int
    reinforced: int


@message("memory.forget")
class ForgetRequest(Payload):
    id: str = Field(min_length=4)


@message("memory.search")
class MemorySearch(Payload):
    """Learnings most similar to ``text`` (answered with ``store.rows``)."""

    text: str = Field(min_length=1)
    k: int = Field(10, ge=1, le=1000)


class MinedPattern(BaseModel):
    id: str
    kind: str
    summary: str
    samples: int
    confidence: float
    task_ids: list[str]
    proposal: str | None = None
    """Name of the SKILL.md drafted from this pattern, if any."""


@message("mine.request")
class MineRequest(Payload):
    """Mine the task history for patterns; draft skills for strong ones."""

    model: ModelChoice | None = None
    """Small model to draft SKILL.md files with; without one they come from a template."""


@message("mine.result")
class MineResult(Payload):
    patterns: list[MinedPattern]
    proposals: list[str]
    """Names of SKILL.md files newly written to $SHOAL_HOME/skills/proposed/."""


@message("patterns.record")
class PatternsRecord(Payload):
    patterns: list[MinedPattern]


# --- teams ---------------------------------------------------------------------


@message("team.message")
class TeamMessage(Payload):
    """Text for an agent from a person (typed into its pane), a teammate or the lead.

    It reaches the agent's conversation on its next turn.
    """

    text: str = Field(min_length=1, max_length=20_000)
    sender: str = Field(min_length=1, max_length=128)
    source: Literal["person", "teammate", "lead", "subagent"] = "teammate"


# --- batch refactors and ray ---


class BatchUnitRow(BaseModel):
    """One unit of a batch as recorded when the batch starts."""

    unit_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    name: str
    """The file, directory or repository the unit is about."""
    source: str
    """The repository (path or URL) its isolated copy is cloned from."""
    files: list[str] = Field(default_factory=list)


@message("batch.start")
class BatchStart(Payload):
    """Record a batch and its units (a resumed batch: only marks it running again)."""

    batch_id: str = Field(pattern=r"^[0-9A-Za-z]{4,64}$")
    instruction: str = Field(min_length=1)
    spec: dict[str, Any]
    """How it was asked for (sources, unit, verify, models, options), to resume it."""
    backend: Literal["ray", "local"]
    units: list[BatchUnitRow]


@message("batch.unit")
class BatchUnitDone(Payload):
    """One unit finished (or was given up on); its row gets the outcome."""

    batch_id: str = Field(pattern=r"^[0-9A-Za-z]{4,64}$")
    unit_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    status: Literal["accepted", "rejected", "failed", "lost"]
    attempts: int = Field(ge=1)
    score: float | None = None
    verify_passed: bool | None = None
    diff: str = ""
    files_changed: list[str] = Field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0
    duration_s: float | None = None
    summary: str = ""
    error: str | None = None
    worker: str | None = None


@message("batch.end")
class BatchEnd(Payload):
    batch_id: str = Field(pattern=r"^[0-9A-Za-z]{4,64}$")
    status: Literal["done", "interrupted"]
    applied: dict[str, str] = Field(default_factory=dict)
    """Repository -> the branch its accepted patches were committed to."""
