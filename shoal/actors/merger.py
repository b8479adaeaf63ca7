"""Merging a team run's finished subtasks into its integration branch, on a thread of its own.

The lead's scheduler hands each finished subtask to the merger and goes back to
starting subtasks: a merge (commit, merge, maybe a resolver child task) never
keeps a freed executor waiting. A subtask's own worktree is committed as soon
as it is handed over, beside the others' (each in its own worktree: the end of
a wave of four waited for four commits one after another). Merges happen one at
a time, in the order the subtasks were handed over (their dependency order, as
the scheduler starts a subtask only once what it depends on is merged). After
each one the merger wakes the scheduler, whose waiting subtasks may have become
ready.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from shoal.background import lower_this_thread
from shoal.messages.base import replace
from shoal.messages.tasks import Plan, Step, Subtask, TaskDone, TaskSubmit, Usage
from shoal.workspace import worktrees

if TYPE_CHECKING:
    from shoal.actors.lead import Run


class Merger:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.error: Exception | None = None  # the run ends with it (raised by the scheduler)
        self._jobs: queue.Queue[tuple[Subtask, Future[None]] | None] = queue.Queue()
        self._commits = ThreadPoolExecutor(
            max(1, run.size), thread_name_prefix="commit", initializer=lower_this_thread
        )
        self._lock = threading.Lock()
        self._in_flight = 0
        # Children the scheduler did not start: a resolver's end is among them.
        self._ended: queue.Queue[TaskDone] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"merge-{run.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, subtask: Subtask) -> None:
        """Commit the subtask's worktree and merge its branch (soon, on the merger's thread)."""
        with self._lock:
            self._in_flight += 1
        self._jobs.put((subtask, self._commits.submit(self._commit, subtask)))

    def busy(self) -> bool:
        """Merges handed over and not finished yet."""
        with self._lock:
            return self._in_flight > 0

    def offer(self, done: TaskDone) -> None:
        """A child ended that the scheduler did not start (the resolver waits for its own)."""
        self._ended.put(done)

    def close(self) -> None:
        """Finish the merges handed over, then stop the thread."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self._commits.shutdown()

    def _loop(self) -> None:
        # Merging waits for nobody's next step (until the last one): the executors
        # starting the next subtasks go first when both want the CPU.
        lower_this_thread()
        while (job := self._jobs.get()) is not None:
            subtask, committed = job
            try:
                committed.result()
                if self.error is None:  # after a failure the run ends: no more git work
                    self._merge(subtask)
            except Exception as exc:  # the scheduler raises it; the thread takes the rest
                self.error = self.error or exc
            finally:
                with self._lock:
                    self._in_flight -= 1
                self.run.done.put(None)  # wake the scheduler: dependents may be ready

    def _commit(self, subtask: Subtask) -> None:
        run = self.run
        if self.error is not None:  # the run ends: no more git work
            return
        path = run.root / subtask.id
        worktrees.commit_everything(
            path, f"{subtask.id}: {subtask.title}\n\nshoal team run {run.id}"
        )
        if not run.request.options.keep_worktrees:
            # Its branch holds the work now; deleted here, it is not left for the end
            # of the run, where the final evaluation waits for the cleanup (whose one
            # prune makes git forget them all).
            worktrees.discard(path)

    def _merge(self, subtask: Subtask) -> None:
        run = self.run
        branch = worktrees.branch_name(run.id, subtask.id)
        merge = worktrees.merge(run.integration, branch, f"Merge subtask {subtask.id}")
        if merge.ok:
            run.merged.add(subtask.id)
            run.progress("merge", subtask.id, branch)
            return
        run.progress("resolve", subtask.id, "conflicts in " + ", ".join(merge.conflicts))
        left = self._resolve(subtask, merge.conflicts)
        if left:
            worktrees.abort_merge(run.integration)
            detail = "conflicts in " + ", ".join(left)
            run.update(subtask.id, status="conflict", detail=detail)
            run.progress("conflict", subtask.id, f"{detail}; kept on {branch}")
            return
        worktrees.conclude_merge(run.integration)
        run.merged.add(subtask.id)
        run.progress("merge", subtask.id, f"{branch}, conflicts resolved")

    def _resolve(self, subtask: Subtask, files: list[str]) -> list[str]:
        """Give the conflicted merge to an executor; return the files still conflicted."""
        run = self.run
        description = (
            f"Resolve the merge conflicts of subtask {subtask.id} ({subtask.title}) in "
            f"{', '.join(files)}: edit each file so no conflict markers remain and both "
            f"sides' changes are kept where they do not contradict (task: "
            f"{run.request.description})."
        )
        step = Step(title="resolve merge conflicts", detail=", ".join(files))
        options = replace(
            run.request.options,
            team_size=None,
            iterations=1,
            skip_checks=run.failing_before,
        )
        submit = TaskSubmit(
            description=description,
            cwd=str(run.integration),
            options=options,
            plan=Plan(steps=[step]),
            parent=run.id,
        )
        try:
            child = run.lead.children.submit(submit, run.id)
        except (RuntimeError, TimeoutError):
            return files
        deadline = time.monotonic() + (options.timeout or 1800)
        while time.monotonic() < deadline and not run.lead.cancelled(run.id):
            try:
                done = self._ended.get(timeout=1.0)
            except queue.Empty:
                continue
            if done.task_id == child:  # others: an earlier resolver given up on
                run.charge(Usage(prompt_tokens=done.tokens, cost_usd=done.cost_usd))
                break
        return worktrees.with_markers(run.integration, files)
