"""Request and response bodies of the HTTP API (/api/v1).

The OpenAPI document is generated from these models (see ``routes``), so what
is documented is what is validated and sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TaskStatus = Literal["running", "accepted", "unaccepted", "failed", "cancelled"]


class _Request(BaseModel):
    """What a client sends: a misspelt or unknown field is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    """What the API answers, mostly built from named store queries' rows: a column a query
    gains later is left out of the answer instead of turning it into a 500."""

    model_config = ConfigDict(extra="ignore")


# Views of what the messages carry (shoal.messages): the API's schema is pydantic's, so
# the OpenAPI document describes it; the messages themselves are msgspec Structs.


class StepView(_Response):
    title: str
    detail: str = ""


class PlannedSubtaskView(_Response):
    id: str
    title: str
    detail: str = ""
    files: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)


class PlanView(_Response):
    steps: list[StepView]
    subtasks: list[PlannedSubtaskView] = Field(default_factory=list)


class SubtaskView(_Response):
    id: str
    title: str = ""
    status: Literal[
        "pending", "running", "accepted", "unaccepted", "failed", "cancelled", "conflict"
    ]
    score: float | None = None
    branch: str | None = None
    task_id: str | None = None
    """The child task that ran it."""
    detail: str = ""


class TestCountsView(_Response):
    passed: int = 0
    failed: int = 0
    errors: int = 0


class CheckView(_Response):
    name: str
    kind: str
    passed: bool
    status: Literal["passed", "failed", "could_not_run"] | None = None
    command: str = ""
    runner: str = ""
    counts: TestCountsView | None = None
    duration_s: float = 0.0
    reason: str = ""


class CheckRunView(CheckView):
    output: str = ""

    def report(self) -> CheckView:
        return CheckView.model_validate(self.model_dump(exclude={"output"}))


class ActorView(_Response):
    name: str
    role: str
    pid: int | None
    state: str
    restarts: int
    last_heartbeat: str | None
    launcher: str


class CountersView(_Response):
    routed: int
    recorded: int
    dropped: int
    undeliverable: int = 0
    redelivered: int = 0
    pending: int = 0
    unrecorded: int = 0
    """A client's polled reads (status, named queries, team status) and their answers:
    routed, not recorded."""


class TaskCreate(_Request):
    """A task to run, as ``shoal run`` would: unset options come from the orchestrator's
    configuration (environment, the project's ``.shoal/config.toml``, ``config.toml``)."""

    description: str = Field(min_length=1, max_length=100_000)
    """What to do, in plain words."""
    cwd: str = Field(min_length=1, max_length=4096)
    """Absolute path of the git repository to work in, on the orchestrator's machine."""
    iterations: int | None = Field(None, ge=1, le=50)
    """Most iterations (default 3)."""
    quality: float | None = Field(None, ge=0, le=1)
    """Score that accepts the result (default 0.8)."""
    model: str | None = Field(None, min_length=1, max_length=200)
    """litellm model for every role without its own (like ``-m``)."""
    budget_usd: float | None = Field(None, gt=0)
    budget_tokens: int | None = Field(None, gt=0)
    timeout: float | None = Field(None, gt=0)
    """Wall-clock budget of the whole task, in seconds."""
    permission_mode: Literal["default", "plan", "accept-edits", "bypass"] | None = None
    team: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    """Run on the members of this team."""
    check: list[str] | None = Field(None, max_length=20)
    """Commands that check the result instead of the detected tests (like ``--check``)."""
    no_checks: bool = False
    """Run none of the project's checks: the judge alone scores (like ``--no-checks``)."""

    @field_validator("cwd")
    @classmethod
    def _absolute(cls, cwd: str) -> str:
        if not cwd.startswith("/"):
            raise ValueError("must be an absolute path")
        return cwd

    def flags(self) -> dict[str, Any]:
        """The options as ``shoal run``'s flags (None: unset, the configuration decides)."""
        return self.model_dump(exclude={"description", "cwd", "team"})


class TaskCreated(_Response):
    id: str
    status: Literal["running"] = "running"
    url: str
    """Path of the task's resource."""
    ignored: list[str] = Field(default_factory=list)
    """Settings of the repository's unapproved ``.shoal/config.toml`` that were not applied
    (``shoal config approve`` trusts the file)."""
    waiting_for: str | None = None
    """The task changing the same work tree, which this one waits for (queued)."""


class TaskSummary(_Response):
    id: str
    status: TaskStatus
    decision: str | None
    """Why it stopped: quality, max_iterations, plateau, regression, budget_*, error, cancelled."""
    score: float | None
    iterations: int
    tokens: int
    cost_usd: float
    created_at: str
    description: str


