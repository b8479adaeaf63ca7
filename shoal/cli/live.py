"""``shoal status --live``: running tasks and teams, as they change, from the event bus.

The view is seeded once (the orchestrator's actors, the running tasks' rows),
then fed by events: ``task.progress`` (phase, iteration, score, tokens, cost),
``exec.event`` (tool calls), ``budget.warning``, ``task.done``, and ``actor.*``
(teams coming and going). Teams' members, each busy or idle with its subtask, are
asked of the orchestrator (``team.status``) about once a second while a team is up.
On a terminal it is a rich Live view that fits its width (at 80 columns the
description goes first, never a task's phase or numbers); without one (a pipe, a
log) it prints one plain line per change instead. Ctrl-C ends it.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

    from shoal.mailbox.envelope import Envelope
    from shoal.messages.teams import TeamMemberStatus
    from shoal.paths import Home

TOPICS = ["task.progress", "exec.event", "task.done", "budget.warning", "actor."]
_KEEP_DONE = 5  # finished tasks kept on screen, newest first
_PID_CHECK = 2.0  # seconds between checks that the orchestrator is still the same one
_MEMBERS_CHECK = 1.0  # seconds between asks for the teams' members, while a team is up
_NARROW = 120  # columns below which a task shows a short id and no description


@dataclass
class TaskLine:
    id: str
    description: str = ""
    phase: str = "-"
    iteration: int = 0
    score: float | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    status: str = "running"
    tools: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    warnings: list[str] = field(default_factory=list)


@dataclass
class LiveState:
    """What the view shows; changed only by :meth:`seed` and :meth:`apply`."""

    pid: int | None = None
    tasks: dict[str, TaskLine] = field(default_factory=dict)
    done: deque[TaskLine] = field(default_factory=lambda: deque(maxlen=_KEEP_DONE))
    actors: dict[str, str] = field(default_factory=dict)  # name -> role
    members: dict[str, list[TeamMemberStatus]] = field(default_factory=dict)
    """Each team's members as the orchestrator last told (busy or idle, their subtask)."""

    @property
    def teams(self) -> dict[str, list[str]]:
        teams: dict[str, list[str]] = {}
        for name, role in sorted(self.actors.items()):
            if "@" in role:
                teams.setdefault(role.split("@", 1)[1], []).append(name)
        return teams

    def set_members(self, teams: dict[str, list[TeamMemberStatus]]) -> list[str]:
        """Take the members in; a plain line for each member whose doing changed."""
        before = {m.name: doing(m) for ms in self.members.values() for m in ms}
        self.members = teams
        return [
            f"member {m.name} {doing(m)}"
            for ms in teams.values()
            for m in ms
            if before.get(m.name) != doing(m)
        ]

    def apply(self, env: Envelope) -> str | None:
        """Take one event in; a plain line describing the change, or None if nothing did."""
        p = env.payload
        if env.kind.startswith("actor."):
            if env.kind == "actor.started":
                self.actors[p["name"]] = p["role"]
            else:
                self.actors.pop(p["name"], None)
            if "@" not in p["role"]:
                return None
            return f"{env.kind.split('.')[1]} {p['name']} ({p['role']})"
        if not env.task_id:
            return None
        task = self.tasks.get(env.task_id)
        if task is None:
            if env.kind == "task.done" or any(t.id == env.task_id for t in self.done):
                return None  # a task we never saw running, or the last event of a finished one
            task = self.tasks[env.task_id] = TaskLine(env.task_id)
        if env.kind == "task.progress":
            task.phase, task.iteration = p["phase"], p["iteration"]
            task.score = p["score"] if p.get("score") is not None else task.score
            task.tokens, task.cost_usd = p["tokens"], p["cost_usd"]
            score = "" if task.score is None else f" · score {task.score:.2f}"
            return (
                f"{task.id} {task.phase} iteration {task.iteration}{score} · "
                f"{task.tokens} tokens · ${task.cost_usd:.4f}"
            )
        if env.kind == "exec.event" and p.get("type") == "tool_call":
            mark = "" if p.get("ok", True) else " ✗"
            task.tools.append(f"{p['name']} {p.get('detail', '')[:50]}{mark}")
            return f"{task.id}   {task.tools[-1]}"
        if env.kind == "budget.warning":
            task.warnings.append(f"{p['budget']} {p['fraction']:.0%}")
            return f"{task.id} budget warning: {p['fraction']:.0%} of its {p['budget']} budget"
        if env.kind == "task.done":
            task.status, task.phase = p["status"], "done"
            task.score, task.tokens, task.cost_usd = p["score"], p["tokens"], p["cost_usd"]
            self.done.appendleft(self.tasks.pop(task.id))
            score = "-" if task.score is None else f"{task.score:.2f}"
            return f"{task.id} done: {task.status} ({p['decision']}), score {score}"
        return None


