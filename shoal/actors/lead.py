"""The lead: runs a team run's subtasks on parallel executors, each in its own worktree.

The scheduler hands the lead a plan with subtasks (``team.run``). The lead
creates a worktree and branch per subtask from the integration branch, submits
each ready subtask as a child task of its own (so it is planned by the plan it
came with, executed, evaluated and refined like any task, and recorded), at most
``team_size`` at once and only once the subtasks it depends on are merged. As
children finish, their branches are merged into the integration branch in
dependency order; a conflict goes to an executor as a child task of its own,
and what it cannot resolve is reported, never dropped (the branch is kept).
The merged result is put into the user's work tree, and the scheduler runs the
final evaluation on it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from shoal.actors.base import Actor, inline
from shoal.actors.children import ChildSubmitter, SubmitsChildren
from shoal.actors.merger import Merger
from shoal.mailbox.envelope import ORCHESTRATOR, Envelope
from shoal.messages.actors import OrchestratorOk
from shoal.messages.base import replace
from shoal.messages.tasks import (
    Plan,
    Step,
    Subtask,
    SubtaskOutcome,
    TaskCancel,
    TaskDone,
    TaskSubmit,
    Usage,
)
from shoal.messages.teams import (
    TeamMessage,
    TeamPrepare,
    TeamProgress,
    TeamRun,
    TeamRunResult,
    TeamTasksCreate,
    TeamTaskUpdate,
)
from shoal.workspace import snapshots, worktrees
from shoal.workspace.git import WorkspaceError, toplevel

MERGED = "_merged"
_BASES_KEPT = 64


class LeadActor(SubmitsChildren, Actor):
    role = "lead"
    concurrency = 8  # team runs at once; each mostly waits for its children

    def setup(self) -> None:
        self._lock = threading.Lock()
        self.children = ChildSubmitter(self.ctx)
        # parent task id -> the ends of its children (None: wake up, it was cancelled)
        self._runs: dict[str, queue.Queue[TaskDone | None]] = {}
        self._cancelled: set[str] = set()
        # task id -> its base snapshot and the checks failing on it (see on_team_prepare)
        self._bases: dict[str, Future[tuple[str, list[str]]]] = {}
        self._team_runs: dict[str, Run] = {}  # the runs going on, by task id

    # --- mail that arrives while runs wait (inline: never blocks) ----------------

    @inline
    def on_task_done(self, msg: Envelope, payload: TaskDone) -> None:
        with self._lock:
            run = self._runs.get(payload.parent or "")
        if run is not None:
            run.put(payload)

    @inline
    def on_task_cancel(self, msg: Envelope, payload: TaskCancel) -> None:
        with self._lock:
            self._cancelled.add(payload.task_id)
            run = self._runs.get(payload.task_id)
        if run is not None:
            run.put(None)  # wake the run up: it cancels its children

    @inline
    def on_orchestrator_ok(self, msg: Envelope, payload: OrchestratorOk) -> None:
        """Acknowledgements of the task-list updates: nothing to do."""

    @inline
    def on_team_message(self, msg: Envelope, payload: TeamMessage) -> None:
        """A member wrote to the lead: a milestone of the run the sender works on."""
        self.ctx.log.info("message from %s: %s", payload.sender, payload.text)
        with self._lock:
            runs = list(self._team_runs.values())
        for run in runs:
            subtask = run.running.get(msg.task_id or "")
            # A child that wrote at once may be running before the run has noted its id.
            sid = subtask.id if subtask else payload.subtask
            if subtask is not None or msg.task_id == run.id or sid in run.outcomes:
                run.progress("message", sid, payload.text[:2000], member=payload.sender)
                return

    # --- the run (worker threads) -----------------------------------------------

    def on_team_prepare(self, msg: Envelope, payload: TeamPrepare) -> None:
        """Sent with the plan request: the base is ready by the time the plan is."""
        try:
            self.base_of(payload.task_id, payload.cwd)
        except WorkspaceError as exc:  # the run itself reports it (it asks again)
            self.ctx.log.warning("team run %s: %s", payload.task_id, exc)

    def base_of(self, task_id: str, cwd: str) -> tuple[str, list[str]]:
        """The run's base snapshot and the checks failing on it, made once per run
        (by whichever of team.prepare and team.run comes first; the other waits)."""
        with self._lock:
            future = self._bases.get(task_id)
            mine = future is None
            if future is None:
                future = self._bases[task_id] = Future()
                if len(self._bases) > _BASES_KEPT:  # runs whose team.run never came
                    self._bases.pop(next(iter(self._bases)))
        if mine:
            try:
                future.set_result(prepare_base(cwd, task_id, self.ctx.home.root / "worktrees"))
            except Exception as exc:
                future.set_exception(exc)
        return future.result()

    def on_team_run(self, msg: Envelope, payload: TeamRun) -> TeamRunResult:
        done: queue.Queue[TaskDone | None] = queue.Queue()
        with self._lock:
            self._runs[payload.task_id] = done
        try:
            run = Run(self, payload, done)
            with self._lock:
                self._team_runs[payload.task_id] = run
            try:
                return run.run()
            except WorkspaceError as exc:
                return run.result(error=str(exc))
            finally:
                run.cleanup()
        finally:
            with self._lock:
                self._runs.pop(payload.task_id, None)
                self._team_runs.pop(payload.task_id, None)
                self._cancelled.discard(payload.task_id)
                self._bases.pop(payload.task_id, None)

    def cancelled(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._cancelled


class Run:
    """One team run: worktrees, children, merges."""

    def __init__(
        self, lead: LeadActor, request: TeamRun, done: queue.Queue[TaskDone | None]
    ) -> None:
        self.lead = lead
        self.request = request
        self.done = done
        self.id = request.task_id
        self.repo = toplevel(request.cwd)
        self.root = lead.ctx.home.root / "worktrees" / self.id
        self.size = request.options.team_size or 1
        self.subtasks = ordered(request.plan.subtasks)
        self.outcomes = {
            s.id: SubtaskOutcome(id=s.id, title=s.title, status="pending") for s in self.subtasks
        }
        self.running: dict[str, Subtask] = {}  # child task id -> subtask
        self.merged: set[str] = set()
        self.usage = Usage()
        self.base = ""
        self.integration = self.root / MERGED
        self.worktrees: list[Path] = []
        self.branches: list[str] = []
        self.failing_before: list[str] = []
        # Worktrees made ahead for waiting subtasks, and the commit each was checked out at.
        self.prepared: dict[str, tuple[Path, str]] = {}
        self._lock = threading.Lock()  # outcomes and usage: the merger updates them too
        self.merger = Merger(self)

    def run(self) -> TeamRunResult:
        self.base, self.failing_before = self.lead.base_of(self.id, self.request.cwd)
        self._add_worktree(MERGED, self.base)
        self._publish_list()
        for s in self.subtasks:
            after = f" (after {', '.join(s.depends_on)})" if s.depends_on else ""
            files = f" [{', '.join(s.files)}]" if s.files else ""
            self.progress("plan", s.id, f"{s.title}{files}{after}")
        self.merger.start()
        try:
            self._schedule()
        finally:
            self.merger.close()
        if self.merger.error is not None:
            raise self.merger.error
        merged = worktrees.head(self.integration)
        # The merged commit is iteration 1 of the task: referenced, so removing the
        # branches never loses it, and the loop can restore it as its best.
        snapshots.keep(self.request.cwd, self.id, 1, merged)
        # Into the user's work tree three-way: what they changed during the run stays.
        applied = snapshots.apply(self.request.cwd, self.base, merged)
        return self.result(snapshot=merged, kept=applied.kept)

    def _schedule(self) -> None:
        """Start subtasks as executors free up until all ended and their merges are done."""
        while self._pending() or self.running or self.merger.busy():
            if self.merger.error is not None:
                raise self.merger.error
            if self.lead.cancelled(self.id):
                self._cancel_children()
                return
            self._start_ready()
            if not self.running and not self.merger.busy():
                self._block_the_rest()
                return
            more = self._prepare_one()  # while the children work
            try:
                first = self.done.get(timeout=0.0 if more else 1.0)
            except queue.Empty:
                continue
            ended = []
            for child in [first, *self._more_done()]:
                if child is None:
                    continue  # a wake-up: a merge ended, or the run was cancelled
                if child.task_id in self.running:
                    ended.append((self.running.pop(child.task_id), child))
                else:
                    self.merger.offer(child)
            # Every freed executor gets its next subtask first, then the merger its work.
            self._start_ready()
            for subtask, child in ended:
                self._finished(subtask, child)

    def result(
        self, *, snapshot: str = "", error: str | None = None, kept: list[str] | None = None
    ) -> TeamRunResult:
        outcomes = [self.outcomes[s.id] for s in self.subtasks]
        merged = [o.id for o in outcomes if o.id in self.merged]
        summary = f"merged {len(merged)} of {len(outcomes)} subtasks" + (
            f" ({', '.join(merged)})" if merged else ""
        )
        unresolved = [o for o in outcomes if o.status == "conflict"]
        if unresolved:
            summary += "; unresolved conflicts kept on " + ", ".join(
                f"{o.branch} ({o.detail})" for o in unresolved
            )
        return TeamRunResult(
            subtasks=outcomes,
            base=self.base,
            snapshot=snapshot or self.base,
            usage=self.usage,
            summary=summary,
            error=error,
            kept=kept or [],
        )

    def cleanup(self) -> None:
        if self.request.options.keep_worktrees:
            return
        keep = {o.branch for o in self.outcomes.values() if o.status == "conflict"}
        worktrees.remove(self.repo, *self.worktrees)
        # worktrees/TASK/ exists only while the run does (a kept branch needs no worktree).
        with contextlib.suppress(OSError):
            self.root.rmdir()
        worktrees.delete_branches(self.repo, [b for b in self.branches if b not in keep])

    # --- scheduling ----------------------------------------------------------------

    def _more_done(self) -> list[TaskDone | None]:
        """The children that ended meanwhile, without waiting."""
        more: list[TaskDone | None] = []
        with contextlib.suppress(queue.Empty):
            while True:
                more.append(self.done.get_nowait())
        return more

    def _pending(self) -> list[Subtask]:
        return [s for s in self.subtasks if self.outcomes[s.id].status == "pending"]

    def _ready(self) -> list[Subtask]:
        return [s for s in self._pending() if all(d in self.merged for d in s.depends_on)]

    def _start_ready(self) -> None:
        starting = self._ready()[: max(0, self.size - len(self.running))]
        self._prepare_at_once([s for s in starting if s.id not in self.prepared])
        made = [self.prepared.pop(s.id, None) or self._made_for(s) for s in starting]
        children = self.lead.children.submit_all(
            [self._child(s, *at) for s, at in zip(starting, made, strict=True)], self.id
        )
        refused: RuntimeError | None = None
        for subtask, child in zip(starting, children, strict=True):
            if isinstance(child, RuntimeError):
                refused = refused or child
                continue
            self.running[child] = subtask
            self.update(
                subtask.id,
                status="running",
                task_id=child,
                branch=worktrees.branch_name(self.id, subtask.id),
            )
        if refused is not None:  # the run ends with it, as it did when submitted alone
            raise refused

    def _start_of(self, subtask: Subtask) -> str:
        """Where a subtask's branch starts: the base, or the merge of what it depends on.

        A subtask that depends on none meets its siblings' work at the merge.
        """
        return worktrees.head(self.integration) if subtask.depends_on else self.base

    def _prepare_one(self) -> bool:
        """While children work, make the worktree of one waiting subtask that depends on
        none (its start is known already); True if more are waiting for theirs."""
        waiting = [
            s
            for s in self._pending()
            if not s.depends_on and s.id not in self.prepared and self.running
        ]
        if waiting:
            self.prepared[waiting[0].id] = (
                self._add_worktree(waiting[0].id, self.base),
                self.base,
            )
        return len(waiting) > 1

    def _block_the_rest(self) -> None:
        """Subtasks whose dependencies failed can never start: say so instead of waiting."""
        for subtask in self._pending():
            failed = [d for d in subtask.depends_on if d not in self.merged]
            self.update(
                subtask.id,
                status="failed",
                detail=f"not started: depends on {', '.join(failed)}, which did not merge",
            )

    def _child(self, subtask: Subtask, path: Path, start: str) -> TaskSubmit:
        options = replace(
            self.request.options,
            team_size=None,
            keep_worktrees=False,
            skip_checks=self.failing_before,
        )
        detail = subtask.detail or subtask.title
        files = f" Files you own: {', '.join(subtask.files)}." if subtask.files else ""
        description = (
            f"{subtask.title} (subtask {subtask.id} of: {self.request.description}).{files}"
        )
        plan = Plan(steps=[Step(title=subtask.title, detail=detail)])
        return TaskSubmit(
            description=description,
            cwd=str(path),
            options=options,
            plan=plan,
            parent=self.id,
            subtask=subtask.id,
            fresh_at=start,  # nothing touched the new worktree: its first snapshot
        )

    def _finished(self, subtask: Subtask, child: TaskDone) -> None:
        self.charge(Usage(prompt_tokens=child.tokens, cost_usd=child.cost_usd))
        self.update(subtask.id, status=child.status, score=child.score, detail=child.decision)
        self.progress("result", subtask.id, f"{child.status} ({child.decision})", score=child.score)
        if child.status not in ("failed", "cancelled"):
            self.merger.add(subtask)

    def _cancel_children(self) -> None:
        for child in self.running:
            self.lead.ctx.send(ORCHESTRATOR, TaskCancel(task_id=child), task_id=self.id)
        for subtask in self.running.values():
            self.update(subtask.id, status="cancelled")
        for subtask in self._pending():
            self.update(subtask.id, status="cancelled", detail="not started")

    # --- plumbing ---------------------------------------------------------------------

    def _add_worktree(self, name: str, start: str) -> Path:
        path, branch = self._new_worktree(name, start)
        self._track(path, branch)
        return path

    def _made_for(self, subtask: Subtask) -> tuple[Path, str]:
        """A worktree for ``subtask`` made now, and the commit it starts at."""
        start = self._start_of(subtask)
        return self._add_worktree(subtask.id, start), start

    def _prepare_at_once(self, subtasks: list[Subtask]) -> None:
        """The worktrees of a wave, made at the same time: one by one, the last executor
        of a wave of four started ~60 ms after the first."""
        if len(subtasks) < 2:
            return  # made as it starts
        with ThreadPoolExecutor(len(subtasks)) as pool:
            futures = [(s, pool.submit(self._worktree_for, s)) for s in subtasks]
        for subtask, future in futures:
            if future.exception() is None:  # the others' failure must not orphan it
                path, branch, start = future.result()
                self._track(path, branch)
                self.prepared[subtask.id] = (path, start)
        for _, future in futures:
            future.result()  # a WorkspaceError ends the run, as one made alone would

    def _worktree_for(self, subtask: Subtask) -> tuple[Path, str, str]:
        start = self._start_of(subtask)
        return (*self._new_worktree(subtask.id, start), start)

    def _new_worktree(self, name: str, start: str) -> tuple[Path, str]:
        branch = worktrees.branch_name(self.id, name)
        return worktrees.add(self.repo, self.root / name, branch, start), branch

    def _track(self, path: Path, branch: str) -> None:
        """Removed (and deleted) when the run ends."""
        self.worktrees.append(path)
        self.branches.append(branch)

    def _publish_list(self) -> None:
        """The run's subtasks become the team task list the members (and `shoal team`) see."""
        self.lead.ctx.send(
            ORCHESTRATOR,
            TeamTasksCreate(list_id=self.id, tasks=self.subtasks, owner="lead"),
            task_id=self.id,
        )

    def progress(
        self,
        event: str,
        subtask: str | None,
        text: str,
        *,
        member: str | None = None,
        score: float | None = None,
    ) -> None:
        """A milestone of the run, published for the lead's pane and ``shoal team run``."""
        self.lead.ctx.publish(
            TeamProgress(
                event=event,  # type: ignore[arg-type]
                subtask=subtask,
                member=member,
                text=text,
                score=score,
            ),
            task_id=self.id,
        )

    def charge(self, usage: Usage) -> None:
        with self._lock:
            self.usage = self.usage + usage

    def update(self, subtask_id: str, **changes: object) -> None:
        with self._lock:
            o = self.outcomes[subtask_id] = replace(self.outcomes[subtask_id], **changes)
        self.lead.ctx.send(
            ORCHESTRATOR,
            TeamTaskUpdate(
                list_id=self.id,
                id=subtask_id,
                status=o.status,
                task_id=o.task_id,
                score=o.score,
                branch=o.branch,
                detail=o.detail,
            ),
            task_id=self.id,
        )