class TaskList(_Response):
    tasks: list[TaskSummary]


class IterationView(_Response):
    n: int
    score: float | None
    judge_score: float | None
    dimensions: dict[str, float]
    checks: list[CheckRunView]
    summary: str | None
    tool_calls: int | None
    tokens: int
    cost_usd: float
    duration_s: float | None
    decision: str | None


class FindingView(_Response):
    iteration: int
    severity: str
    title: str
    detail: str | None
    fix: str | None


class CostRow(_Response):
    role: str
    model: str | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class TaskDetail(TaskSummary):
    cwd: str
    phase: str
    best_iteration: int | None
    plan: PlanView | None
    files_changed: list[str]
    summary: str | None
    finished_at: str | None
    iterations_detail: list[IterationView]
    findings: list[FindingView]
    parent: str | None = None
    """The task that started this one (a team run, or a delegating task)."""
    subtasks: list[SubtaskView] = Field(default_factory=list)
    """A team run's subtasks and how each ended."""
    cost_by_role: list[CostRow] = Field(default_factory=list)
    """Its model calls per role and model (planner, executor, evaluator, ...), the most
    expensive first."""
    checks: list[CheckView] = Field(default_factory=list)
    """The project's checks on the files the task left: its best iteration's (each with
    its runner, status passed, failed or could_not_run, counts and duration)."""

    @model_validator(mode="after")
    def _best_checks(self) -> TaskDetail:
        if not self.checks:
            best = [i for i in self.iterations_detail if i.n == self.best_iteration]
            self.checks = [c.report() for i in best for c in i.checks]
        return self


class TaskDiff(_Response):
    id: str
    iteration: int | None
    """The best iteration (while the task runs: the latest so far); None: none yet."""
    best: bool
    """Whether ``iteration`` is the task's best (the one whose files it left)."""
    diff: str
    """Unified diff from the work tree before the task to that iteration's snapshot."""
    truncated: bool = False
    """The diff was longer than 1 MiB and was cut there."""


class CancelAccepted(_Response):
    id: str
    status: Literal["cancelling"] = "cancelling"


class OrchestratorView(_Response):
    pid: int
    home: str
    started_at: float
    actors: list[ActorView]
    messages: CountersView


class TeamView(_Response):
    name: str
    members: list[ActorView]
    """Actors whose role is ``ROLE@TEAM``."""


class TeamMemberView(_Response):
    name: str
    """``ROLE@TEAM-N``."""
    role: str
    state: str
    """starting, ready, restarting, stopping or stopped."""
    busy: bool
    alive: bool
    restarts: int
    stalled: bool
    task_id: str | None
    """The task of the work it holds now, if any."""
    subtask: str | None
    """That work's team-run subtask, if it is one."""
    phase: str | None
    last_heartbeat: str | None
    tokens: int
    cost_usd: float
    steerable: bool
    """Whether it reads steering lines (executors, agent members included)."""


class TeamDetailView(_Response):
    name: str
    mode: str
    """tmux or process."""
    session: str | None
    members: list[TeamMemberView]


class TeamList(_Response):
    teams: list[TeamDetailView]


class MemberTranscript(_Response):
    team: str
    member: str
    text: str
    """The member's recent lines, oldest first, as its pane shows them (plain text): the
    work it was given, its tool calls, what the model said, steering lines, its replies."""
    truncated: bool = False
    """Older lines were left out (at most 64 KiB of text, 500 messages)."""


class SteerCreate(_Request):
    text: str = Field(min_length=1, max_length=20_000)
    """The line, as typed into the member's pane: it reaches the member's next model turn."""


class SteerSent(_Response):
    team: str
    member: str
    status: Literal["sent"] = "sent"


class ApiView(_Response):
    url: str
    auth: bool
    webhooks: int


class StatusView(_Response):
    orchestrator: OrchestratorView
    running: list[TaskSummary]
    teams: list[TeamView]
    api: ApiView


class CostView(_Response):
    total_usd: float
    total_tokens: int
    calls: int
    by_role: list[CostRow]
    """Per role and model, the most expensive first."""


class LearningView(_Response):
    id: str
    kind: str
    content: str
    confidence: float
    """As stored (reinforcement raises it)."""
    score: float
    """The confidence decayed to now (by half every 30 days unused): what recall weighs."""
    uses: int
    source_task: str | None
    created_at: str
    last_used_at: str


