"""The batch as a whole: split, record, run with bounded concurrency, retry, apply, summarise.

The driver is the ``shoal batch`` process. It never opens the database for
writing: the batch, each finished unit and the end are messages to the
orchestrator (``batch.start``, ``batch.unit``, ``batch.end``), which records
them. Resume reads the rows back through named queries and runs only the
units that have no outcome yet. A unit whose worker died runs again, up to
``retries`` more times; after that it is ``lost``. An accepted unit whose patch
cannot be committed to the batch's branch (another unit changed the same
lines, the branch cannot be written) becomes a ``conflict``: recorded with
git's reason, its patch file kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta

from shoal.batch.units import BatchError, UnitKind, UnitResult, UnitSpec
from shoal.messages.base import to_dict
from shoal.messages.batch import BatchUnit, BatchUnitRow, BatchUnitStarted
from shoal.messages.tasks import CheckSetting, ModelChoice

if TYPE_CHECKING:
    from shoal.batch.backends import Backend, Finished
    from shoal.client import Channel
    from shoal.messages.batch import BatchStart
    from shoal.paths import Home

log = logging.getLogger(__name__)

_RECORD_TIMEOUT = 60.0
_FINAL = ("accepted", "rejected", "failed", "lost", "conflict")


class BatchSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How a batch was asked for; recorded with it, so ``resume`` can run the rest."""

    instruction: str
    files: str | None = None
    repos: str | None = None
    unit: UnitKind = "file"
    verify: str | None = None
    verify_timeout: float = 600.0
    judge: bool = False
    quality: float = 0.8
    models: dict[str, ModelChoice]
    permission_mode: str = "accept-edits"
    max_turns: Annotated[int, Meta(ge=1)] = 30
    token_budget: int | None = None
    workers: Annotated[int, Meta(ge=1)] = 4
    retries: Annotated[int, Meta(ge=0)] = 2
    dry_run: bool = False
    bases: dict[str, str | None] = msgspec.field(default_factory=dict)
    """Source -> the commit every unit of it starts from (None: the source's HEAD)."""
    urls: dict[str, str] = msgspec.field(default_factory=dict)
    """Source path -> a URL of it for workers whose node does not have the path (``--repo-url``)."""
    checks: list[CheckSetting] = msgspec.field(default_factory=list)
    """The evaluator's checks (``--check``, ``[checks]``); empty: the detected ones."""
    run_checks: bool = True


@dataclass
class Outcome:
    row: BatchUnitRow
    status: str = "pending"
    attempts: int = 0
    result: UnitResult | None = None
    error: str | None = None
    score: float | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    duration_s: float | None = None
    verify_passed: bool | None = None
    diff: str = ""
    recorded: bool = True


@dataclass
class Summary:
    batch_id: str
    status: Literal["done", "interrupted"]
    backend: str
    outcomes: list[Outcome]
    ran: int = 0
    duration_s: float = 0.0
    backend_start_s: float = 0.0
    branches: dict[str, str] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    """Accepted units not committed to a branch: conflicts, and units of a URL source."""
    patches: str = ""

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((*_FINAL, "pending"), 0)
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        return counts

    def as_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "backend": self.backend,
            "units": len(self.outcomes),
            **self.counts(),
            "ran": self.ran,
            "tokens": sum(o.tokens for o in self.outcomes),
            "cost_usd": round(sum(o.cost_usd for o in self.outcomes), 6),
            "duration_s": round(self.duration_s, 3),
            "backend_start_s": round(self.backend_start_s, 3),
            "branches": self.branches,
            "left_out": self.left_out,
            "patches": self.patches,
            "unit_results": [
                {
                    "unit_id": o.row.unit_id,
                    "name": o.row.name,
                    "status": o.status,
                    "attempts": o.attempts,
                    "score": o.score,
                    "verify_passed": o.verify_passed,
                    "tokens": o.tokens,
                    "cost_usd": o.cost_usd,
                    "duration_s": o.duration_s,
                    "error": o.error,
                }
                for o in self.outcomes
            ],
        }


