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


class Model(BaseModel):
    """Base of the models payloads are made of.

    Their validators are built when first used, not on import: a process uses a
    few of the ~100 models here, and building all of them cost every CLI start
    and actor spawn ~40 ms.
    """

    model_config = ConfigDict(defer_build=True)


class Payload(Model):
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

    code: Literal[
        "no_handler", "bad_payload", "handler_failed", "undeliverable", "refused", "disk_full"
    ]
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


class ActorStatus(Model):
    name: str
    role: str
    pid: int | None
    state: str
    restarts: int
    last_heartbeat: str | None
    launcher: str


class MessageCounters(Model):
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
    problems: list[str] = Field(default_factory=list)
    """Conditions a person should hear of, one line each (the HTTP API not served, out of
    file descriptors, refusing connections)."""


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


@message("store.sql")
class SqlRequest(Payload):
    """A user's own SELECT (``shoal sql``); refused unless it only reads (store/usersql.py)."""

    sql: str = Field(min_length=1, max_length=100_000)
    limit: int = Field(10_000, ge=1, le=1_000_000)
    """Rows returned at most (the result says when there were more)."""
    timeout: float = Field(60.0, gt=0, le=3600)
    """Seconds the query may run before it is interrupted."""


@message("store.sql_result")
class SqlResult(Payload):
    columns: list[str]
    rows: int
    truncated: bool = False
    rows_file: str
    """An owner-only JSON file under ``run/sql/`` holding the rows, which the client reads
    and deletes: every message is recorded, and rows sent in the reply would be copied
    into the very records they came from."""


@message("store.export")
class ExportRequest(Payload):
    """Write every public view as Parquet into ``directory`` (``shoal sql --export``)."""

    directory: str = Field(min_length=1, max_length=4096)


@message("store.exported")
class ExportResult(Payload):
    directory: str
    files: dict[str, int]
    """Rows written per view (``<directory>/<view>.parquet``)."""


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


class Step(Model):
    title: str
    detail: str = ""


