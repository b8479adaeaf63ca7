"""The executor: the tool loop that edits the repository, one iteration per request.

Each iteration starts from the plan (and the previous iteration's findings),
runs the model with the workspace tools until it answers without tool calls
or calls ``finish(summary)``, then snapshots what its own tool calls changed
on a scratch ref, so the loop can always go back to the best iteration. When
the loop ends it puts that iteration's files back (``workspace.restore``),
three-way: the work tree is shared with a person, and nothing they changed
meanwhile is reverted or counted as the task's.
"""

from __future__ import annotations

import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shoal.actors.base import KEEP, Actor, aside, inline
from shoal.actors.children import ChildSubmitter, SubmitsChildren
from shoal.actors.llm import clip, model_config, recalled_context
from shoal.mailbox.envelope import Envelope
from shoal.messages.base import replace, to_dict
from shoal.messages.memory import ContextResult
from shoal.messages.tasks import (
    AgentSpec,
    ExecEvent,
    ExecRequest,
    ExecResult,
    TaskCancel,
    TaskDone,
    Usage,
    WorkspaceRestore,
    WorkspaceRestoreResult,
)
from shoal.messages.teams import TeamMessage, TeamProgress

if TYPE_CHECKING:
    from shoal.llm.client import Completion, ToolCall
    from shoal.tools import Toolbox, ToolResult
    from shoal.tools.permissions import Asker, PermissionRequest
    from shoal.workspace.changes import TaskChanges

SYSTEM = """You are the executor of shoal, a coding agent. You work in the git repository
at {cwd} using the tools you have: read files before editing them, make exact edits, and
keep changes minimal and focused on the task. When the work is done, call
finish(summary) with a short summary of what you changed and why.

Plan:
{plan}
{findings}"""


class PaneAsker(Protocol):
    """Asks the person at the actor's terminal about a call of ``task_id`` (a tmux pane)."""

    def __call__(self, request: PermissionRequest, task_id: str, subtask: str | None) -> bool: ...