class Recorder:
    """Sends the batch's records to the orchestrator without waiting; collects the replies."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._waiting: set[str] = set()
        self.failures: list[str] = []

    def send(self, payload: Any) -> None:
        self._waiting.add(self.channel.send(payload).id)

    def request(self, payload: Any) -> None:
        self.channel.request(payload, timeout=_RECORD_TIMEOUT)

    def publish(self, payload: Any) -> None:
        """An event for live views (the dashboard): on the bus, no reply."""
        from shoal.mailbox.envelope import PUBLISH

        self.channel.send(payload, to=PUBLISH)

    def collect(self, timeout: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while self._waiting:
            env, _ = self.channel.receive(max(0.0, deadline - time.monotonic()))
            if env is None:
                return
            if env.reply_to in self._waiting:
                self._waiting.discard(env.reply_to)
                if env.kind == "mailbox.error":
                    self.failures.append(str(env.payload.get("message")))
                    log.error("a batch record was refused: %s", env.payload)

    def flush(self) -> None:
        """Wait until every record sent so far is written (or time runs out)."""
        self.collect(_RECORD_TIMEOUT)
        if self._waiting:
            raise BatchError(
                f"the orchestrator did not confirm {len(self._waiting)} batch record(s)"
            )


class Progress:
    """A rich progress bar on stderr: counts, rate, ETA."""

    def __init__(self, outcomes: list[Outcome], quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.t0 = time.monotonic()
        self.start_done = _finished(outcomes)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True, highlight=False),
            disable=quiet,
        )
        self.task = self.bar.add_task(
            "batch", total=len(outcomes), completed=self.start_done, rate="- units/s"
        )
        self.bar.start()

    def update(self, outcomes: list[Outcome]) -> None:
        counts = dict.fromkeys(_FINAL, 0)
        for o in outcomes:
            if o.status in counts:
                counts[o.status] += 1
        done = sum(counts.values())
        rate = (done - self.start_done) / max(1e-6, time.monotonic() - self.t0)
        description = f"batch ✓{counts['accepted']} ✗{counts['rejected']} !{counts['failed']}"
        if counts["lost"]:
            description += f" lost {counts['lost']}"
        self.bar.update(
            self.task, completed=done, description=description, rate=f"{rate:.2f} units/s"
        )

    def stop(self) -> None:
        self.bar.stop()


def run_batch(
    home: Home,
    batch_id: str,
    spec: BatchSpec,
    outcomes: list[Outcome],
    backend: Backend,
    *,
    quiet: bool,
    new: bool,
) -> Summary:
    """Run every unit without an outcome; record as it goes; apply at the end."""
    from shoal.client import Client
    from shoal.messages.batch import BatchEnd

    client = Client(home)
    client.start(same_settings=False)
    t0 = time.monotonic()
    patches = home.root / "batches" / batch_id
    patches.parent.mkdir(mode=0o700, exist_ok=True)
    patches.mkdir(mode=0o700, exist_ok=True)
    summary = Summary(batch_id, "interrupted", backend.name, outcomes, patches=str(patches))
    todo = deque(o for o in outcomes if o.status not in _FINAL)
    with client.channel() as channel:
        records = Recorder(channel)
        records.request(_batch_start(batch_id, spec, backend, outcomes if new else []))
        context = _recall(channel, spec) if todo else ""
        progress = Progress(outcomes, quiet)
        try:
            if todo:
                summary.backend_start_s = _start(backend)
            summary.ran = _drive(
                backend, spec, batch_id, outcomes, context, records, progress, patches
            )
            progress.stop()
            records.flush()
            if not spec.dry_run:
                _apply(batch_id, spec, outcomes, patches, records, summary)
            summary.status = "done"
        except KeyboardInterrupt:
            progress.stop()
            backend.cancel_all()
            with contextlib.suppress(Exception):
                records.flush()
        except BatchError:
            progress.stop()
            records.request(BatchEnd(batch_id=batch_id, status="interrupted"))
            raise
        finally:
            with contextlib.suppress(Exception):
                backend.close()
        summary.duration_s = time.monotonic() - t0
        records.request(
            BatchEnd(batch_id=batch_id, status=summary.status, applied=summary.branches)
        )
    return summary


def _batch_start(
    batch_id: str, spec: BatchSpec, backend: Backend, new: list[Outcome]
) -> BatchStart:
    """The batch's first record; ``new``: the units to record (none when resuming)."""
    from shoal.messages.batch import BatchStart

    return BatchStart(
        batch_id=batch_id,
        instruction=spec.instruction,
        spec=to_dict(spec),
        backend=backend.name,  # type: ignore[arg-type]
        units=[o.row for o in new],
    )


