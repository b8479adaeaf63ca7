"""Messages of teams: team runs and their subtasks, members, task lists, messages between
members."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shoal.messages.base import Model, Payload, message
from shoal.messages.tasks import AgentSpec, Plan, Subtask, SubtaskOutcome, TaskOptions, Usage

__all__ = [
    "TEAM_TASK_DONE",
    "TeamAnswer",
    "TeamAsk",
    "TeamDown",
    "TeamInfo",
    "TeamMemberSpec",
    "TeamMemberStatus",
    "TeamMessage",
    "TeamPrepare",
    "TeamProgress",
    "TeamRun",
    "TeamRunResult",
    "TeamStatus",
    "TeamStatusResult",
    "TeamTaskClaim",
    "TeamTaskClaimResult",
    "TeamTaskUpdate",
    "TeamTasksCreate",
    "TeamUp",
    "TeamUpResult",
]


@message("team.message")
class TeamMessage(Payload, kw_only=True):
    """Text for an agent from a person (typed into its pane), a teammate or the lead.

    It reaches the agent's conversation on its next turn.
    """

    text: Annotated[str, Meta(min_length=1, max_length=20_000)]
    sender: Annotated[str, Meta(min_length=1, max_length=128)]
    source: Literal["person", "teammate", "lead", "subagent"] = "teammate"
    subtask: str | None = None
    """The team run's subtask the sender works on (shown with the message)."""


@message("team.prepare")
class TeamPrepare(Payload, kw_only=True):
    """For the lead, while the plan is made: snapshot the base of a team run and find the
    project checks that already fail on it (the run's first steps, off its critical path)."""

    task_id: str
    cwd: str


@message("team.run")
class TeamRun(Payload, kw_only=True):
    """For the lead: run a plan's subtasks in parallel worktrees and merge them."""

    task_id: str
    description: str
    cwd: str
    plan: Plan
    options: TaskOptions


@message("team.run.result")
class TeamRunResult(Payload, kw_only=True):
    subtasks: list[SubtaskOutcome]
    base: str
    """Snapshot of the work tree before the run."""
    snapshot: str
    """Snapshot of the merged result, now in the work tree."""
    usage: Usage = msgspec.field(default_factory=Usage)
    summary: str = ""
    error: str | None = None
    kept: list[str] = msgspec.field(default_factory=list)
    """Files someone else changed in the work tree during the run that could not take the
    merged result's change (left as they were)."""


TEAM_TASK_DONE = ("accepted", "unaccepted", "done")
"""Statuses of a team task that unblock the tasks depending on it."""


@message("team.tasks.create")
class TeamTasksCreate(Payload, kw_only=True):
    """Create (or replace) a team task list: a team run's subtasks, or a team's backlog."""

    list_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    tasks: Annotated[list[Subtask], Meta(min_length=1, max_length=500)]
    owner: str | None = None


@message("team.task.update")
class TeamTaskUpdate(Payload, kw_only=True):
    list_id: str
    id: str
    status: str
    task_id: str | None = None
    score: float | None = None
    branch: str | None = None
    detail: str = ""


@message("team.task.claim")
class TeamTaskClaim(Payload, kw_only=True):
    """Claim a task for ``owner``: exactly one of concurrent claims wins."""

    list_id: str
    id: str
    owner: Annotated[str, Meta(min_length=1, max_length=128)]


@message("team.task.claim.result")
class TeamTaskClaimResult(Payload, kw_only=True):
    won: bool
    reason: str = ""
    """Why the claim lost: taken by whom, blocked by what, or no such task."""


_TEAM_NAME = r"^[A-Za-z0-9_-]{1,32}$"


class TeamMemberSpec(Model, kw_only=True):
    role: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    """A base role (``executor``); the team's members get ``executor@TEAM``."""
    count: Annotated[int, Meta(ge=1, le=64)] = 1
    agent: AgentSpec | None = None
    """An executor acting as this agent definition (``reviewer@agent`` in ``--members``):
    its members get the role ``executor.NAME@TEAM``."""


@message("team.up")
class TeamUp(Payload, kw_only=True):
    """Start a team's members (recipient ``orchestrator``)."""

    name: Annotated[str, Meta(pattern=_TEAM_NAME)]
    members: Annotated[list[TeamMemberSpec], Meta(min_length=1, max_length=32)]
    mode: Literal["tmux", "process"] = "tmux"
    tmux_socket: Annotated[str, Meta(max_length=4096)] = ""
    """The tmux server: a ``-L`` name, a socket path, or "" for the user's default."""
    layout: Literal["main-vertical", "tiled", "windows"] = "main-vertical"
    """How the panes are arranged: the lead large on the left and the others beside it,
    all equal, or a window per member."""


@message("team.up.result")
class TeamUpResult(Payload, kw_only=True):
    name: str
    mode: str
    members: list[str]
    session: str | None = None
    tmux_socket: str | None = None


@message("team.down")
class TeamDown(Payload, kw_only=True):
    """Stop a team's members: each finishes its current message, or is killed after ``grace``."""

    name: Annotated[str, Meta(pattern=_TEAM_NAME)]
    force: bool = False
    grace: Annotated[float, Meta(ge=0, le=3600)] = 30.0


@message("team.status", polled=True)
class TeamStatus(Payload, kw_only=True):
    name: Annotated[str, Meta(pattern=_TEAM_NAME)] | None = None
    """One team, or every team that is up."""


class TeamMemberStatus(Model, kw_only=True):
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
    redeliver: list[str] = msgspec.field(default_factory=list)
    """Messages delivered to it and not acked yet (what a restarted instance gets again),
    e.g. ``exec.request 06H2RI9FAU/fix-add iteration 1``."""


class TeamInfo(Model, kw_only=True):
    name: str
    mode: str
    session: str | None
    tmux_socket: str | None
    members: list[TeamMemberStatus]
    started_at: str | None = None
    """ISO time (UTC) a second before its first present member started: what is recorded
    about this team since then is this run's (an earlier team of the same name is not)."""


@message("team.status.result", polled=True)
class TeamStatusResult(Payload, kw_only=True):
    teams: list[TeamInfo]


@message("team.ask")
class TeamAsk(Payload, kw_only=True):
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
class TeamAnswer(Payload, kw_only=True):
    """A person's answer to a ``team.ask``: to the member from the lead's pane, or to the
    lead when it was answered in the member's own pane (the lead's pane stops asking)."""

    ask_id: str
    allow: bool
    always: bool = False
    """Allow this tool without asking again for the rest of the task."""
    by: str = ""
    """How it was settled, e.g. ``in lead@red-1's pane``, ``(no answer in time)``."""


@message("team.progress")
class TeamProgress(Payload, kw_only=True):
    """Published with a team run's id: its milestones, for the lead's pane and the
    progress of ``shoal team run``."""

    event: Literal["plan", "start", "refused", "result", "merge", "conflict", "resolve", "message"]
    subtask: str | None = None
    member: str | None = None
    """Who: the executor that took the subtask, or the sender of a message to the lead."""
    text: str = ""
    score: float | None = None
