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
from typing import TYPE_CHECKING, Any

from shoal.actors.base import KEEP, Actor, inline
from shoal.actors.children import ChildSubmitter, SubmitsChildren
from shoal.actors.llm import clip, function_tool, model_config, recalled_context, usage_of
from shoal.mailbox.envelope import (
    ContextResult,
    Envelope,
    ExecEvent,
    ExecRequest,
    ExecResult,
    RestoreRequest,
    RestoreResult,
    TaskCancel,
    TaskDone,
    TeamMessage,
    Usage,
)

if TYPE_CHECKING:
    from shoal.tools.permissions import PermissionRequest
    from shoal.workspace.changes import TaskChanges

SYSTEM = """You are the executor of shoal, a coding agent. You work in the git repository
at {cwd} using the tools you have: read files before editing them, make exact edits, and
keep changes minimal and focused on the task. When the work is done, call
finish(summary) with a short summary of what you changed and why.

Plan:
{plan}
{findings}"""

GET_SKILL = function_tool(
    "get_skill",
    "Load the full instructions of a skill listed in your prompt.",
    {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
)

FINISH = function_tool(
    "finish",
    "Call when the task is done, with a short summary of what you changed and why.",
    {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]},
)


class ExecutorActor(SubmitsChildren, Actor):
    role = "executor"

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
        base = taken.get(0) or snapshots.base_snapshot(payload.cwd, task_id)
        # This iteration's snapshot is the one before it plus what its own calls changed.
        earlier = [n for n in taken if n < payload.iteration]
        prior = taken[max(earlier)] if earlier else base
        changes = TaskChanges(payload.cwd, task_id, payload.iteration)
        with self._inbox_lock:
            self.current_task = task_id
        try:
            loop = ToolLoop(self, task_id, payload, recall.result(), changes)
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

    def on_workspace_restore(self, msg: Envelope, payload: RestoreRequest) -> RestoreResult:
        """From the state the task left the files in (its last snapshot) to its best,
        three-way: what someone else changed meanwhile stays theirs."""
        from shoal.workspace import changes, snapshots

        task_id = msg.task_id or msg.id
        taken = snapshots.list_snapshots(payload.cwd, task_id)
        last = taken[max(taken)] if taken else payload.snapshot
        applied = snapshots.apply(payload.cwd, last, payload.snapshot)
        changes.forget(payload.cwd, task_id)
        return RestoreResult(
            files_changed=snapshots.changed_files(payload.cwd, payload.base, payload.snapshot),
            kept=applied.kept,
        )