def _apply(
    batch_id: str,
    spec: BatchSpec,
    outcomes: list[Outcome],
    patches: Path,
    records: Recorder,
    summary: Summary,
) -> None:
    """Commit the accepted patches to the batch's branch; record the ones that conflict."""
    summary.branches, unapplied = apply_accepted(batch_id, spec, outcomes, patches)
    summary.left_out = [o.row.name for o in unapplied]
    for o in unapplied:
        if o.status == "conflict":
            records.send(_record(batch_id, o))
    records.flush()


def _start(backend: Backend) -> float:
    try:
        return backend.start()
    except Exception as exc:  # Ray missing, a cluster address nobody answers on, ...
        first = str(exc).strip().splitlines()
        raise BatchError(
            f"the {backend.name} backend did not start: {first[0] if first else repr(exc)}; "
            "`shoal batch resume` continues once it does"
        ) from exc


def _drive(
    backend: Backend,
    spec: BatchSpec,
    batch_id: str,
    outcomes: list[Outcome],
    context: str,
    records: Recorder,
    progress: Progress,
    patches: Path,
) -> int:
    """Run the unfinished units, at most ``spec.workers`` at a time; returns the runs started."""
    todo = deque(o for o in outcomes if o.status not in _FINAL)
    in_flight: dict[str, Outcome] = {}
    ran = 0
    while todo or in_flight:
        while todo and len(in_flight) < spec.workers:
            outcome = todo.popleft()
            outcome.attempts += 1
            ran += 1
            in_flight[outcome.row.unit_id] = outcome
            backend.submit(_unit_spec(batch_id, spec, outcome, context))
            row = outcome.row
            records.publish(BatchUnitStarted(batch_id=batch_id, unit_id=row.unit_id,
                                             name=row.name, attempt=outcome.attempts))  # fmt: skip
        for finished in backend.wait(0.2):
            outcome = in_flight.pop(finished.spec.unit_id)
            if finished.died is not None:
                log.warning("unit %s: worker died (%s)", outcome.row.name, finished.died)
                if outcome.attempts <= spec.retries:
                    todo.appendleft(outcome)
                    continue
                outcome.status, outcome.error = "lost", f"its worker died: {finished.died}"
            else:
                _take(outcome, finished, patches)
            records.send(_record(batch_id, outcome))
        records.collect()
        progress.update(outcomes)
    return ran


def _finished(outcomes: list[Outcome]) -> int:
    return sum(o.status in _FINAL for o in outcomes)


def _take(outcome: Outcome, finished: Finished, patches: Path) -> None:
    result = finished.result
    assert result is not None
    outcome.result = result
    outcome.status = result.status
    outcome.error = result.error
    outcome.score = result.score
    outcome.tokens, outcome.cost_usd = result.tokens, result.cost_usd
    outcome.duration_s = result.duration_s
    outcome.verify_passed = result.verify_passed
    outcome.diff = result.diff
    if result.diff:
        path = patches / f"{_safe(outcome.row.name)}.patch"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(result.diff)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._")[:120]


def _record(batch_id: str, o: Outcome) -> BatchUnit:
    r = o.result
    return BatchUnit(
        batch_id=batch_id,
        unit_id=o.row.unit_id,
        status=o.status,  # type: ignore[arg-type]
        attempts=o.attempts,
        score=o.score,
        verify_passed=o.verify_passed,
        diff=o.diff,
        files_changed=r.files_changed if r else [],
        tokens=o.tokens,
        cost_usd=o.cost_usd,
        duration_s=o.duration_s,
        summary=(r.summary if r else "")[:4000],
        error=o.error,
        worker=r.worker if r else None,
    )