class ExecutorActor(SubmitsChildren, Actor):
    role = "executor"
    asker: PaneAsker | None = None
    """Who decides calls that need approval: set by a process with a person at hand (a
    teammate's tmux pane). Without one such calls are refused, saying why."""

    def setup(self) -> None:
        from shoal.actors.delegate import Delegations

        self.cancelled: set[str] = set()
        # (message id, message); a subagent's result has no message of its own (None).
        self._inbox: list[tuple[str | None, TeamMessage]] = []
        self._inbox_lock = threading.Lock()
        self._taken: list[str] = []  # ids handed to the running task, acked when it ends
        self.children = ChildSubmitter(self.ctx)
        self.delegations = Delegations()
        self.current_task: str | None = None
        self._recalls = ThreadPoolExecutor(1, thread_name_prefix="recall")
        # A team's agent member (role executor.NAME@TEAM) acts as that definition throughout.
        from shoal.skills.agents import load_member

        self.own_agent = load_member(self.ctx.home.run, self.ctx.role)

    @inline
    def on_task_done(self, msg: Envelope, payload: TaskDone) -> None:
        """A subagent ended: its result joins the delegating conversation, if it still runs."""
        from shoal.actors.delegate import result_text

        if self.delegations.ended_now(payload) and payload.parent == self.current_task:
            text = result_text(payload)
            with self._inbox_lock:
                message = TeamMessage(
                    text=text, sender=f"subagent {payload.task_id}", source="subagent"
                )
                self._inbox.append((None, message))

    @inline
    def on_task_cancel(self, msg: Envelope, payload: TaskCancel) -> None:
        self.cancelled.add(payload.task_id)

    @inline
    def on_team_message(self, msg: Envelope, payload: TeamMessage) -> object:
        with self._inbox_lock:
            if self.current_task is None:
                # Nothing runs to rerun it after a kill: acked now, read by the next task.
                self._inbox.append((None, payload))
                return None
            self._inbox.append((msg.id, payload))
        # Acked once the task that reads it has ended: a kill before then hands it to
        # the next instance, whose rerun of the task reads it again.
        return KEEP

    def take_inbox(self) -> list[TeamMessage]:
        """Messages that arrived since the last turn (each is handed out once)."""
        with self._inbox_lock:
            taken, self._inbox = self._inbox, []
        self._taken += [message_id for message_id, _ in taken if message_id is not None]
        return [message for _, message in taken]

    def _end_task(self) -> None:
        """Ack what the task read and what came after its last turn (kept for the next
        task, in memory): nothing is held while no task runs, so an idle executor never
        keeps the orchestrator from its idle exit."""
        with self._inbox_lock:
            self.current_task = None
            waiting = [message_id for message_id, _ in self._inbox if message_id is not None]
            self._inbox = [(None, message) for _, message in self._inbox]
        self.ctx.release([*self._taken, *waiting])  # acked with this task's reply
        self._taken = []

    def on_exec_request(self, msg: Envelope, payload: ExecRequest) -> ExecResult:
        from shoal.workspace import snapshots
        from shoal.workspace.changes import TaskChanges

        task_id = msg.task_id or msg.id
        agent = payload.agent or self.own_agent
        if agent is not None:
            payload = as_agent(payload, agent)
        # The orchestrator recalls while this process snapshots the work tree: the two
        # waited for each other at the start of every iteration (~20 ms).
        recall = self._recalls.submit(
            recalled_context,
            self.ctx,
            payload.description,
            payload.cwd,
            "executor",
            task_id,
            payload.team,
        )
        taken = snapshots.list_snapshots(payload.cwd, task_id)
        base = taken.get(0) or _first_snapshot(payload, task_id)
        # This iteration's snapshot is the one before it plus what its own calls changed.
        earlier = [n for n in taken if n < payload.iteration]
        prior = taken[max(earlier)] if earlier else base
        changes = TaskChanges(payload.cwd, task_id, payload.iteration)
        with self._inbox_lock:
            self.current_task = task_id
        self._announce(msg, payload, task_id)
        try:
            loop = Iteration(self, task_id, payload, recall.result(), changes)
            error = loop.run_to_end()
            snapshot = snapshots.snapshot_paths(
                payload.cwd, task_id, payload.iteration, prior, sorted(changes.paths)
            )
        finally:
            changes.close()
            self._end_task()
        return ExecResult(
            iteration=payload.iteration,
            summary=loop.summary,
            turns=loop.turns,
            tool_calls=loop.calls,
            usage=loop.usage,
            base=base,
            snapshot=snapshot,
            error=error,
        )

    def _announce(self, msg: Envelope, payload: ExecRequest, task_id: str) -> None:
        """For progress views: an iteration taken up again (its calls repeat a lost run's),
        and who took a team run's subtask (for the run's lead and output)."""
        if msg.attempt > 1:
            again = ExecEvent(
                iteration=payload.iteration,
                type="again",
                name=self.ctx.name,
                detail=f"delivery {msg.attempt}",
            )
            self.ctx.publish(again, task_id=task_id)
        if payload.parent and payload.subtask:
            self.ctx.publish(
                TeamProgress(
                    event="start",
                    subtask=payload.subtask,
                    member=self.ctx.name,
                    text=f"iteration {payload.iteration}",
                ),
                task_id=payload.parent,
            )

    @aside
    def on_workspace_restore(
        self, msg: Envelope, payload: WorkspaceRestore
    ) -> WorkspaceRestoreResult:
        """From the state the task left the files in (its last snapshot) to its best,
        three-way: what someone else changed meanwhile stays theirs.

        Aside: by the time a task's judgement is in, the broker may have given this
        executor its next work (it was free); the restore that ends the task must not
        wait for that work to end (a team run waited a whole subtask for it, ~1 s).
        Its work tree is the task's own: no other task runs in it until this one ends."""
        from shoal.workspace import changes, snapshots

        task_id = msg.task_id or msg.id
        taken = snapshots.list_snapshots(payload.cwd, task_id)
        last = taken[max(taken)] if taken else payload.snapshot
        applied = snapshots.apply(payload.cwd, last, payload.snapshot)
        changes.forget(payload.cwd, task_id)
        return WorkspaceRestoreResult(
            files_changed=snapshots.changed_files(payload.cwd, payload.base, payload.snapshot),
            kept=applied.kept,
        )


