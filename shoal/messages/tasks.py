"""Messages of a task's loop: submit, plan, execute, evaluate, restore, done; and what
they carry."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shoal.messages.base import Model, Payload, message

__all__ = [
    "AgentSpec",
    "BudgetWarning",
    "CheckOutcome",
    "CheckReport",
    "CheckSetting",
    "EvalChecks",
    "EvalRequest",
    "EvalResult",
    "Evaluation",
    "ExecEvent",
    "ExecRequest",
    "ExecResult",
    "Finding",
    "ModelChoice",
    "PermissionModeName",
    "PermissionRule",
    "Plan",
    "PlanRequest",
    "PlanResult",
    "ReviewRequest",
    "ReviewResult",
    "Step",
    "Subtask",
    "SubtaskOutcome",
    "TaskCancel",
    "TaskDone",
    "TaskOptions",
    "TaskProgress",
    "TaskSubmit",
    "TaskSubmitResult",
    "TestCounts",
    "TestsState",
    "Usage",
    "UsageRecorded",
    "WorkspaceRestore",
    "WorkspaceRestoreResult",
]


class Step(Model, kw_only=True):
    title: str
    detail: str = ""


class Subtask(Model, kw_only=True):
    id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    title: str
    detail: str = ""
    files: list[str] = msgspec.field(default_factory=list)
    """Files this subtask owns (team runs give each subtask its own worktree)."""
    depends_on: list[str] = msgspec.field(default_factory=list)


class Plan(Model, kw_only=True):
    """What the planner submits through its ``submit_plan`` tool call."""

    steps: Annotated[list[Step], Meta(min_length=1)]
    subtasks: list[Subtask] = msgspec.field(default_factory=list)


class Finding(Model, kw_only=True):
    severity: Literal["blocker", "important", "minor"]
    title: str
    detail: str = ""
    fix: str = ""
    file: str | None = None
    """The file the finding is about, relative to the repository's root, if it is about one."""
    line: Annotated[int, Meta(ge=1)] | None = None
    """The line of ``file`` it is about (in the changed version), if one."""

    @property
    def where(self) -> str:
        """``file:line``, ``file``, or "" for a finding about no file."""
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file


class Usage(Model, kw_only=True):
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


class ModelChoice(Model, kw_only=True):
    """A role's model as the task asked for it (keys never travel: actors read their env)."""

    model: str
    base_url: str | None = None


class PermissionRule(Model, kw_only=True):
    """One allow/deny/ask rule as it travels (checked by ``shoal.tools.permissions.Rule``)."""

    action: Literal["allow", "deny", "ask"]
    tool: str
    pattern: str | None = None


class CheckSetting(Model, kw_only=True):
    """A check the user named (``[checks]`` in config.toml, or ``--check``): it replaces
    the detected checks of its kind."""

    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    kind: Literal["test", "lint"] = "test"
    command: Annotated[str, Meta(min_length=1)]
    """Run by /bin/sh in the repository, with the project's venv and node_modules/.bin on PATH."""
    timeout: Annotated[float, Meta(gt=0)] | None = None
    """Seconds it may run (default 600); then it is killed and reported could_not_run."""


TestsState = Literal["passed", "failed", "could_not_run", "none_found", "off"]
"""What an evaluation's tests came to; ``none_found``: the judge alone decided."""


class AgentSpec(Model, kw_only=True):
    """An agent definition as it travels (``shoal.skills.agents`` loads it from Markdown)."""

    name: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    prompt: str = ""
    """The definition's body: added to the executor's system prompt."""
    tools: list[str] | None = None
    """The only tools it may use (shoal's names; ``server__*`` for an MCP server's);
    None: every tool the run has."""
    model: str | None = None
    """A litellm model for its executor role; None: the task's."""
    permission_mode: PermissionModeName | None = None
    """Narrows the task's permission mode (never widens it)."""