class ToolLoop:
    """One iteration's conversation with the model."""

    def __init__(
        self,
        actor: ExecutorActor,
        task_id: str,
        request: ExecRequest,
        context: ContextResult,
        changes: TaskChanges | None = None,
    ) -> None:
        """``changes`` records what the tool calls change (None: a private clone, where
        everything that changes is the loop's)."""
        from shoal.actors.agent_tools import provide
        from shoal.tools import Permissions, Toolbox, Workspace
        from shoal.tools.permissions import Rule

        self.actor = actor
        self.task_id = task_id
        self.request = request
        outputs = actor.ctx.home.root / "outputs"
        outputs.mkdir(mode=0o700, exist_ok=True)
        workspace = Workspace([Path(request.cwd)], outputs)
        rules = [Rule.model_validate(r.model_dump()) for r in request.permission_rules]
        self.changes = changes
        self.toolbox = Toolbox(
            workspace,
            Permissions(mode=request.permission_mode, rules=rules),
            watch=self._watch if changes is not None else None,
        )
        self.usage = Usage()
        self.turns = self.calls = 0
        self.summary = ""
        self.context = context
        self.extras = {tool.name: tool for tool in provide(self)}

    def close(self) -> None:
        for tool in self.extras.values():
            if tool.close is not None:
                try:
                    tool.close()
                except Exception:
                    self.actor.ctx.log.exception("closing tool %s failed", tool.name)

    def run_to_end(self) -> str | None:
        """Run the conversation and close its tools; the model's failure (None if none)."""
        from shoal.llm.errors import ModelError

        try:
            self.run()
        except ModelError as exc:
            return str(exc)
        finally:
            self.close()
        return None

    def run(self) -> None:
        from shoal.llm.client import complete

        config = model_config(self.request.model, "executor")
        tools = [*self.toolbox.schemas(), FINISH, *([GET_SKILL] if self.context.skills else [])]
        tools += [tool.schema for tool in self.extras.values()]
        messages = self._opening()
        for _ in range(self.request.max_turns):
            if self.task_id in self.actor.cancelled:
                self.summary = self.summary or "stopped: the task was cancelled"
                return
            self._deliver_inbox(messages)
            completion = complete(config, messages, tools)
            self.turns += 1
            self.usage = self.usage + usage_of(completion)
            if completion.pruned and completion.messages:
                messages = completion.messages
            messages.append(completion.to_message())
            if completion.content:
                self.summary = completion.content
                self._publish("text", "", clip(completion.content, 2000), True)
            if not completion.tool_calls:
                return
            if self._call_tools(completion.tool_calls, messages):
                return
            budget = self.request.token_budget
            if budget is not None and self.usage.tokens >= budget:
                self.summary += "\n(stopped: token budget reached)"
                return

    def _opening(self) -> list[dict[str, Any]]:
        r = self.request
        plan = "\n".join(f"{i}. {s.title}: {s.detail}" for i, s in enumerate(r.plan.steps, 1))
        findings = ""
        if r.findings:
            items = "\n".join(
                f"- [{f.severity}] {f.title}: {f.detail} Fix: {f.fix}" for f in r.findings
            )
            findings = f"\nA reviewer judged the previous attempt. Address these findings:\n{items}"
        system = SYSTEM.format(cwd=r.cwd, plan=plan, findings=findings)
        if self.context.text:
            system += f"\n\n{self.context.text}"
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Task: {r.description}"},
        ]

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

    def _call_tools(self, calls: list[Any], messages: list[dict[str, Any]]) -> bool:
        finished = False
        for call in calls:
            self.calls += 1
            if call.name == "finish":
                self.summary = str(call.arguments.get("summary") or self.summary)
                output, ok, finished = "finished", True, True
            elif call.name == "get_skill":
                output, ok = self._skill(str(call.arguments.get("name", ""))), True
            elif call.error:
                output, ok = f"arguments were not valid JSON ({call.error}); send them again", False
            elif call.name in self.extras:
                output, ok = self._extra(call.name, call.arguments or {})
            else:
                result = self.toolbox.call(call.name, call.arguments)
                output, ok = result.output, result.ok
            self._event(call.name, call.arguments, ok)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
        return finished

    def _watch(self, request: PermissionRequest) -> contextlib.AbstractContextManager[None]:
        """Around each allowed call: what it changes in the work tree is the task's."""
        from shoal.tools.permissions import ToolKind

        assert self.changes is not None
        if request.kind is ToolKind.READ:
            return contextlib.nullcontext()
        if request.kind is ToolKind.EDIT and request.aliases:
            return self.changes.writing(request.aliases[0])
        return self.changes.probing()

    def _extra(self, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        from shoal.mcp.names import is_mcp_name

        watch: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if self.changes is not None and is_mcp_name(name):
            watch = self.changes.probing()  # an MCP server's tool may change files like a command
        try:
            with watch:
                return self.extras[name].run(arguments)
        except Exception as exc:  # a tool's failure is the model's to read, not a crash
            self.actor.ctx.log.exception("tool %s failed", name)
            return f"{name} failed: {type(exc).__name__}: {exc}", False

    def _skill(self, name: str) -> str:
        from shoal.skills.catalog import discover_skills
        from shoal.skills.selection import get_skill_text

        catalog = discover_skills(self.actor.ctx.home.root / "skills", Path(self.request.cwd))
        return get_skill_text(catalog, name)

    def _event(self, name: str, arguments: dict[str, Any], ok: bool) -> None:
        detail = clip(json.dumps(arguments, ensure_ascii=False), 200)
        self._publish("tool_call", name, detail, ok)

    def _publish(self, kind: str, name: str, detail: str, ok: bool) -> None:
        """For live views (a teammate's pane, ``shoal run``'s progress) and the record."""
        self.actor.ctx.publish(
            ExecEvent(
                iteration=self.request.iteration,
                type=kind,  # type: ignore[arg-type]
                name=name,
                detail=detail,
                ok=ok,
            ),
            task_id=self.task_id,
        )
