"""The task loop: plan -> execute -> evaluate -> refine, as a state machine per task.

It runs inside the orchestrator and is driven by messages, so many tasks run at
once: each step sends a request to a role (``role:planner``, ``role:executor``,
``role:evaluator``) and the reply moves the task on. Every step is written to
DuckDB (tasks, iterations, findings, usage_events). Budgets (iterations,
tokens, cost, wall time) are checked before every step and on a timer; no
option turns them off.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shoal.ids import new_id
from shoal.mailbox.envelope import PUBLISH, ROLE_PREFIX, Envelope
from shoal.messages.actors import ErrorReply, OrchestratorOk
from shoal.messages.base import Payload, from_dict, to_dict, to_json
from shoal.messages.memory import LearnRequest, MineRequest, TaskRecord
from shoal.messages.tasks import (
    BudgetWarning,
    CheckReport,
    EvalRequest,
    EvalResult,
    ExecRequest,
    ExecResult,
    Finding,
    ModelChoice,
    Plan,
    PlanRequest,
    PlanResult,
    SubtaskOutcome,
    TaskCancel,
    TaskDone,
    TaskProgress,
    TaskSubmit,
    TaskSubmitResult,
    Usage,
    UsageRecorded,
    WorkspaceRestore,
    WorkspaceRestoreResult,
)
from shoal.messages.teams import TeamPrepare, TeamRun, TeamRunResult
from shoal.store import skills
from shoal.store import tasks as task_rows

if TYPE_CHECKING:
    from shoal.orchestrator.outbox import Outbox
    from shoal.orchestrator.recorder import Recorder
    from shoal.orchestrator.supervisor import Supervisor
    from shoal.settings import OrchestratorSettings

log = logging.getLogger(__name__)

LOOP_ROLES = ("planner", "executor", "evaluator", "learner", "pattern-miner")
# Executors the scheduler starts on its own for subagents (team runs ask for theirs).
MAX_EXECUTORS = 8
# After a time-budget stop, how long the in-flight step may take to come back.
_STOP_GRACE = 30.0
# Share of a budget at which budget.warning is published (once per budget and task).
BUDGET_WARNING = 0.8


@dataclass
class Iteration:
    n: int
    score: float
    snapshot: str
    checks: list[CheckReport] = field(default_factory=list)
    tests: str | None = None


@dataclass
class TaskRun:
    """Everything the loop knows about one running task."""

    id: str
    submit: TaskSubmit
    requester: str
    started: float = field(default_factory=time.monotonic)
    created_at: float = field(default_factory=time.time)
    phase: str = "planning"
    status: str = "running"  # then accepted, unaccepted, failed or cancelled
    plan: Plan | None = None
    iteration: int = 0
    usage: Usage = field(default_factory=Usage)
    base: str | None = None
    history: list[Iteration] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    pending: str | None = None  # id of the request we wait for
    executor: str | None = None  # who answered its last exec.request: its restore goes there
    exec_started: float = 0.0
    exec_result: ExecResult | None = None
    stop: str | None = None  # a budget decision taken while a step was running
    stop_deadline: float | None = None
    last_summary: str = ""
    subtasks: list[SubtaskOutcome] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # files left as someone else changed them
    warned: set[str] = field(default_factory=set)  # budgets budget.warning was sent for
    saved: bool = False  # its row written by this orchestrator (then only updated)

    @property
    def best(self) -> Iteration | None:
        return max(self.history, key=lambda i: i.score, default=None)


def _ts(seconds: float) -> str:
    micros = int(seconds % 1 * 1e6)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}"


def queued_detail(holder: str) -> str:
    return f"waiting for task {holder} in this work tree"


class WorkTrees:
    """Which task is changing which work tree, and the tasks waiting for one.

    A work tree is shared with a person, and two tasks editing it at once would
    each count the other's edits as their own, so a second task on a work tree
    waits until the first has ended. A task that cannot write (plan mode) never
    waits, nor does a child running in its parent's work tree (the parent holds
    it for both). Team subtasks and worktree subagents have work trees of their own.
    """

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}  # work tree root -> task id
        self._queued: dict[str, list[TaskRun]] = {}
        self._roots: dict[str, str] = {}  # task id -> its work tree root, as claimed

    def claim(self, task: TaskRun, tasks: dict[str, TaskRun]) -> str | None:
        """Take ``task``'s work tree for it; the holder's id if another task has it."""
        root = self._root(task)
        if root is None:
            return None
        self._roots[task.id] = root
        holder = self._holders.get(root)
        if holder is None or holder == task.id or holder not in tasks:
            self._holders[root] = task.id
            return None
        if self._descends(task, holder, tasks):
            return None
        self._queued.setdefault(root, []).append(task)
        return holder

    def release(self, task: TaskRun) -> list[TaskRun]:
        """``task`` has ended: the tasks that may start now (the first one waiting)."""
        root = self._roots.pop(task.id, None)
        if root is None:
            return []
        waiting = self._queued.get(root, [])
        if task in waiting:
            waiting.remove(task)
        if self._holders.get(root) != task.id:
            return []
        del self._holders[root]
        return [waiting.pop(0)] if waiting else []

    @staticmethod
    def _root(task: TaskRun) -> str | None:
        from shoal.workspace.git import WorkspaceError, toplevel

        if task.submit.options.permission_mode == "plan":
            return None
        try:
            return str(toplevel(task.submit.cwd))
        except WorkspaceError:
            return task.submit.cwd

    @staticmethod
    def _descends(task: TaskRun, holder: str, tasks: dict[str, TaskRun]) -> bool:
        parent = task.submit.parent
        while parent is not None and parent in tasks:
            if parent == holder:
                return True
            parent = tasks[parent].submit.parent
        return parent == holder


class Scheduler:
    """The tasks service: ``task.submit`` and ``task.cancel``, and every reply to a task's
    steps (see :meth:`owns`)."""

    handles = (TaskSubmit, TaskCancel)

    def __init__(
        self,
        outbox: Outbox,
        settings: OrchestratorSettings,
        supervisor: Supervisor,
        recorder: Recorder,
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        self.supervisor = supervisor
        self.recorder = recorder
        self.tasks: dict[str, TaskRun] = {}
        self._waiting: dict[str, str] = {}  # request id -> task id
        self.finished = 0
        self._mine_due = False
        self._mine_model: ModelChoice | None = None
        self.work_trees = WorkTrees()
        self._idle_since: float | None = time.monotonic()  # no task since then (None: tasks)

    # --- entry points (called on the broker thread) --------------------------

    def on_task_submit(self, env: Envelope, payload: TaskSubmit) -> TaskSubmitResult:
        return self.submit(env, payload)

    def on_task_cancel(self, env: Envelope, payload: TaskCancel) -> OrchestratorOk:
        if not self.cancel(payload.task_id):
            raise LookupError(f"no running task {payload.task_id}")
        return OrchestratorOk(detail=f"cancelling {payload.task_id}")

    def submit(self, env: Envelope, payload: TaskSubmit) -> TaskSubmitResult:
        self._ensure_actors(payload.options.team)
        task = TaskRun(new_id(), payload, env.sender)
        for role in ("planner", "executor", "evaluator"):
            self._model(task, role)  # refuse a task no model can run, before it exists
        self.tasks[task.id] = task
        if not payload.options.evaluate:
            self._executor_for_subagent()
        holder = self._start_or_queue(task)
        return TaskSubmitResult(task_id=task.id, waiting_for=holder)

    def _start_or_queue(self, task: TaskRun) -> str | None:
        """Start the task, or queue it while another task changes the same work tree (the
        holder's id is returned then)."""
        holder = self.work_trees.claim(task, self.tasks)
        if holder is None:
            self._start(task)
            return None
        task.phase = "queued"
        self._save_task(task, status="running")  # a restarted orchestrator queues it again
        self._progress(task, "queued", detail=queued_detail(holder))
        return holder

    def _start(self, task: TaskRun) -> None:
        payload = task.submit
        task.started = time.monotonic()  # the time budget counts from here, not the queue
        if payload.plan is not None:  # a subtask or a subagent: its plan came with it
            task.plan = payload.plan
            self._save_task(task, status="running")
            self._after_plan(task)
            return
        self._save_task(task, status="running")
        self._request(
            task,
            "planner",
            PlanRequest(
                description=payload.description,
                cwd=payload.cwd,
                model=self._model(task, "planner"),
                team_size=payload.options.team_size,
            ),
        )
        if payload.options.team_size:
            self._prepare_team(task)
        self._progress(task, "planning")

    def _prepare_team(self, task: TaskRun) -> None:
        """While the plan is made: the team's actors start (if they must) and the lead
        snapshots the base and runs the project's checks on it (the run's first steps)."""
        self._team_actors(task)
        lead = self._role_for(task, "lead")
        self.outbox.post(
            TeamPrepare(task_id=task.id, cwd=task.submit.cwd), ROLE_PREFIX + lead, task_id=task.id
        )

    def adopt(self, task: TaskRun, pending: str | None) -> None:
        """Take back a task rebuilt from the records after a restart (see resume.py)."""
        self.tasks[task.id] = task
        task.pending = pending
        if pending is not None:
            self._waiting[pending] = task.id
        self.work_trees.claim(task, self.tasks)

    def requeue(self, task: TaskRun) -> None:
        """Take back a task that was queued when the orchestrator stopped."""
        self.tasks[task.id] = task
        self._start_or_queue(task)

    def fail(self, task: TaskRun, decision: str) -> None:
        self._finish(task, "failed", decision)

    def cancel(self, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        if task is None:
            return False
        self._stop_soon(task, "cancelled")
        return True

    def owns(self, reply_to: str | None) -> bool:
        return reply_to is not None and reply_to in self._waiting

    def on_reply(self, env: Envelope) -> None:
        task = self.tasks.get(self._waiting.pop(env.reply_to or "", ""))
        if task is None or task.pending != env.reply_to:
            return  # a duplicate or a reply for a task already finished
        task.pending = None
        if env.kind == ExecResult.kind:
            task.executor = env.sender
        if env.kind == ErrorReply.kind:
            error = from_dict(ErrorReply, env.payload)
            self._finish(task, "failed", f"error: {error.message}")
            return
        try:
            payload = env.parse_payload()
            getattr(self, "_on_" + env.kind.replace(".", "_"))(task, payload)
        except Exception as exc:  # a task must end, never hang, whatever went wrong
            log.exception("task %s: handling %s failed", task.id, env.kind)
            self._finish(task, "failed", f"error: {type(exc).__name__}: {exc}")

    def tick(self, now: float) -> None:
        """Wall-clock budgets, the grace period of a stop, mining when idle, and the idle
        actors' retirement."""
        self._retire_when_idle(now)
        if self._mine_due and not self.tasks:
            # Mining is background work: it waits until no task would compete with it.
            self._mine_due = False
            self.outbox.post(MineRequest(model=self._mine_model), ROLE_PREFIX + "pattern-miner")
        for task in list(self.tasks.values()):
            if task.phase == "queued":
                continue  # not running yet: its budgets start when it does
            self._warn_budgets(task)
            timeout = task.submit.options.timeout
            if timeout and now - task.started > timeout and task.stop is None:
                self._stop_soon(task, "budget_time")
            if task.stop_deadline is not None and now > task.stop_deadline:
                self._conclude(task, task.stop or "cancelled")

    def _retire_when_idle(self, now: float) -> None:
        """With no task for ``actor_idle_retire`` seconds, stop the loop's own idle actors:
        their memory goes back, and the next task forks them again in milliseconds."""
        if self.tasks or self._mine_due:
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = now
        wait = self.settings.actor_idle_retire
        if wait and now - self._idle_since >= wait:
            retired = self.supervisor.retire_idle((*LOOP_ROLES, "lead"))
            if retired:
                log.info("retired idle actors: %s", ", ".join(retired))
            self._idle_since = now  # look again after as long, not on every tick

    # --- replies -------------------------------------------------------------

    def _on_plan_result(self, task: TaskRun, result: PlanResult) -> None:
        task.plan = result.plan
        self._charge(task, "planner", result.usage)
        self._save_task(task, status="running")
        if not self._over_budget(task):
            self._after_plan(task)

    def _after_plan(self, task: TaskRun) -> None:
        assert task.plan is not None
        if task.submit.options.team_size and task.plan.subtasks:
            self._teamwork(task)
        else:
            self._execute(task)

    def _on_team_run_result(self, task: TaskRun, result: TeamRunResult) -> None:
        task.usage = task.usage + result.usage  # the children's own rows hold the details
        task.subtasks = result.subtasks
        task.last_summary = result.summary
        task.kept += result.kept
        if result.error:
            self._finish(task, "failed", f"error: {result.error}")
            return
        task.base = result.base
        task.exec_result = ExecResult(
            iteration=task.iteration,
            summary=result.summary,
            turns=0,
            tool_calls=0,
            usage=Usage(),
            base=result.base,
            snapshot=result.snapshot,
        )
        task.stop = task.stop or self._budget_hit(task)
        if task.stop:
            task.history.append(Iteration(task.iteration, 0.0, result.snapshot))
            self._conclude(task, task.stop)
            return
        self._evaluate(task, task.exec_result)  # the final evaluation, on the merged result

    def _on_exec_result(self, task: TaskRun, result: ExecResult) -> None:
        self._charge(task, "executor", result.usage)
        task.base = task.base or result.base
        task.exec_result = result
        task.last_summary = result.summary
        if result.error:
            self._finish(task, "failed", f"error: {result.error}")
            return
        if not task.submit.options.evaluate:  # a subagent: its execution is the result
            task.status = "cancelled" if task.stop == "cancelled" else "accepted"
            task.stop = task.stop or "done"
            self._done(task, [])
            return
        # A budget or a cancel ends the task here: an evaluation would spend more of it.
        task.stop = task.stop or self._budget_hit(task)
        if task.stop:
            self._conclude(task, task.stop)
            return
        self._evaluate(task, result)

    def _on_eval_result(self, task: TaskRun, result: EvalResult) -> None:
        self._charge(task, "evaluator", result.usage)
        assert task.exec_result is not None
        snapshot = task.exec_result.snapshot
        previous = task.history[-1].score if task.history else None
        reports = [c.report() for c in result.checks]
        task.history.append(
            Iteration(task.iteration, result.score, snapshot, reports, result.tests)
        )
        task.findings = result.judge.findings
        decision = self._decide(task, result.score, previous)
        if decision == "quality" and result.tests == "could_not_run":
            decision = "unverified"  # never accepted on the judge alone (ends unaccepted)
        self._save_iteration(task, result, decision)
        if decision == "refine":
            self._progress(task, "refining", score=result.score)
            self._execute(task)
        else:
            self._conclude(task, decision)

    def _on_workspace_restore_result(self, task: TaskRun, result: WorkspaceRestoreResult) -> None:
        task.kept += result.kept
        self._done(task, result.files_changed)

    # --- the steps -----------------------------------------------------------

    def _execute(self, task: TaskRun) -> None:
        assert task.plan is not None
        task.iteration += 1
        task.exec_started = time.monotonic()
        budget = task.submit.options.budget_tokens
        self._request(
            task,
            "executor",
            ExecRequest(
                description=task.submit.description,
                cwd=task.submit.cwd,
                iteration=task.iteration,
                plan=task.plan,
                findings=task.findings,
                model=self._model(task, "executor"),
                permission_mode=task.submit.options.permission_mode,
                permission_rules=task.submit.options.permission_rules,
                token_budget=None if budget is None else max(1, budget - task.usage.tokens),
                team=task.submit.options.team,
                parent=task.submit.parent,
                subagent=not task.submit.options.evaluate,
                subtask=task.submit.subtask,
                agent=task.submit.options.agent,
                fresh_at=task.submit.fresh_at if task.iteration == 1 else None,
            ),
        )
        self._save_task(task, status="running")  # a resumed task knows its iteration
        self._progress(task, "executing")

    def _teamwork(self, task: TaskRun) -> None:
        """Hand the subtasks to the lead, with enough executors to run them at once."""
        assert task.plan is not None
        options = task.submit.options
        self._team_actors(task)
        task.iteration += 1
        task.exec_started = time.monotonic()
        self._request(
            task,
            "lead",
            TeamRun(
                task_id=task.id,
                description=task.submit.description,
                cwd=task.submit.cwd,
                plan=task.plan,
                options=options,
            ),
        )
        self._save_task(task, status="running")
        self._progress(task, "teamwork")

    def _team_actors(self, task: TaskRun) -> None:
        """Enough executors and evaluators to run ``team_size`` subtasks at once, and a lead."""
        size = task.submit.options.team_size or 1
        for role in ("executor", "evaluator"):
            if self._role_for(task, role) == role:  # no team members of that role: ours
                self._at_least(role, size)
        if self._role_for(task, "lead") == "lead":  # a team's own lead leads its runs
            self._at_least("lead", 1)

    def _evaluate(self, task: TaskRun, result: ExecResult) -> None:
        assert task.plan is not None
        self._request(
            task,
            "evaluator",
            EvalRequest(
                description=task.submit.description,
                cwd=task.submit.cwd,
                iteration=task.iteration,
                plan=task.plan,
                base=result.base,
                snapshot=result.snapshot,
                model=self._model(task, "evaluator"),
                skip_checks=task.submit.options.skip_checks,
                checks=task.submit.options.checks,
                run_checks=task.submit.options.run_checks,
                virtual_env=task.submit.options.virtual_env,
                subtask=task.submit.subtask,
            ),
        )
        self._progress(task, "evaluating")

    def _decide(self, task: TaskRun, score: float, previous: float | None) -> str:
        options = task.submit.options
        if task.stop:
            return task.stop
        if score >= options.quality:
            return "quality"
        budget = self._budget_hit(task)
        if budget:
            return budget
        if previous is not None and score < previous:
            return "regression"
        if previous is not None and score - previous < options.plateau:
            return "plateau"
        if task.iteration >= options.iterations:
            return "max_iterations"
        return "refine"

    def _conclude(self, task: TaskRun, decision: str, status: str | None = None) -> None:
        """Leave the user with the best iteration's files, then finish."""
        task.stop = task.stop or decision
        task.stop_deadline = None
        best = task.best
        if status is None:
            status = {"quality": "accepted", "cancelled": "cancelled"}.get(decision, "unaccepted")
        unmerged = [s for s in task.subtasks if s.status in ("failed", "cancelled", "conflict")]
        if status == "accepted" and unmerged:
            # The merged part passed, but some of the work is not in it: never "done".
            status, task.stop = "unaccepted", "unmerged"
        task.status = status
        self._save_task(task, status="running")  # the decision survives a restart
        if best is None or task.base is None:
            self._done(task, [])
            return
        self._progress(task, "restoring", score=best.score)
        restore = WorkspaceRestore(
            cwd=task.submit.cwd, base=task.base, snapshot=best.snapshot, subtask=task.submit.subtask
        )
        # The member that did the work puts it back (its pane shows the task's whole story).
        self._request(task, "executor", restore, member=task.executor)

    # --- budgets ---------------------------------------------------------------

    def _budget_hit(self, task: TaskRun) -> str | None:
        options = task.submit.options
        if options.budget_tokens is not None and task.usage.tokens >= options.budget_tokens:
            return "budget_tokens"
        if options.budget_usd is not None and task.usage.cost_usd >= options.budget_usd:
            return "budget_usd"
        if options.timeout is not None and time.monotonic() - task.started > options.timeout:
            return "budget_time"
        return None

    def _warn_budgets(self, task: TaskRun) -> None:
        """Publish budget.warning the first time a task passes BUDGET_WARNING of a budget."""
        options = task.submit.options
        spent = {
            "tokens": (task.usage.tokens, options.budget_tokens),
            "usd": (task.usage.cost_usd, options.budget_usd),
            "time": (time.monotonic() - task.started, options.timeout),
        }
        for budget, (used, limit) in spent.items():
            if limit and budget not in task.warned and used >= BUDGET_WARNING * limit:
                task.warned.add(budget)
                warning = BudgetWarning(
                    task_id=task.id,
                    budget=budget,  # type: ignore[arg-type]
                    used=used,
                    limit=limit,
                    fraction=used / limit,
                )
                self.outbox.post(warning, PUBLISH, task_id=task.id)

    def _over_budget(self, task: TaskRun) -> bool:
        hit = self._budget_hit(task)
        if hit is not None:
            self._conclude(task, hit)
        return hit is not None

    def _stop_soon(self, task: TaskRun, decision: str) -> None:
        task.stop = decision
        if task.pending is None:
            self._conclude(task, decision)
            return
        # Tell the executors to stop; conclude when the step answers, or after a grace.
        executor = "lead" if task.phase == "teamwork" else self._role_for(task, "executor")
        for name in self.supervisor.names_of(executor):
            self.outbox.post(TaskCancel(task_id=task.id), name, task_id=task.id)
        task.stop_deadline = time.monotonic() + _STOP_GRACE

    # --- ending ------------------------------------------------------------------

    def _finish(self, task: TaskRun, status: str, decision: str) -> None:
        """End a task that went wrong, still leaving the best iteration's files."""
        task.stop = decision
        task.status = status
        if task.history and task.base and task.phase != "restoring":
            self._conclude(task, decision, status)
        else:
            self._done(task, [])

    def _done(self, task: TaskRun, files_changed: list[str]) -> None:
        best = task.best
        status = task.status if task.status != "running" else "failed"
        done = TaskDone(
            task_id=task.id,
            status=status,  # type: ignore[arg-type]
            decision=task.stop or "error",
            score=best.score if best else None,
            iterations=task.iteration,
            tokens=task.usage.tokens,
            cost_usd=task.usage.cost_usd,
            files_changed=files_changed,
            summary=task.last_summary,
            subtasks=task.subtasks,
            parent=task.submit.parent,
            best_iteration=best.n if best else None,
            conflicts=sorted(set(task.kept)),
            checks=best.checks if best else [],
            tests=best.tests if best else None,
        )
        self._save_task(task, status=status, done=done)
        task.phase = "done"
        self._learn(task, done)
        self.tasks.pop(task.id, None)
        for waiting in self.work_trees.release(task):
            self._start_or_queue(waiting)
        # The last "done" progress first: task.done is a task's last event on the bus.
        self._progress(task, "done", score=done.score)
        self.outbox.post(done, PUBLISH, task_id=task.id)
        self.outbox.post(done, task.requester, task_id=task.id)

    def _learn(self, task: TaskRun, done: TaskDone) -> None:
        """Hand the record to the learner, and credit the skills the task was shown."""
        if not task.submit.options.evaluate:
            return  # a subagent's run has no scores to learn from
        if not task.submit.options.learn:
            return  # a replay, unless `shoal replay --learn`: it is an experiment, not the work
        models = task.submit.options.models
        record = TaskRecord(
            task_id=task.id,
            description=task.submit.description,
            cwd=task.submit.cwd,
            status=done.status,
            decision=done.decision,
            scores=[i.score for i in task.history],
            findings=task.findings,
            model=models.get("small") or models.get("default"),
        )
        self.outbox.post(LearnRequest(record=record), ROLE_PREFIX + "learner", task_id=task.id)
        self.finished += 1
        every = self.settings.mine_every
        if every and self.finished % every == 0:
            self._mine_model = record.model  # mined at the next idle tick (see tick)
            self._mine_due = True
        self.recorder.write(*skills.credit(task.id, done.score or 0.0, _ts(time.time())))

    # --- plumbing ------------------------------------------------------------------

    def _request(
        self, task: TaskRun, role: str, payload: Payload, member: str | None = None
    ) -> None:
        """Ask an actor of ``role`` (``member`` itself if it still takes work)."""
        if task.pending is not None:
            self._waiting.pop(task.pending, None)  # its answer no longer matters
        target = self._role_for(task, role)
        if member is not None and self.supervisor.is_actor(member):
            recipient = member
        else:
            if target == role:  # ours: none was started for a team task whose team had its own
                self._at_least(role, 1)
            recipient = ROLE_PREFIX + target
        env = self.outbox.post(payload, recipient, task_id=task.id)
        task.pending = env.id
        self._waiting[env.id] = task.id

    def _executor_for_subagent(self) -> None:
        """A subagent runs while its delegator waits: it needs an executor of its own."""
        busy = sum(1 for t in self.tasks.values() if t.phase in ("executing", "refining"))
        self._at_least("executor", min(busy + 1, MAX_EXECUTORS))

    def _at_least(self, role: str, count: int) -> None:
        missing = count - len(self.supervisor.names_of(role))
        if missing > 0:
            self.supervisor.spawn(role, missing)

    def _role_for(self, task: TaskRun, role: str) -> str:
        """A team's own member of ``role`` when the task runs for a team that has one.

        Only members that take work count: while a team goes down its stopping members
        take nothing new, and the task's next step goes to shoal's own actors instead.
        """
        team = task.submit.options.team
        agent = task.submit.options.agent
        if team and agent and role == "executor":  # the team's member acting as that agent
            member = f"executor.{agent.name}@{team}"
            if self.supervisor.taking_work(member):
                return member
        if team and self.supervisor.taking_work(f"{role}@{team}"):
            return f"{role}@{team}"
        return role

    def _ensure_actors(self, team: str | None = None) -> None:
        """shoal's own actors of each loop role, but none a task's team has already."""
        for role in LOOP_ROLES:
            if not (team and self.supervisor.taking_work(f"{role}@{team}")):
                self._at_least(role, 1)

    def _model(self, task: TaskRun, role: str) -> ModelChoice:
        models = task.submit.options.models
        choice = models.get(role) or models.get("default")
        if choice is None:
            raise ValueError(f"no model configured for the {role}")
        return choice

    def _charge(self, task: TaskRun, role: str, usage: Usage) -> None:
        task.usage = task.usage + usage
        self._warn_budgets(task)
        model = self._model(task, role).model
        now = time.time()
        self.recorder.write(
            *task_rows.usage(
                _ts(now),
                task.id,
                role,
                model,
                usage.calls,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cost_usd,
            )
        )
        recorded = UsageRecorded(
            at=now,
            task_id=task.id,
            role=role,
            model=model,
            calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
        )
        self.outbox.post(recorded, PUBLISH, task_id=task.id)  # live cost views

    def _progress(
        self, task: TaskRun, phase: str, score: float | None = None, detail: str = ""
    ) -> None:
        task.phase = phase
        self.outbox.post(
            TaskProgress(
                task_id=task.id,
                phase=phase,  # type: ignore[arg-type]
                iteration=task.iteration,
                score=score,  # type: ignore[arg-type]
                tokens=task.usage.tokens,
                cost_usd=task.usage.cost_usd,
                detail=detail,
            ),
            PUBLISH,
            task_id=task.id,
        )

    def _save_task(self, task: TaskRun, status: str, done: TaskDone | None = None) -> None:
        now = time.time()
        best = task.best
        changing = [
            status,
            "done" if done else task.phase,
            done.decision if done else task.stop,
            best.score if best else None,
            best.n if best else None,
            task.iteration,
            task.usage.tokens,
            task.usage.cost_usd,
            to_json(task.plan).decode() if task.plan else None,
            task.base,
            json.dumps(done.files_changed) if done else None,
            done.summary if done else task.last_summary,
            _ts(now),
            _ts(now) if done else None,
            json.dumps([to_dict(o) for o in task.subtasks]) if task.subtasks else None,
        ]
        if task.saved:
            # An UPDATE costs DuckDB a third of an INSERT OR REPLACE, and a task is saved
            # at every step: the recorder's largest cost in a busy orchestrator.
            self.recorder.write(*task_rows.update(task.id, changing))
            return
        task.saved = True
        fixed = [
            task.id,
            task.submit.description,
            task.submit.cwd,
            to_json(task.submit.options).decode(),
            task.requester,
            _ts(task.created_at),
            task.submit.parent,
        ]
        self.recorder.write(*task_rows.insert(fixed, changing))

    def _save_iteration(self, task: TaskRun, result: EvalResult, decision: str) -> None:
        assert task.exec_result is not None
        ex = task.exec_result
        self.recorder.write(
            *task_rows.iteration(
                [
                    task.id,
                    task.iteration,
                    result.score,
                    result.judge.score,
                    json.dumps(result.judge.dimensions),
                    json.dumps([to_dict(c) for c in result.checks]),
                    ex.snapshot,
                    ex.summary,
                    ex.tool_calls,
                    ex.usage.tokens + result.usage.tokens,
                    ex.usage.cost_usd + result.usage.cost_usd,
                    time.monotonic() - task.exec_started,
                    decision,
                    _ts(time.time()),
                ]
            )
        )
        for f in result.judge.findings:
            self.recorder.write(
                *task_rows.finding(task.id, task.iteration, f.severity, f.title, f.detail, f.fix)
            )
        self._save_task(task, status="running")