class TaskOptions(Model, kw_only=True):
    iterations: Annotated[int, Meta(ge=1, le=50)] = 3
    quality: Annotated[float, Meta(ge=0, le=1)] = 0.8
    budget_usd: Annotated[float, Meta(gt=0)] | None = None
    budget_tokens: Annotated[int, Meta(gt=0)] | None = None
    timeout: Annotated[float, Meta(gt=0)] | None = None
    """Wall-clock budget of the whole task, in seconds."""
    plateau: Annotated[float, Meta(ge=0)] = 0.02
    """A refinement that improves the score by less than this stops the loop."""
    permission_mode: PermissionModeName = "accept-edits"
    permission_rules: list[PermissionRule] = msgspec.field(default_factory=list)
    """Allow, deny and ask rules from config and flags; deny wins."""
    models: dict[str, ModelChoice] = msgspec.field(default_factory=dict)
    """Per role (planner, executor, evaluator, small): the model to use."""
    team: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")] | None = None
    """Run on this team's members (``executor@TEAM``…) where it has them."""
    team_size: Annotated[int, Meta(ge=1, le=32)] | None = None
    """A team run: the plan's subtasks run on this many executors at once, each in its
    own git worktree, and are merged before the final evaluation."""
    keep_worktrees: bool = False
    """Keep a team run's worktrees and branches afterwards (they are removed by default)."""
    replay_of: Annotated[str, Meta(max_length=64)] | None = None
    """The recorded task this one replays (``shoal replay``) in a worktree of its base."""
    learn: bool = True
    """False: the learner, skill effectiveness and pattern mining leave this task out
    (replays, unless ``shoal replay --learn``)."""
    evaluate: bool = True
    """False for a delegated subagent: one execution, no evaluation or refinement."""
    skip_checks: list[str] = msgspec.field(default_factory=list)
    """Project checks to leave out of the score: a team run's subtasks are not judged by
    checks that already failed before the run (the merged result is)."""
    checks: list[CheckSetting] = msgspec.field(default_factory=list)
    """Checks from ``[checks]`` or ``--check``; empty: the detected ones."""
    run_checks: bool = True
    """False (``--no-checks``): the judge alone scores, and the result says checks were off."""
    virtual_env: str | None = None
    """``VIRTUAL_ENV`` of the shell that submitted the task: the project's environment when
    it lies inside the repository."""
    agent: AgentSpec | None = None
    """The agent definition the executor acts as (``--agent``, ``delegate(agent=...)``)."""


@message("task.submit")
class TaskSubmit(Payload, kw_only=True):
    description: Annotated[str, Meta(min_length=1)]
    cwd: str
    options: TaskOptions = msgspec.field(default_factory=TaskOptions)
    plan: Plan | None = None
    """A plan to follow instead of asking the planner (subtasks of a team run, subagents)."""
    parent: str | None = None
    """The task that started this one (a team run's subtask, a delegated subagent)."""
    subtask: str | None = None
    """The id of the team run's subtask this task carries out."""
    fresh_at: str | None = None
    """The commit ``cwd`` is a fresh checkout of, untouched since (a team run's new
    worktree): the task's first snapshot is that commit, taken without reading the files
    (six git processes at each subtask's start, while the others start too)."""


@message("task.submit.result")
class TaskSubmitResult(Payload, kw_only=True):
    task_id: str
    waiting_for: str | None = None
    """The task changing the same work tree, which this one waits for (queued)."""


@message("task.cancel")
class TaskCancel(Payload, kw_only=True):
    task_id: str


@message("task.progress")
class TaskProgress(Payload, kw_only=True):
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
class TaskDone(Payload, kw_only=True):
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
    subtasks: list[SubtaskOutcome] = msgspec.field(default_factory=list)
    """A team run's subtasks and how each ended."""
    parent: str | None = None
    best_iteration: int | None = None
    """The iteration whose files the task left (its snapshot: refs/shoal/<task>/<n>)."""
    conflicts: list[str] = msgspec.field(default_factory=list)
    """Files someone else changed while the task ran, in a way that does not merge with the
    task's change: theirs were kept, the task's version is in its best snapshot."""
    checks: list[CheckReport] = msgspec.field(default_factory=list)
    """The project's checks on the files the task left (its best iteration)."""
    tests: TestsState | None = None
    """What its tests came to; None: never evaluated."""


@message("plan.request")
class PlanRequest(Payload, kw_only=True):
    description: str
    cwd: str
    model: ModelChoice
    team_size: int | None = None
    """Plan for a team run: split the work into subtasks this many executors can share."""


@message("plan.result")
class PlanResult(Payload, kw_only=True):
    plan: Plan
    usage: Usage


@message("exec.request")
class ExecRequest(Payload, kw_only=True):
    description: str
    cwd: str
    iteration: int
    plan: Plan
    findings: list[Finding] = msgspec.field(default_factory=list)
    """The previous iteration's findings: this iteration's instructions."""
    model: ModelChoice
    permission_mode: str = "accept-edits"
    permission_rules: list[PermissionRule] = msgspec.field(default_factory=list)
    max_turns: Annotated[int, Meta(ge=1)] = 60
    token_budget: int | None = None
    team: str | None = None
    """The team the task runs for: enables the team tools (messages, team memory)."""
    parent: str | None = None
    """The team run (or delegating task) this task belongs to: its task list and notes."""
    subagent: bool = False
    """A delegated subagent: it may not delegate in turn."""
    subtask: str | None = None
    """The team run's subtask id (shown by ``shoal team status``)."""
    agent: AgentSpec | None = None
    """The agent definition to act as: its prompt, and only its tools."""
    fresh_at: str | None = None
    """Iteration 1 of a task whose work tree is a fresh checkout of this commit
    (``TaskSubmit.fresh_at``): its snapshot before the first iteration."""