class Subtask(Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    title: str
    detail: str = ""
    files: list[str] = Field(default_factory=list)
    """Files this subtask owns (team runs give each subtask its own worktree)."""
    depends_on: list[str] = Field(default_factory=list)


class Plan(Model):
    """What the planner submits through its ``submit_plan`` tool call."""

    steps: list[Step] = Field(min_length=1)
    subtasks: list[Subtask] = Field(default_factory=list)


class Finding(Model):
    severity: Literal["blocker", "important", "minor"]
    title: str
    detail: str = ""
    fix: str = ""


class Usage(Model):
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


PermissionModeName = Literal["default", "plan", "accept-edits", "bypass"]


class ModelChoice(Model):
    """A role's model as the task asked for it (keys never travel: actors read their env)."""

    model: str
    base_url: str | None = None


class PermissionRule(Model):
    """One allow/deny/ask rule as it travels (checked by ``shoal.tools.permissions.Rule``)."""

    action: Literal["allow", "deny", "ask"]
    tool: str
    pattern: str | None = None


class CheckSetting(Model):
    """A check the user named (``[checks]`` in config.toml, or ``--check``): it replaces
    the detected checks of its kind."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: Literal["test", "lint"] = "test"
    command: str = Field(min_length=1)
    """Run by /bin/sh in the repository, with the project's venv and node_modules/.bin on PATH."""
    timeout: float | None = Field(None, gt=0)
    """Seconds it may run (default 600); then it is killed and reported could_not_run."""


TestsState = Literal["passed", "failed", "could_not_run", "none_found", "off"]
"""What an evaluation's tests came to; ``none_found``: the judge alone decided."""


class TaskOptions(Model):
    iterations: int = Field(3, ge=1, le=50)
    quality: float = Field(0.8, ge=0, le=1)
    budget_usd: float | None = Field(None, gt=0)
    budget_tokens: int | None = Field(None, gt=0)
    timeout: float | None = Field(None, gt=0)
    """Wall-clock budget of the whole task, in seconds."""
    plateau: float = Field(0.02, ge=0)
    """A refinement that improves the score by less than this stops the loop."""
    permission_mode: PermissionModeName = "accept-edits"
    permission_rules: list[PermissionRule] = Field(default_factory=list)
    """Allow, deny and ask rules from config and flags; deny wins."""
    models: dict[str, ModelChoice] = Field(default_factory=dict)
    """Per role (planner, executor, evaluator, small): the model to use."""
    team: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    """Run on this team's members (``executor@TEAM``…) where it has them."""
    team_size: int | None = Field(None, ge=1, le=32)
    """A team run: the plan's subtasks run on this many executors at once, each in its
    own git worktree, and are merged before the final evaluation."""
    keep_worktrees: bool = False
    """Keep a team run's worktrees and branches afterwards (they are removed by default)."""
    replay_of: str | None = Field(None, max_length=64)
    """The recorded task this one replays (``shoal replay``) in a worktree of its base."""
    learn: bool = True
    """False: the learner, skill effectiveness and pattern mining leave this task out
    (replays, unless ``shoal replay --learn``)."""
    evaluate: bool = True
    """False for a delegated subagent: one execution, no evaluation or refinement."""
    skip_checks: list[str] = Field(default_factory=list)
    """Project checks to leave out of the score: a team run's subtasks are not judged by
    checks that already failed before the run (the merged result is)."""
    checks: list[CheckSetting] = Field(default_factory=list)
    """Checks from ``[checks]`` or ``--check``; empty: the detected ones."""
    run_checks: bool = True
    """False (``--no-checks``): the judge alone scores, and the result says checks were off."""
    virtual_env: str | None = None
    """``VIRTUAL_ENV`` of the shell that submitted the task: the project's environment when
    it lies inside the repository."""


@message("task.submit")
class TaskSubmit(Payload):
    description: str = Field(min_length=1)
    cwd: str
    options: TaskOptions = Field(default_factory=TaskOptions)
    plan: Plan | None = None
    """A plan to follow instead of asking the planner (subtasks of a team run, subagents)."""
    parent: str | None = None
    """The task that started this one (a team run's subtask, a delegated subagent)."""
    subtask: str | None = None
    """The id of the team run's subtask this task carries out."""


@message("task.accepted")
class TaskAccepted(Payload):
    task_id: str
    waiting_for: str | None = None
    """The task changing the same work tree, which this one waits for (queued)."""


@message("task.cancel")
class TaskCancel(Payload):
    task_id: str


@message("task.progress")
class TaskProgress(Payload):
    """Published at every step of a task, for live views."""

    task_id: str
    phase: Literal[
        "queued",
        "planning",
        "teamwork",
        "executing",
        "evaluating",
        "refining",
        "restoring",
        "done",
    ]
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
    """Why it stopped: quality, max_iterations, plateau, regression, budget_*, error, cancelled;
    unverified: the score reached the bar but the tests could not run."""
    score: float | None
    iterations: int
    tokens: int
    cost_usd: float
    files_changed: list[str]
    summary: str
    subtasks: list[SubtaskOutcome] = Field(default_factory=list)
    """A team run's subtasks and how each ended."""
    parent: str | None = None
    best_iteration: int | None = None
    """The iteration whose files the task left (its snapshot: refs/shoal/<task>/<n>)."""
    conflicts: list[str] = Field(default_factory=list)
    """Files someone else changed while the task ran, in a way that does not merge with the
    task's change: theirs were kept, the task's version is in its best snapshot."""
    checks: list[CheckReport] = Field(default_factory=list)
    """The project's checks on the files the task left (its best iteration)."""
    tests: TestsState | None = None
    """What its tests came to; None: never evaluated."""


@message("plan.request")
class PlanRequest(Payload):
    description: str
    cwd: str
    model: ModelChoice
    team_size: int | None = None
    """Plan for a team run: split the work into subtasks this many executors can share."""


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
    permission_rules: list[PermissionRule] = Field(default_factory=list)
    max_turns: int = Field(60, ge=1)
    token_budget: int | None = None
    team: str | None = None
    """The team the task runs for: enables the team tools (messages, team memory)."""
    parent: str | None = None
    """The team run (or delegating task) this task belongs to: its task list and notes."""
    subagent: bool = False
    """A delegated subagent: it may not delegate in turn."""
    subtask: str | None = None
    """The team run's subtask id (shown by ``shoal team status``)."""


@message("exec.event")
class ExecEvent(Payload):
    """Published for live views: one tool call or one piece of model output."""

    iteration: int
    type: Literal["tool_call", "text", "turn", "again"]
    """``again``: the iteration is taken up again by ``name`` (its request was redelivered:
    the actor that had it died), so the calls that follow repeat the lost run's."""
    name: str = ""
    detail: str = ""
    ok: bool = True
    error: str = ""
    """Why a tool call failed or was refused (the first line of its result)."""
    preview: str = ""
    """A few lines to show under a tool call: an edit's short diff, a command's output tail."""


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
    skip_checks: list[str] = Field(default_factory=list)
    checks: list[CheckSetting] = Field(default_factory=list)
    run_checks: bool = True
    virtual_env: str | None = None
    subtask: str | None = None
    """The team run's subtask judged (named in the evaluator's pane)."""


class TestCounts(Model):
    passed: int = 0
    failed: int = 0
    errors: int = 0


class CheckReport(Model):
    """One check of an evaluation, as results and progress show it."""

    name: str
    kind: str
    passed: bool
    status: Literal["passed", "failed", "could_not_run"] | None = None
    """None only in records made before checks had a status (then ``passed`` says it)."""
    command: str = ""
    runner: str = ""
    """The interpreter or tool it ran with, e.g. ``.venv/bin/python``, ``uv run``, ``pnpm``."""
    counts: TestCounts | None = None
    duration_s: float = 0.0
    reason: str = ""
    """For could_not_run: why, and the fix, in one line."""


class CheckOutcome(CheckReport):
    output: str = ""


@message("eval.checks")
class EvalChecks(Payload):
    """Published once an evaluation's checks ran, before the judge: for progress views."""

    iteration: int
    checks: list[CheckReport] = Field(default_factory=list)
    tests: TestsState


class Evaluation(Model):
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
    tests: TestsState | None = None
    """None from an evaluator that predates it."""


@message("workspace.restore")
class RestoreRequest(Payload):
    """Leave the workspace with the task's files of ``snapshot`` (the best iteration),
    from the state its last snapshot left them in, three-way."""

    cwd: str
    base: str
    snapshot: str
    subtask: str | None = None
    """The team run's subtask whose files these are (named in the executor's pane)."""


@message("workspace.restored")
class RestoreResult(Payload):
    files_changed: list[str]
    """Files that differ between the task's start and its best snapshot."""
    kept: list[str] = Field(default_factory=list)
    """Files someone else changed meanwhile that could not take the snapshot's change."""


# --- learning: memory, skills, learner ------------------------------------------


@message("context.request")
class ContextRequest(Payload):
    """What a role asks before prompting: relevant learnings and skills for this text."""

    text: str
    cwd: str
    role: str
    team: str | None = None
    """A team member's task: the team's own notes are recalled too."""


class Recalled(Model):
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


class TaskRecord(Model):
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


class NewLearning(Model):
    kind: str = Field(pattern=r"^[a-z_]{2,32}$")
    content: str = Field(min_length=3, max_length=2000)
    confidence: float = Field(ge=0, le=1)


@message("memory.remember")
class RememberRequest(Payload):
    learnings: list[NewLearning]
    source_task: str | None = None
    team: str | None = None
    """Write to this team's memory (recalled only for its members' tasks)."""


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


class MinedPattern(Model):
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
    subtask: str | None = None
    """The team run's subtask the sender works on (shown with the message)."""


class SubtaskOutcome(Model):
    id: str
    title: str = ""
    status: Literal[
        "pending", "running", "accepted", "unaccepted", "failed", "cancelled", "conflict"
    ]
    score: float | None = None
    branch: str | None = None
    task_id: str | None = None
    """The child task that ran it (``shoal show`` it)."""
    detail: str = ""
    """Why it ended so, e.g. the files a merge conflict left unresolved."""


@message("team.prepare")
class TeamPrepare(Payload):
    """For the lead, while the plan is made: snapshot the base of a team run and find the
    project checks that already fail on it (the run's first steps, off its critical path)."""

    task_id: str
    cwd: str


@message("team.run")
class TeamRunRequest(Payload):
    """For the lead: run a plan's subtasks in parallel worktrees and merge them."""

    task_id: str
    description: str
    cwd: str
    plan: Plan
    options: TaskOptions


@message("team.run.result")
class TeamRunResult(Payload):
    subtasks: list[SubtaskOutcome]
    base: str
    """Snapshot of the work tree before the run."""
    snapshot: str
    """Snapshot of the merged result, now in the work tree."""
    usage: Usage = Field(default_factory=Usage)
    summary: str = ""
    error: str | None = None
    kept: list[str] = Field(default_factory=list)
    """Files someone else changed in the work tree during the run that could not take the
    merged result's change (left as they were)."""


TEAM_TASK_DONE = ("accepted", "unaccepted", "done")
"""Statuses of a team task that unblock the tasks depending on it."""


@message("team.tasks.create")
class TeamTasksCreate(Payload):
    """Create (or replace) a team task list: a team run's subtasks, or a team's backlog."""

    list_id: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    tasks: list[Subtask] = Field(min_length=1, max_length=500)
    owner: str | None = None


@message("team.task.update")
class TeamTaskUpdate(Payload):
    list_id: str
    id: str
    status: str
    task_id: str | None = None
    score: float | None = None
    branch: str | None = None
    detail: str = ""


@message("team.task.claim")
class TeamTaskClaim(Payload):
    """Claim a task for ``owner``: exactly one of concurrent claims wins."""

    list_id: str
    id: str
    owner: str = Field(min_length=1, max_length=128)


@message("team.task.claimed")
class TeamTaskClaimed(Payload):
    won: bool
    reason: str = ""
    """Why the claim lost: taken by whom, blocked by what, or no such task."""


@message("team.ask")
class TeamAsk(Payload):
    """A member's tool call waits for a person's approval: asked in the member's pane and
    forwarded to the lead's pane, where it can be answered too (``team.answer``)."""

    ask_id: str
    member: str
    tool: str
    subject: str = ""
    summary: str = ""
    task_id: str | None = None
    subtask: str | None = None


@message("team.answer")
class TeamAnswer(Payload):
    """A person's answer to a ``team.ask``: to the member from the lead's pane, or to the
    lead when it was answered in the member's own pane (the lead's pane stops asking)."""

    ask_id: str
    allow: bool
    always: bool = False
    """Allow this tool without asking again for the rest of the task."""
    by: str = ""
    """How it was settled, e.g. ``in lead@red-1's pane``, ``(no answer in time)``."""


@message("team.progress")
class TeamProgress(Payload):
    """Published with a team run's id: its milestones, for the lead's pane and the
    progress of ``shoal team run``."""

    event: Literal["plan", "start", "refused", "result", "merge", "conflict", "resolve", "message"]
    subtask: str | None = None
    member: str | None = None
    """Who: the executor that took the subtask, or the sender of a message to the lead."""
    text: str = ""
    score: float | None = None


TaskDone.model_rebuild()

# --- api ---------------------------------------------------------------------


@message("api.serve")
class ApiServe(Payload):
    """Serve the HTTP API as ``$SHOAL_HOME/api.json`` says (written by ``shoal serve``).

    The settings travel in that owner-only file, not here: every message is
    recorded, and the token and webhook secrets must never be.
    """


@message("api.serving")
class ApiServing(Payload):
    url: str
    """Base URL of the API, e.g. ``http://127.0.0.1:9742/api/v1``."""
    auth: bool
    """Whether every endpoint but /health needs the bearer token."""
    webhooks: int = 0
    """Webhooks that receive events (config.toml's and ``shoal serve --webhook``'s)."""


@message("api.stop")
class ApiStop(Payload):
    """Stop serving the HTTP API (the orchestrator keeps running)."""


@message("budget.warning")
class BudgetWarning(Payload):
    """Published once per budget when a task has used ``fraction`` of it (webhooks, live views)."""

    task_id: str
    budget: Literal["tokens", "usd", "time"]
    used: float
    limit: float
    fraction: float


# --- chat and sessions ------------------------------------------------------------


@message("session.open")
class SessionOpen(Payload):
    """Open a chat session: by id (or unique prefix), by name, the last one in ``cwd``, or new."""

    cwd: str
    session_id: str | None = Field(None, min_length=4, max_length=64, pattern=r"^[0-9A-Za-z]+$")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    continue_last: bool = False
    """The session used last in ``cwd`` (``shoal chat --continue``)."""
    model: str | None = None
    permission_mode: PermissionModeName = "accept-edits"
    recent: int = Field(6, ge=0, le=200)
    """How many of the latest user and assistant messages to send back (to show on resume)."""


class SessionLine(Model):
    """One message of a transcript as a person reads it."""

    role: str
    content: str


@message("session.info")
class SessionInfo(Payload):
    id: str
    name: str | None
    cwd: str
    created: bool
    """True when this request made the session."""
    turns: int
    tokens: int
    cost_usd: float
    model: str | None = None
    permission_mode: str | None = None
    recent: list[SessionLine] = Field(default_factory=list)


class SessionMessage(Model):
    """One row of a transcript: a chat message, or a marker (``summary``, ``clear``)."""

    role: Literal["user", "assistant", "tool", "summary", "clear"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    """``files`` (paths attached to a user message), ``through`` (last seq a summary covers),
    ``interrupted`` (the turn was stopped by the user)."""


@message("session.append")
class SessionAppend(Payload):
    """Record a turn's messages (the orchestrator numbers them) and what the turn cost."""

    session_id: str
    messages: list[SessionMessage]
    new_turn: bool = True
    model: str | None = None
    permission_mode: str | None = None
    usage: Usage = Field(default_factory=Usage)


@message("session.clear")
class SessionClear(Payload):
    """Start a fresh conversation in the session (the transcript keeps the old one)."""

    session_id: str


class Attachment(Model):
    path: str
    content: str


@message("chat.turn")
class ChatTurn(Payload):
    """One user message for the chat role: runs the tool loop and replies ``chat.reply``."""

    session_id: str
    turn_id: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=1_000_000)
    attachments: list[Attachment] = Field(default_factory=list)
    cwd: str
    model: ModelChoice
    small_model: ModelChoice | None = None
    """Writes the summaries of compaction; without one they are a deterministic digest."""
    permission_mode: PermissionModeName = "accept-edits"
    permission_rules: list[PermissionRule] = Field(default_factory=list)
    """The allow/deny/ask rules from config, as ``shoal run`` obeys them."""
    context_window: int | None = Field(None, ge=256)
    """Tokens the model can take; None: litellm's model info, else a default."""
    max_steps: int = Field(40, ge=1, le=500)
    can_ask: bool = False
    """A person is there to approve calls that ask (``chat.ask``); else they are refused."""


@message("chat.compact")
class ChatCompact(Payload):
    """Summarize the older part of a session's conversation now (``/compact``)."""

    session_id: str
    cwd: str
    model: ModelChoice
    small_model: ModelChoice | None = None
    keep_turns: int = Field(1, ge=0, le=50)


@message("chat.compacted")
class ChatCompacted(Payload):
    summarized: int
    """Messages folded into the summary (0: nothing old enough to fold)."""
    tokens_before: int
    tokens_after: int
    summary: str = ""


@message("chat.cancel")
class ChatCancel(Payload):
    turn_id: str


@message("chat.started")
class ChatStarted(Payload):
    """Published when an actor takes a turn, so the client knows whom to cancel."""

    session_id: str
    turn_id: str


@message("chat.delta")
class ChatDelta(Payload):
    """Published: a piece of the streamed answer."""

    session_id: str
    turn_id: str
    text: str
    step: int = 0
    """The model call of the turn the text belongs to (a new one after tool calls)."""


@message("chat.tool")
class ChatTool(Payload):
    """Published: one tool call of a turn, folded to one line for the chat."""

    session_id: str
    turn_id: str
    name: str
    detail: str = ""
    ok: bool = True
    denied: bool = False
    error: str = ""
    """The first line of what went wrong, when the call failed."""
    preview: str = ""
    """A few lines to show under it: an edit's short diff, a command's output tail."""


@message("chat.reply")
class ChatReply(Payload):
    text: str = ""
    """The final answer of the turn."""
    usage: Usage = Field(default_factory=Usage)
    steps: int = 0
    tool_calls: int = 0
    cancelled: bool = False
    error: str | None = None
    context_tokens: int = 0
    """Estimated tokens of the conversation sent with the last model call."""
    context_window: int = 0
    compacted: bool = False
    """The older turns were summarized before this turn (the context was filling up)."""


@message("chat.ask")
class ChatAsk(Payload):
    """Published: a tool call needs the person's approval (answered by ``chat.answer``)."""

    session_id: str
    turn_id: str
    ask_id: str
    tool: str
    subject: str = ""
    summary: str = ""


@message("chat.answer")
class ChatAnswer(Payload):
    ask_id: str
    allow: bool
    always: bool = False
    """Allow this tool without asking for the rest of the session."""


# --- team panes (tmux) ----------------------------------------------------------

_TEAM_NAME = r"^[A-Za-z0-9_-]{1,32}$"


class TeamMemberSpec(Model):
    role: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """A base role (``executor``); the team's members get ``executor@TEAM``."""
    count: int = Field(1, ge=1, le=64)


@message("team.up")
class TeamUp(Payload):
    """Start a team's members (recipient ``orchestrator``)."""

    name: str = Field(pattern=_TEAM_NAME)
    members: list[TeamMemberSpec] = Field(min_length=1, max_length=32)
    mode: Literal["tmux", "process"] = "tmux"
    tmux_socket: str = Field("", max_length=4096)
    """The tmux server: a ``-L`` name, a socket path, or "" for the user's default."""
    layout: Literal["main-vertical", "tiled", "windows"] = "main-vertical"
    """How the panes are arranged: the lead large on the left and the others beside it,
    all equal, or a window per member."""


@message("team.up.result")
class TeamUpReply(Payload):
    name: str
    mode: str
    members: list[str]
    session: str | None = None
    tmux_socket: str | None = None


@message("team.down")
class TeamDown(Payload):
    """Stop a team's members: each finishes its current message, or is killed after ``grace``."""

    name: str = Field(pattern=_TEAM_NAME)
    force: bool = False
    grace: float = Field(30.0, ge=0, le=3600)


@message("team.status")
class TeamStatusRequest(Payload):
    name: str | None = Field(None, pattern=_TEAM_NAME)
    """One team, or every team that is up."""


class TeamMemberStatus(Model):
    name: str
    role: str
    pane_id: str | None
    pid: int | None
    alive: bool
    state: str
    """starting, ready, restarting, stopping or stopped (the supervisor's)."""
    busy: bool
    restarts: int
    stalled: bool
    """It stopped heartbeating or made no progress while busy, and was restarted; it stays
    flagged until it sends something again (or is back with nothing to do)."""
    stalls: int
    task_id: str | None
    """The task of the message it holds (its current work), if any."""
    subtask: str | None
    phase: str | None
    """The phase of that task (planning, executing, evaluating, ...)."""
    last_heartbeat: str | None
    tokens: int
    cost_usd: float
    redeliver: list[str] = Field(default_factory=list)
    """Messages delivered to it and not acked yet (what a restarted instance gets again),
    e.g. ``exec.request 06H2RI9FAU/fix-add iteration 1``."""


class TeamInfo(Model):
    name: str
    mode: str
    session: str | None
    tmux_socket: str | None
    members: list[TeamMemberStatus]


@message("team.status.result")
class TeamStatusReply(Payload):
    teams: list[TeamInfo]


# --- batch refactors and ray ---


class BatchUnitRow(Model):
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
    status: Literal["accepted", "rejected", "failed", "lost", "conflict"]
    """``conflict``: accepted, but its patch could not be committed to the batch's branch."""
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