def _unit_spec(batch_id: str, spec: BatchSpec, o: Outcome, context: str) -> UnitSpec:
    return UnitSpec(
        batch_id=batch_id,
        unit_id=o.row.unit_id,
        name=o.row.name,
        source=o.row.source,
        url=spec.urls.get(o.row.source),
        base=spec.bases.get(o.row.source),
        files=o.row.files,
        instruction=spec.instruction,
        verify=spec.verify,
        verify_timeout=spec.verify_timeout,
        models=spec.models,
        judge=spec.judge,
        checks=spec.checks,
        run_checks=spec.run_checks,
        quality=spec.quality,
        permission_mode=spec.permission_mode,
        max_turns=spec.max_turns,
        token_budget=spec.token_budget,
        context=context,
        attempt=o.attempts,
    )


def _recall(channel: Channel, spec: BatchSpec) -> str:
    """Learnings and skills for the instruction, asked once for the whole batch."""
    from shoal.mailbox.errors import MailboxError
    from shoal.messages.memory import ContextRequest, ContextResult

    cwd = next(iter(spec.bases), os.getcwd())
    try:
        reply = channel.request(
            ContextRequest(text=spec.instruction, cwd=cwd, role="executor"), timeout=30
        )
    except MailboxError as exc:
        log.warning("no recalled context for the batch: %s", exc)
        return ""
    return reply.text if isinstance(reply, ContextResult) else ""


def apply_accepted(
    batch_id: str, spec: BatchSpec, outcomes: list[Outcome], patches: Path
) -> tuple[dict[str, str], list[Outcome]]:
    """Accepted patches onto ``shoal/batch-<id>``, one branch per local repository.

    Returns the branches and the accepted outcomes not applied: those of a URL
    source (their patch files are the result) and conflicts, whose status and
    error this sets.
    """
    from shoal.batch.apply import apply_patches, branch_name
    from shoal.workspace.git import WorkspaceError

    by_source: dict[str, list[Outcome]] = {}
    for o in sorted(outcomes, key=lambda o: o.row.name):
        if o.status == "accepted" and o.diff:
            by_source.setdefault(o.row.source, []).append(o)
    branches: dict[str, str] = {}
    unapplied: list[Outcome] = []
    branch = branch_name(batch_id)
    for source, items in by_source.items():
        base = spec.bases.get(source)
        if base is None or not Path(source).is_dir():
            unapplied += items  # a URL: its patches are the files
            continue
        message = f"shoal batch {batch_id}: {spec.instruction[:60]}"
        try:
            left_out = apply_patches(
                Path(source), base, branch, [(o.row.name, o.diff) for o in items], message
            )
        except WorkspaceError as exc:
            left_out = dict.fromkeys((o.row.name for o in items), str(exc))
        else:
            branches[source] = branch
        for o in items:
            if o.row.name in left_out:
                o.status = "conflict"
                path = patches / f"{_safe(o.row.name)}.patch"
                o.error = f"not committed to {branch}: {left_out[o.row.name]}; the patch is {path}"
                unapplied.append(o)
    return branches, unapplied


def load_outcomes(rows: list[dict[str, Any]]) -> list[Outcome]:
    """Outcomes as recorded (for resume and status)."""
    outcomes = []
    for r in rows:
        row = BatchUnitRow(
            unit_id=r["unit_id"], name=r["name"], source=r["source"], files=json.loads(r["files"])
        )
        outcomes.append(
            Outcome(
                row,
                status=r["status"],
                attempts=r["attempts"],
                error=r["error"],
                score=r["score"],
                tokens=r["tokens"] or 0,
                cost_usd=r["cost_usd"] or 0.0,
                duration_s=r["duration_s"],
                verify_passed=r["verify_passed"],
                diff=r.get("diff") or "",
            )
        )
    return outcomes


def interrupted_note(summary: Summary) -> str:
    counts = summary.counts()
    finished = len(summary.outcomes) - counts["pending"]
    return (
        f"interrupted: {finished} of {len(summary.outcomes)} units finished; "
        f"`shoal batch resume {summary.batch_id}` runs the rest"
    )


def stderr(text: str) -> None:
    sys.stderr.write(f"shoal: {text}\n")