class LearningList(_Response):
    learnings: list[LearningView]
    """Most recently used first."""


class ProposalView(_Response):
    name: str
    description: str


class ProposalList(_Response):
    proposals: list[ProposalView]


class ProposalDecided(_Response):
    name: str
    decision: Literal["approved", "dismissed"]
    path: str
    """Where its SKILL.md folder is now (approved: ``$SHOAL_HOME/skills/NAME``)."""


class LearningsQuery(_Request):
    limit: int = Field(50, ge=1, le=1000)


class Health(_Response):
    status: Literal["ok"] = "ok"
    version: str
    pid: int


class ErrorDetail(_Response):
    code: str
    """bad_request, unauthorized, not_found, method_not_allowed, conflict, too_large,
    invalid, unavailable, internal."""
    message: str
    """One line saying what was wrong."""


class ErrorBody(_Response):
    error: ErrorDetail


class TaskListQuery(_Request):
    limit: int = Field(20, ge=1, le=1000)
    status: TaskStatus | None = None


class EventsQuery(_Request):
    task: str | None = Field(None, pattern=r"^[0-9A-Za-z]{1,64}$")
    """Only this task's events (its id, or a prefix of it)."""
    team: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Only the events of this team's members, or about them."""


def row_dicts(columns: list[str], rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


# --- the message flow, batches and costs over time (the dashboard's views) -------------


class FlowQuery(_Request):
    minutes: int = Field(10, ge=1, le=10)
    """How far back (the orchestrator keeps the last ten minutes)."""


class FlowEdgeView(_Response):
    sender: str
    """An actor, ``orchestrator``, or a kind of client (``client``, ``aclient``, ``chat``: the
    names of one process each are counted together), or the API's own (``api-PID``)."""
    recipient: str
    """The actor that got it (work sent to a role: the one the broker picked),
    ``orchestrator``, or ``*`` for an event published on the bus."""
    kind: str
    count: int
    last_at: float | None = None
    """Unix time of the last second it was counted in."""


class FlowView(_Response):
    since: float
    """Unix time the counts start at (later than asked after an orchestrator restart)."""
    edges: list[FlowEdgeView]
    """Most messages first. Live: the ``flow.summary`` events of ``/events`` (at most one a
    second while messages flow) carry the same counts for about the last second."""


class BatchListQuery(_Request):
    limit: int = Field(20, ge=1, le=1000)
    status: Literal["running", "interrupted", "done"] | None = None


class BatchSummary(_Response):
    id: str
    status: Literal["running", "interrupted", "done"]
    units: int
    backend: str
    """ray or local."""
    instruction: str
    created_at: str
    finished_at: str | None
    finished: int
    """Units with an outcome (accepted or not)."""
    accepted: int
    not_accepted: int
    """Rejected, failed, lost or in conflict."""
    tokens: int
    cost_usd: float


class BatchList(_Response):
    batches: list[BatchSummary]
    """Newest first."""


class BatchUnitView(_Response):
    unit_id: str
    name: str
    """The file, directory or repository it is about."""
    source: str
    status: Literal["pending", "running", "accepted", "rejected", "failed", "lost", "conflict"]
    """``running``: handed to a worker and not ended yet (in a batch that runs)."""
    attempts: int
    score: float | None
    verify_passed: bool | None
    files_changed: list[str]
    tokens: int
    cost_usd: float
    duration_s: float | None
    summary: str | None
    error: str | None
    worker: str | None
    finished_at: str | None


class BatchDetail(BatchSummary):
    updated_at: str
    applied: dict[str, str]
    """Repository -> the branch its accepted patches were committed to."""
    units_detail: list[BatchUnitView]
    """By name."""


class CostSeriesQuery(_Request):
    bucket: Literal["minute", "hour", "day"] = "hour"
    by: Literal["role", "model"] = "role"
    last: int = Field(24, ge=1, le=1000)
    """How many buckets, the current one included."""


class CostPoint(_Response):
    t: str
    """The bucket's start, UTC (ISO 8601)."""
    key: str
    """The role or the model."""
    calls: int
    tokens: int
    cost_usd: float


class CostSeries(_Response):
    bucket: Literal["minute", "hour", "day"]
    by: Literal["role", "model"]
    since: str
    """The first bucket's start, UTC (ISO 8601)."""
    keys: list[str]
    """Every role or model in the points, the most expensive first."""
    points: list[CostPoint]
    """Buckets with model calls only, oldest first. Live: each ``usage.recorded`` event of
    ``/events`` is one more record to add."""
    total_usd: float
    total_tokens: int