def _first_snapshot(request: ExecRequest, task_id: str) -> str:
    """The task's snapshot before its first iteration: the commit its fresh worktree was
    checked out at, recorded as it is, or the work tree read into a commit."""
    from shoal.workspace import snapshots

    if request.fresh_at is not None:
        snapshots.keep(request.cwd, task_id, 0, request.fresh_at)
        return request.fresh_at
    return snapshots.base_snapshot(request.cwd, task_id)


def opening(request: ExecRequest, context: ContextResult) -> list[dict[str, Any]]:
    """The conversation an iteration starts from: the plan, the findings to address, and
    what was recalled from earlier runs."""
    plan = "\n".join(f"{i}. {s.title}: {s.detail}" for i, s in enumerate(request.plan.steps, 1))
    findings = ""
    if request.findings:
        items = "\n".join(
            f"- [{f.severity}] {f.where + ': ' if f.where else ''}{f.title}: {f.detail} "
            f"Fix: {f.fix}"
            for f in request.findings
        )
        findings = f"\nA reviewer judged the previous attempt. Address these findings:\n{items}"
    system = SYSTEM.format(cwd=request.cwd, plan=plan, findings=findings)
    if request.agent is not None and request.agent.prompt:
        system += f"\n\nYou act as the agent {request.agent.name}:\n{request.agent.prompt}"
    if context.text:
        system += f"\n\n{context.text}"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Task: {request.description}"},
    ]


def as_agent(request: ExecRequest, agent: AgentSpec) -> ExecRequest:
    """``request`` acting as ``agent``: its definition, its model (at the role's base URL)
    and its permission mode where that is narrower."""
    from shoal.skills.agents import narrower, with_model

    return replace(
        request,
        agent=agent,
        model=with_model(agent, request.model),
        permission_mode=narrower(request.permission_mode, agent.permission_mode),
    )


def workspace_toolbox(
    outputs: Path, request: ExecRequest, watch: Any = None, asker: Asker | None = None
) -> Toolbox:
    """The workspace tools of ``request``'s work tree, under its permissions."""
    from shoal.tools import Permissions, Toolbox, Workspace
    from shoal.tools.permissions import Rule

    outputs.mkdir(mode=0o700, exist_ok=True)
    rules = [Rule.model_validate(to_dict(r)) for r in request.permission_rules]
    permissions = Permissions(mode=request.permission_mode, rules=rules)
    return Toolbox(Workspace([Path(request.cwd)], outputs), permissions, watch=watch, asker=asker)


