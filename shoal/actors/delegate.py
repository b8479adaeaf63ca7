"""Background delegation: the executor's ``delegate`` tool starts subagents and goes on.

A subagent is a child task with its own context, run by another executor
process: read-only in the same work tree (plan mode), or in a worktree of its
own. It is executed once, without evaluation. ``delegate`` returns handles at
once; each result arrives later as a message in the delegating conversation
(cut to a bound; the full text is in the task's record), and a subagent that
fails is reported as failed. ``wait_for_subagents`` blocks until they end.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from shoal.tools.base import ToolArgs
from shoal.tools.registry import Tool, agent_tool

if TYPE_CHECKING:
    from shoal.actors.executor import ExecutorActor, Iteration
    from shoal.messages.tasks import TaskDone
    from shoal.skills.agents import AgentDefinition

MAX_PER_CALL = 4
MAX_RUNNING = 4
RESULT_LIMIT = 2_000
"""Characters of a subagent's summary that go into the conversation."""


class Subagent(ToolArgs):
    description: str = ""
    """What the subagent is to do, with everything it needs to know."""
    mode: Literal["read-only", "worktree"] = "read-only"
    """read-only: in this work tree, changing nothing; worktree: in a worktree of its own."""
    agent: str | None = None
    """An agent definition (``.shoal/agents``, ``.claude/agents``, yours) the subagent acts
    as: its prompt, only its tools, its model."""


class DelegateArgs(ToolArgs):
    tasks: list[Subagent] = Field(min_length=1)
    """The subagents to start."""


class WaitArgs(ToolArgs):
    timeout: float | None = None
    """Seconds to wait at most (default 120)."""