def doing(m: TeamMemberStatus) -> str:
    """A member in a few words: ``busy 06H2RI9FAU/fix-add executing``, ``idle``."""
    state = ("busy" if m.busy else "idle") if m.state == "ready" else m.state
    state += " STALLED" if m.stalled else ""
    if m.task_id and m.busy:
        state += f" {m.task_id[:10]}" + (f"/{m.subtask}" if m.subtask else "")
        state += f" {m.phase}" if m.phase else ""
    return state


class LiveStatus:
    """Seeds the state from the orchestrator, then follows the bus."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.state = LiveState()

    def seed(self) -> None:
        from shoal import daemon
        from shoal.client import Client

        self.state = LiveState(pid=daemon.running_pid(self.home))
        if self.state.pid is None:
            return
        status = Client(self.home).status()
        self.state.actors = {a.name: a.role for a in status.actors if a.state != "stopped"}
        for row in self._rows("tasks.recent", {"limit": 50, "kind": "running"}):
            task = TaskLine(
                row["id"],
                description=row["description"],
                iteration=row["iterations"],
                score=row["score"],
                tokens=row["tokens"],
                cost_usd=row["cost_usd"],
            )
            found = self._rows("task.get", {"task_id": row["id"]})
            task.phase = found[0]["phase"] if found else "-"
            self.state.tasks[task.id] = task
        self.members()

    def members(self) -> list[str]:
        """Ask for the teams' members (when a team is up); the lines of what changed."""
        from shoal import daemon
        from shoal.client import Client, ClientError
        from shoal.mailbox.errors import MailboxError
        from shoal.messages.teams import TeamStatus, TeamStatusResult

        if not self.state.teams and not self.state.members:
            return []
        try:
            reply = Client(self.home).request(TeamStatus(), timeout=5.0)
        except (MailboxError, ClientError, daemon.OrchestratorError, OSError):
            return []  # the orchestrator is going; the pid check notices
        if not isinstance(reply, TeamStatusResult):
            return []
        return self.state.set_members({t.name: t.members for t in reply.teams})

    def describe(self, task: TaskLine) -> None:
        """Fill in a new task's description (its row may be a flush behind its first event)."""
        if task.description:
            return
        found = self._rows("task.get", {"task_id": task.id})
        if found:
            task.description = found[0]["description"]

    def _rows(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        from shoal.client import query as read
        from shoal.store.queries import QueryError

        try:
            reply = read(self.home, name, params)
        except QueryError:
            return []
        return [dict(zip(reply.columns, row, strict=True)) for row in reply.rows]

    def follow(self, on_change: Any, on_idle: Any) -> None:
        """Call ``on_change(line)`` per change and ``on_idle()`` about once a second."""
        from shoal import daemon
        from shoal.client import Client

        with Client(self.home).channel(TOPICS) as bus:
            self.seed()  # after subscribing: nothing between the seed and the first event is lost
            on_change(None)
            next_check = time.monotonic() + _PID_CHECK
            next_members = time.monotonic() + _MEMBERS_CHECK
            while True:
                env = bus.event(timeout=1.0)
                if env is not None:
                    line = self.state.apply(env)
                    if env.task_id in self.state.tasks:
                        self.describe(self.state.tasks[env.task_id])
                    if line is not None:
                        on_change(line)
                else:
                    on_idle()
                if time.monotonic() > next_members:
                    next_members = time.monotonic() + _MEMBERS_CHECK
                    for line in self.members():
                        on_change(line)
                if time.monotonic() > next_check:
                    next_check = time.monotonic() + _PID_CHECK
                    if daemon.running_pid(self.home) != self.state.pid:
                        self.seed()  # the orchestrator stopped or another one started
                        on_change("orchestrator " + _orchestrator(self.state))


def _orchestrator(state: LiveState) -> str:
    return "not running" if state.pid is None else f"pid {state.pid}"


def render(state: LiveState, width: int = 200) -> RenderableType:
    """The view for a terminal ``width`` columns wide: what does not fit goes first (the
    description, then the last tool calls), never a task's phase, score or costs."""
    from rich.console import Group
    from rich.text import Text

    head = Text.assemble(
        ("shoal ", "bold"),
        f"· orchestrator {_orchestrator(state)} · {len(state.tasks)} running · ",
        time.strftime("%H:%M:%S"),
        ("  (Ctrl-C to leave)", "dim"),
    )
    tasks = _tasks_table(state, width) if state.tasks or state.done else "no running tasks"
    parts: list[RenderableType] = [head, tasks]
    for team, names in state.teams.items():
        parts.append(_team_lines(team, names, state))
    return Group(*parts)


def _tasks_table(state: LiveState, width: int) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    narrow = width < _NARROW
    table = Table(box=None, pad_edge=False, expand=False)
    table.add_column("task", no_wrap=True)
    for column in ("phase", "iteration", "score", "tokens", "cost"):
        table.add_column(
            column, no_wrap=True, min_width=len(column) if column != "iteration" else 4
        )
    # Whatever room is left, cut: a long description or tool call never squeezes the numbers.
    room = max(10, width - (10 if narrow else 26) - 50)
    table.add_column("description · last tool calls", no_wrap=True, max_width=min(72, room))
    for task in [*state.tasks.values(), *state.done]:
        running = task.status == "running"
        warn = f" ⚠ {', '.join(task.warnings)}" if task.warnings else ""
        table.add_row(
            task.id[:10] if narrow else task.id,
            task.phase if running else task.status,
            str(task.iteration),
            "-" if task.score is None else f"{task.score:.2f}",
            f"{task.tokens:,}",
            f"${task.cost_usd:.4f}",
            Text(task.description[:60], overflow="ellipsis") + Text(warn, style="yellow"),
            style=None if running else "dim",
        )
        if running and task.tools:
            table.add_row(*[""] * 6, Text("\n".join(f"└ {t}" for t in task.tools), style="dim"))
    return table


def _team_lines(team: str, names: list[str], state: LiveState) -> RenderableType:
    """``team red: lead@red-1 idle`` and a line per further member, each busy or idle with
    its subtask (roles only until the orchestrator has told the members)."""
    from rich.text import Text

    head = f"team {team}: "
    members = state.members.get(team)
    rows = (
        [f"{m.name} {doing(m)}" for m in members]
        if members
        else [f"{name} ({state.actors[name]})" for name in names]
    )
    out = Text(head + rows[0], no_wrap=True, overflow="ellipsis")
    for row in rows[1:]:
        out.append("\n" + " " * len(head) + row)
    return out


def run(home: Home) -> None:
    live = LiveStatus(home)
    try:
        if sys.stdout.isatty():
            _live_view(live)
        else:
            _line_stream(live)
    except KeyboardInterrupt:
        pass


def _live_view(live: LiveStatus) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    start = render(live.state, console.width)
    with Live(start, console=console, auto_refresh=False, transient=False) as screen:

        def refresh(_line: str | None = None) -> None:
            screen.update(render(live.state, screen.console.width), refresh=True)

        live.follow(refresh, refresh)


def _line_stream(live: LiveStatus) -> None:
    def line(text: str | None) -> None:
        if text is None:  # the seed
            text = f"orchestrator {_orchestrator(live.state)}; {len(live.state.tasks)} running"
            for task in live.state.tasks.values():
                text += f"\n{task.id} {task.phase} iteration {task.iteration} · {task.description}"
            for members in live.state.members.values():
                text += "".join(f"\nmember {m.name} {doing(m)}" for m in members)
        sys.stdout.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        sys.stdout.flush()

    live.follow(line, lambda: None)