class Iteration:
    """One iteration of a task on this executor: the agent's host.

    It builds the iteration's toolbox (the workspace tools, watched for what they
    change, and the tools of :mod:`shoal.actors.agent_tools`), runs the agent from
    :func:`opening`, and relays what happens: each tool call and text as an
    ``exec.event`` (a teammate's pane, ``shoal run``'s progress), steering lines from
    the inbox into the conversation, a cancel as :class:`~shoal.agent.Cancelled`.
    """

    def __init__(
        self,
        actor: ExecutorActor,
        task_id: str,
        request: ExecRequest,
        context: ContextResult,
        changes: TaskChanges | None = None,
    ) -> None:
        from shoal.actors.agent_tools import extra_tools, tool_hooks
        from shoal.agent import Agent

        self.actor = actor
        self.task_id = task_id
        self.request = request
        self.context = context
        self.changes = changes
        watch = self._watch if changes is not None else None
        asker = self._ask if actor.asker is not None else None
        self.toolbox = workspace_toolbox(actor.ctx.home.root / "outputs", request, watch, asker)
        self.agent = Agent(
            self,
            self.toolbox,
            model_config(request.model, "executor"),
            max_turns=request.max_turns,
            token_budget=request.token_budget,
        )
        self.summary = ""
        self.toolbox.add(extra_tools(self))
        agent = request.agent
        if agent is not None and agent.tools is not None:
            # The definition's list, for real: nothing else is offered, nothing else runs.
            self.toolbox.restrict([*agent.tools, "finish"], f"the agent {agent.name}")
        self.toolbox.hooks = tool_hooks(self)

    @property
    def usage(self) -> Usage:
        return self.agent.usage

    @property
    def turns(self) -> int:
        return self.agent.turns

    @property
    def calls(self) -> int:
        return self.agent.calls

    def run_to_end(self) -> str | None:
        """Run the conversation and close its tools; the model's failure (None if none)."""
        from shoal.agent import BudgetReached, Cancelled, Finished, ModelError

        try:
            self.agent.run(opening(self.request, self.context))
        except Finished:
            pass
        except Cancelled:
            self.agent.text = self.agent.text or "stopped: the task was cancelled"
        except BudgetReached as stop:
            if stop.limit == "tokens":
                self.agent.text += "\n(stopped: token budget reached)"
        except ModelError as exc:
            return str(exc)
        finally:
            self.summary = self.agent.text
            self.toolbox.close()
        return None

    # --- the agent's host ---------------------------------------------------------

    def turn_starts(self, messages: list[dict[str, Any]]) -> None:
        from shoal.agent import Cancelled

        if self.task_id in self.actor.cancelled:
            raise Cancelled
        self._deliver_inbox(messages)

    def check(self) -> None:
        return None  # a cancel takes effect at the next turn: tool calls run to their end

    def on_delta(self, text: str) -> None:
        return None

    def on_completion(self, completion: Completion, message: dict[str, Any]) -> None:
        if completion.content:
            self._publish("text", "", clip(completion.content, 2000), True)

    def on_tool(self, call: ToolCall, result: ToolResult, message: dict[str, Any]) -> None:
        from shoal.tools.preview import failure, preview

        detail = clip(json.dumps(call.arguments, ensure_ascii=False), 200)
        shown = (
            "" if result.denied else preview(call.name, call.arguments, result.ok, result.output)
        )
        self._publish("tool_call", call.name, detail, result.ok, failure(result), shown)
        if result.denied and self.request.parent and self.request.subtask:
            # A team run's output follows the run, not its subtasks: a refusal is told there.
            self.actor.ctx.publish(
                TeamProgress(
                    event="refused",
                    subtask=self.request.subtask,
                    member=self.actor.ctx.name,
                    text=f"{call.name} {detail} ✗ {failure(result)}",
                ),
                task_id=self.request.parent,
            )

    # --- helpers --------------------------------------------------------------------

    def _ask(self, request: PermissionRequest) -> bool:
        """A call that needs approval: the person at this member's pane decides."""
        assert self.actor.asker is not None
        return self.actor.asker(request, self.task_id, self.request.subtask)

    def _deliver_inbox(self, messages: list[dict[str, Any]]) -> None:
        """Steering from a person, teammates or subagents joins the conversation as user text."""
        inbox = self.actor.take_inbox()
        if not inbox:
            return
        lines = [f"- from {m.sender} ({m.source}): {m.text}" for m in inbox]
        text = "Messages that arrived while you worked:\n" + "\n".join(lines)
        if messages and messages[-1]["role"] == "user":
            messages[-1] = {**messages[-1], "content": messages[-1]["content"] + "\n\n" + text}
        else:
            messages.append({"role": "user", "content": text})

    def _watch(self, request: PermissionRequest) -> contextlib.AbstractContextManager[None]:
        """Around each allowed call: what it changes in the work tree is the task's."""
        from shoal.actors.turn_files import watch_for

        assert self.changes is not None
        return watch_for(self.changes, request)

    def _publish(
        self, kind: str, name: str, detail: str, ok: bool, error: str = "", preview: str = ""
    ) -> None:
        """For live views (a teammate's pane, ``shoal run``'s progress) and the record."""
        self.actor.ctx.publish(
            ExecEvent(
                iteration=self.request.iteration,
                type=kind,  # type: ignore[arg-type]
                name=name,
                detail=detail,
                ok=ok,
                error=error,
                preview=preview,
            ),
            task_id=self.task_id,
        )