@message("exec.event")
class ExecEvent(Payload, kw_only=True):
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
class ExecResult(Payload, kw_only=True):
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
class EvalRequest(Payload, kw_only=True):
    description: str
    cwd: str
    iteration: int
    plan: Plan
    base: str
    snapshot: str
    model: ModelChoice
    rubric: str | None = None
    skip_checks: list[str] = msgspec.field(default_factory=list)
    checks: list[CheckSetting] = msgspec.field(default_factory=list)
    run_checks: bool = True
    virtual_env: str | None = None
    subtask: str | None = None
    """The team run's subtask judged (named in the evaluator's pane)."""


class TestCounts(Model, kw_only=True):
    passed: int = 0
    failed: int = 0
    errors: int = 0


class CheckReport(Model, kw_only=True):
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


class CheckOutcome(CheckReport, kw_only=True):
    """A check's report with (the tail of) its output: what the judge reads and the records
    keep."""

    output: str = ""

    def report(self) -> CheckReport:
        """The same check without its output (for results and progress views)."""
        return CheckReport(**{name: getattr(self, name) for name in CheckReport.__struct_fields__})


@message("eval.checks")
class EvalChecks(Payload, kw_only=True):
    """Published once an evaluation's checks ran, before the judge: for progress views."""

    iteration: int
    checks: list[CheckReport] = msgspec.field(default_factory=list)
    tests: TestsState


class Evaluation(Model, kw_only=True):
    """What the judge submits through its ``submit_evaluation`` tool call."""

    score: Annotated[float, Meta(ge=0, le=1)]
    dimensions: dict[str, float] = msgspec.field(default_factory=dict)
    findings: list[Finding] = msgspec.field(default_factory=list)


@message("eval.result")
class EvalResult(Payload, kw_only=True):
    iteration: int
    score: float
    """The composite: tests, lint and judge weighed together."""
    judge: Evaluation
    checks: list[CheckOutcome] = msgspec.field(default_factory=list)
    usage: Usage
    tests: TestsState | None = None
    """None from an evaluator that predates it."""


@message("workspace.restore")
class WorkspaceRestore(Payload, kw_only=True):
    """Leave the workspace with the task's files of ``snapshot`` (the best iteration),
    from the state its last snapshot left them in, three-way."""

    cwd: str
    base: str
    snapshot: str
    subtask: str | None = None
    """The team run's subtask whose files these are (named in the executor's pane)."""


@message("workspace.restore.result")
class WorkspaceRestoreResult(Payload, kw_only=True):
    files_changed: list[str]
    """Files that differ between the task's start and its best snapshot."""
    kept: list[str] = msgspec.field(default_factory=list)
    """Files someone else changed meanwhile that could not take the snapshot's change."""


class SubtaskOutcome(Model, kw_only=True):
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


@message("budget.warning")
class BudgetWarning(Payload, kw_only=True):
    """Published once per budget when a task has used ``fraction`` of it (webhooks, live views)."""

    task_id: str
    budget: Literal["tokens", "usd", "time"]
    used: float
    limit: float
    fraction: float


@message("review.request")
class ReviewRequest(Payload, kw_only=True):
    """For an evaluator: the checks and the judge on a diff, changing nothing (``shoal review``)."""

    cwd: str
    """The repository."""
    base: str
    """The state before the change: a commit or tree id."""
    head: str
    """The state after it: a commit or tree id."""
    description: str
    """What is reviewed, in words (the judge's task)."""
    commits: list[str] = msgspec.field(default_factory=list)
    """``short-sha subject`` of the commits reviewed, if a range of them."""
    model: ModelChoice
    rubric: str | None = None
    """An evaluator skill by name (``security``); None: chosen by category, as in the loop."""
    checkout: str | None = None
    """A commit holding ``head`` to check out (detached, outside the repository) for the
    checks, when the work tree is not ``head``; None: the checks run in ``cwd``."""
    checks: list[CheckSetting] = msgspec.field(default_factory=list)
    run_checks: bool = True
    virtual_env: str | None = None
    message_model: ModelChoice | None = None
    """Also propose a commit message for the change, with this model (``commit-check``)."""


@message("review.result")
class ReviewResult(Payload, kw_only=True):
    score: float
    """The composite, as the loop scores an iteration."""
    judge: Evaluation
    rubric: str
    """The evaluator skill the judge used."""
    checks: list[CheckOutcome] = msgspec.field(default_factory=list)
    tests: TestsState | None = None
    files: list[str] = msgspec.field(default_factory=list)
    """The files the change touches."""
    usage: Usage = msgspec.field(default_factory=Usage)
    message: str = ""
    """The proposed commit message (when one was asked for)."""


@message("usage.recorded")
class UsageRecorded(Payload, kw_only=True):
    """Published when what model calls cost is recorded (a ``usage_events`` row): a task's
    step, or a chat turn (live cost views)."""

    at: float
    """Unix time it was recorded at."""
    task_id: str | None = None
    """None for a chat turn."""
    role: str
    model: str | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