def ordered(subtasks: list[Subtask]) -> list[Subtask]:
    """Subtasks in dependency order (stable); unknown dependencies dropped, cycles refused."""
    known = {s.id for s in subtasks}
    if len(known) != len(subtasks):
        raise ValueError("the plan names a subtask id twice")
    deps = {s.id: [d for d in s.depends_on if d in known and d != s.id] for s in subtasks}
    out: list[Subtask] = []
    placed: set[str] = set()
    while len(out) < len(subtasks):
        ready = [s for s in subtasks if s.id not in placed and all(d in placed for d in deps[s.id])]
        if not ready:
            cycle = sorted(set(known) - placed)
            raise ValueError(f"the plan's subtasks depend on each other in a cycle: {cycle}")
        for s in ready:
            out.append(replace(s, depends_on=deps[s.id]))
            placed.add(s.id)
    return out


def prepare_base(cwd: str, task_id: str, worktrees_root: Path) -> tuple[str, list[str]]:
    """Snapshot ``cwd`` as the run's base; run the project's checks on a checkout of it.

    A project without checks needs no checkout (most of the time this takes).
    """
    from shoal.evaluation import checks

    base = snapshots.base_snapshot(cwd, task_id)
    if not checks.detect(cwd):
        return base, []
    repo = toplevel(cwd)
    path = worktrees.add(repo, worktrees_root / task_id / "_base", None, base)
    try:
        return base, failing_checks(path)
    finally:
        worktrees.remove(repo, path)
        with contextlib.suppress(OSError):  # the run makes it again; a plan refused never
            path.parent.rmdir()


def failing_checks(path: Path) -> list[str]:
    """The project checks that fail before any subtask ran (the other subtasks' bugs)."""
    from shoal.actors.evaluator import CHECK_TIMEOUT
    from shoal.evaluation import checks

    return [c.name for c in checks.detect(path) if not checks.run(c, CHECK_TIMEOUT).passed]