class Delegations:
    """The subagents an executor started, by handle (their task ids), and their ends."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.running: dict[str, str] = {}  # handle -> the delegating task
        self.ended: dict[str, TaskDone] = {}
        self.worktrees: list[Path] = []

    def started(self, handle: str, task_id: str) -> None:
        with self._lock:
            self.running[handle] = task_id

    def ended_now(self, done: TaskDone) -> bool:
        """Record a subagent's end; False if it is not one of ours."""
        with self._lock:
            if self.running.pop(done.task_id, None) is None:
                return False
            self.ended[done.task_id] = done
            self._lock.notify_all()
            return True

    def of(self, task_id: str) -> list[str]:
        with self._lock:
            return [h for h, t in self.running.items() if t == task_id]

    def wait(self, task_id: str, timeout: float) -> list[str]:
        """Wait until none of ``task_id``'s subagents runs; the handles still running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (left := [h for h, t in self.running.items() if t == task_id]) and (
                remaining := deadline - time.monotonic()
            ) > 0:
                self._lock.wait(min(remaining, 1.0))
            return left


def result_text(done: TaskDone) -> str:
    summary = done.summary.strip() or "(no summary)"
    if done.status != "accepted":
        summary = f"{done.decision}; {summary}"
    if len(summary) > RESULT_LIMIT:
        summary = summary[:RESULT_LIMIT] + f"… (cut; full text: shoal show {done.task_id})"
    return f"subagent {done.task_id} {done.status}: {summary}"


def provide(loop: Iteration) -> list[Tool]:
    if loop.request.subagent:
        return []  # subagents do not delegate in turn
    return [
        agent_tool(
            "delegate",
            f"Start up to {MAX_PER_CALL} background subagents, each with its own context "
            "and process: read-only in this work tree, or in a worktree of its own, "
            "optionally acting as a defined agent (agent: its name). "
            "Returns handles at once; results arrive as messages on a later turn.",
            DelegateArgs,
            lambda args: _delegate(loop, args),
            subject=lambda args: f"{len(args.tasks)} subagent(s)",
            close=lambda: close(loop),
        ),
        agent_tool(
            "wait_for_subagents",
            "Wait (up to timeout seconds, default 120) until your subagents have ended.",
            WaitArgs,
            lambda args: _wait(loop, args),
        ),
    ]


def _delegate(loop: Iteration, args: DelegateArgs) -> tuple[str, bool]:
    tasks = args.tasks
    actor: ExecutorActor = loop.actor
    running = len(actor.delegations.of(loop.task_id))
    if len(tasks) > MAX_PER_CALL or running + len(tasks) > MAX_RUNNING:
        return (
            f"too many subagents: at most {MAX_PER_CALL} per call and {MAX_RUNNING} running "
            f"({running} running now); wait_for_subagents first",
            False,
        )
    agents = []
    for n, item in enumerate(tasks, 1):  # every task checked before any starts
        if not item.description.strip():
            return f"task {n} has no description; nothing was started", False
        try:
            agents.append(_agent(loop, item.agent))
        except ValueError as exc:
            return f"task {n}: {exc}; nothing was started", False
    handles = []
    for item, agent in zip(tasks, agents, strict=True):
        description = item.description.strip()
        handle = _start(loop, description, item.mode, agent)
        actor.delegations.started(handle, loop.task_id)
        where = ""
        if item.mode == "worktree":
            where = f", branch {worktrees_branch(loop, actor.delegations.worktrees[-1])}"
        if agent is not None:
            where += f", as agent {agent.name}"
        handles.append(f"{handle} ({item.mode}{where}): {description[:80]}")
    return "started:\n" + "\n".join(handles), True


def _agent(loop: Iteration, name: str | None) -> AgentDefinition | None:
    """The definition ``name`` names for this work tree; ValueError (one line) if none."""
    from shoal.skills.agents import find

    if name is None:
        return None
    return find(loop.actor.ctx.home.root / "agents", Path(loop.request.cwd), name)


def _start(
    loop: Iteration, description: str, mode: str, agent: AgentDefinition | None = None
) -> str:
    from shoal.messages.tasks import Plan, Step, TaskOptions, TaskSubmit
    from shoal.skills.agents import apply

    cwd = loop.request.cwd
    update: dict[str, Any] = {"evaluate": False, "iterations": 1}
    if mode == "worktree":
        path = _worktree(loop)
        loop.actor.delegations.worktrees.append(path)
        cwd = str(path)
    else:
        update["permission_mode"] = "plan"
    options = TaskOptions(
        models={"default": loop.request.model},
        permission_mode=update.pop("permission_mode", loop.request.permission_mode),
        **update,
    )
    if agent is not None:
        options = apply(options, agent)
    submit = TaskSubmit(
        description=description,
        cwd=cwd,
        options=options,
        plan=Plan(steps=[Step(title=description[:80], detail=description)]),
        parent=loop.task_id,
    )
    return loop.actor.children.submit(submit, loop.task_id)


def _worktree(loop: Iteration) -> Path:
    """A worktree of the work tree as it is now, on a branch of its own."""
    from shoal.ids import new_id
    from shoal.workspace import snapshots, worktrees
    from shoal.workspace.git import toplevel

    name = new_id()[-8:].lower()
    start = snapshots.snapshot(loop.request.cwd, f"{loop.task_id}.d{name}", 0)
    path = loop.actor.ctx.home.root / "worktrees" / loop.task_id / f"d{name}"
    branch = worktrees.branch_name(loop.task_id, f"d{name}")
    return worktrees.add(toplevel(loop.request.cwd), path, branch, start)


def worktrees_branch(loop: Iteration, path: Path) -> str:
    from shoal.workspace import worktrees

    return worktrees.branch_name(loop.task_id, path.name)


def close(loop: Iteration) -> None:
    """Keep each subagent worktree's work as a commit on its branch; remove the directories."""
    from shoal.workspace import worktrees
    from shoal.workspace.git import toplevel

    done = loop.actor.delegations
    if not done.worktrees or done.of(loop.task_id):
        return  # nothing to tidy, or subagents still work in them
    repo = toplevel(loop.request.cwd)
    for path in done.worktrees:
        worktrees.commit_all(path, f"subagent work of {loop.task_id}")
    worktrees.remove(repo, *done.worktrees)
    done.worktrees.clear()


def _wait(loop: Iteration, args: WaitArgs) -> tuple[str, bool]:
    timeout = min(max(args.timeout or 120.0, 1.0), 1800.0)
    left = loop.actor.delegations.wait(loop.task_id, timeout)
    if left:
        return f"still running after {timeout:.0f}s: {', '.join(left)}", True
    return "all subagents have ended; their results follow as messages", True
