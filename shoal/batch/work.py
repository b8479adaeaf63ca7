"""One unit's work, in a worker process (a Ray task or a local pool process).

The unit gets an isolated clone of its repository at the batch's base commit,
then the one agent core (:class:`shoal.agent.Agent`, with the executor's
opening and workspace tools) runs the instruction there. The change is snapshotted and turned into a
binary-safe patch; the verify command runs in the clone; where an evaluator
model is configured and judging is on, the evaluator's checks and judge score
the change. Failures of the unit itself (a model error, a bad clone) come back
as a ``failed`` result: only a dying worker makes the driver retry.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from shoal.batch.units import UnitResult, UnitSpec
from shoal.llm.env import set_litellm_env
from shoal.messages.base import from_json, to_json
from shoal.messages.memory import ContextResult
from shoal.messages.tasks import ExecRequest, Usage
from shoal.paths import Home
from shoal.workspace.git import WorkspaceError, git, without_redirects

log = logging.getLogger(__name__)

_OUTPUT_LIMIT = 4_000


def run_unit(spec_json: str) -> str:
    """Do one unit; JSON in, JSON out. Never raises for the unit's own failures."""
    from shoal.cluster.ray_runtime import restore_home

    restore_home()
    set_litellm_env()
    # Everything the unit runs (the tool loop's shell and git, verify, the evaluator's
    # checks) works in its clone: a GIT_DIR or GIT_WORK_TREE inherited from the shell
    # that started the batch would point it at the user's repository instead. This
    # process only runs units, so the variables go for good.
    for name in set(os.environ) - set(without_redirects(os.environ)):
        del os.environ[name]
    spec = from_json(UnitSpec, spec_json)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="shoal-unit-"))
    try:
        result = _run(spec, scratch)
    except Exception as exc:
        log.exception("unit %s failed", spec.name)
        result = UnitResult(
            unit_id=spec.unit_id, status="failed", error=f"{type(exc).__name__}: {exc}"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.duration_s = round(time.monotonic() - started, 3)
    result.worker = worker_name()
    return to_json(result).decode()


def _run(spec: UnitSpec, scratch: Path) -> UnitResult:
    from shoal.workspace import snapshots

    clone = _clone(spec, scratch / "work")
    home = Home(scratch / "home")
    home.root.mkdir(mode=0o700)
    task_id = f"batch-{spec.unit_id}"
    base = snapshots.base_snapshot(clone, task_id)
    # The driver recalled the context once for the whole batch: a thousand units, one recall.
    summary, usage, error = _execute(_request(spec, clone), ContextResult(text=spec.context), home)
    snap = snapshots.snapshot(clone, task_id, 1)
    changed = snapshots.changed_files(clone, base, snap)
    result = UnitResult(
        unit_id=spec.unit_id,
        status="failed" if error else "rejected",
        files_changed=changed,
        diff=_patch(clone, base, snap),
        summary=summary,
        error=error,
    )
    if not error and not changed:
        result.error = "the unit's change is empty"
    if not error and changed and spec.verify:
        _verify(spec, clone, result)
    if not error and changed and result.verify_passed is not False and spec.judge:
        result.score, judged, unverified = _evaluate(home, spec, clone, base, snap)
        usage = usage + judged
        result.error = result.error or unverified
    if (
        not result.error
        and changed
        and result.verify_passed is not False
        and (result.score is None or result.score >= spec.quality)
    ):
        result.status = "accepted"
    result.tokens, result.cost_usd = usage.tokens, usage.cost_usd
    return result


def _request(spec: UnitSpec, clone: Path) -> ExecRequest:
    from shoal.messages.tasks import Plan, Step

    return ExecRequest(
        description=spec.description(),
        cwd=str(clone),
        iteration=1,
        plan=Plan(steps=[Step(title=spec.instruction[:200], detail=f"unit {spec.name}")]),
        model=spec.models["executor"],
        permission_mode=spec.permission_mode,
        max_turns=spec.max_turns,
        token_budget=spec.token_budget,
        subagent=True,  # a unit works alone: no delegation
    )


def _verify(spec: UnitSpec, clone: Path, result: UnitResult) -> None:
    """The batch's verify command on the unit's change, into ``result``."""
    from shoal import process
    from shoal.actors.llm import clip

    env = {**os.environ, "SHOAL_UNIT": spec.name, "SHOAL_UNIT_FILES": " ".join(spec.files)}
    try:
        outcome = process.run(
            spec.verify, cwd=clone, timeout=spec.verify_timeout, env=env, keep="tail"
        )
    except OSError as exc:
        result.verify_passed = False
        result.verify_output = f"cannot run {spec.verify}: {exc.strerror or exc}"
        return
    result.verify_passed = outcome.exit_code == 0 and not outcome.timed_out
    result.verify_output = clip(outcome.output, _OUTPUT_LIMIT)


def _execute(
    request: ExecRequest, context: ContextResult, home: Home
) -> tuple[str, Usage, str | None]:
    """The agent on the unit's clone, alone: no cancel, no inbox, no one watching.
    (summary, usage, the model's failure or None)."""
    from shoal.actors.executor import opening, workspace_toolbox
    from shoal.actors.llm import model_config
    from shoal.agent import Agent, AgentStop, ModelError, QuietHost
    from shoal.agent.tools import finish

    toolbox = workspace_toolbox(home.root / "outputs", request)
    toolbox.add([finish()])
    agent = Agent(
        QuietHost(),
        toolbox,
        model_config(request.model, "executor"),
        max_turns=request.max_turns,
        token_budget=request.token_budget,
    )
    error = None
    try:
        agent.run(opening(request, context))
    except AgentStop:
        pass
    except ModelError as exc:
        error = str(exc)
    finally:
        toolbox.close()
    return agent.text, agent.usage, error


def _clone(spec: UnitSpec, dest: Path) -> Path:
    source, local = _clone_source(spec)
    # --shared borrows the source's objects: a clone costs a checkout, not a copy.
    shared = ["--shared"] if local else []
    git(dest.parent, "clone", "--quiet", "--no-checkout", *shared, source, str(dest))
    if spec.base and not local and not _has_commit(dest, spec.base):
        # A server hands out what its refs reach; ask for the commit itself (most allow it).
        try:
            git(dest, "fetch", "--quiet", "origin", spec.base)
        except WorkspaceError:
            raise WorkspaceError(
                f"{source} does not have the batch's base commit {spec.base[:12]}; "
                "push it there and run the batch again"
            ) from None
    git(dest, "checkout", "--quiet", "--detach", spec.base or "HEAD")
    return dest


def _is_url(source: str) -> bool:
    return "://" in source or source.startswith("git@")


def _clone_source(spec: UnitSpec) -> tuple[str, bool]:
    """What this worker clones: the path when its node has it (with the base commit),
    else the batch's URL of it; and whether that is a local path."""
    if _is_url(spec.source):
        return spec.source, False
    path = Path(spec.source)
    if path.is_dir() and _has_commit(path, spec.base or "HEAD"):
        return spec.source, True
    if spec.url:
        return spec.url, not _is_url(spec.url)
    raise WorkspaceError(
        f"{spec.source} is not on this worker's node ({worker_name()}), or not at the "
        "batch's base commit; give the batch a URL the workers can clone (--repo-url)"
    )


def _has_commit(repo: Path, rev: str) -> bool:
    try:
        git(repo, "cat-file", "-e", f"{rev}^{{commit}}")
    except WorkspaceError:
        return False
    return True


def worker_name() -> str:
    """Where a unit runs: host and pid, and the Ray node when it runs in a Ray worker."""
    import sys

    name = f"{socket.gethostname()}:{os.getpid()}"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        name += f" node {ray.get_runtime_context().get_node_id()}"
    return name


def _patch(clone: Path, base: str, snap: str) -> str:
    out = git(
        clone,
        "diff-tree",
        "-r",
        "-p",
        "--binary",
        "--full-index",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        base,
        snap,
    )
    return out.decode()  # UnicodeDecodeError: a unit's own failure, reported as such


def _evaluate(
    home: Home, spec: UnitSpec, clone: Path, base: str, snap: str
) -> tuple[float, Usage, str | None]:
    """The evaluator's own checks and judge, on this unit's change; and why the unit
    cannot be accepted on the judge alone (its tests could not run), if so."""
    from shoal.actors.evaluator import evaluate
    from shoal.messages.tasks import EvalRequest, Plan, Step

    request = EvalRequest(
        description=spec.description(),
        cwd=str(clone),
        iteration=1,
        plan=Plan(steps=[Step(title=spec.instruction[:200])]),
        base=base,
        snapshot=snap,
        model=spec.models["evaluator"],
        checks=spec.checks,
        run_checks=spec.run_checks,
    )
    result = evaluate(request, home.root / "skills", log)
    unverified = None
    if result.tests == "could_not_run":
        reasons = "; ".join(c.reason for c in result.checks if c.status == "could_not_run")
        unverified = f"unverified: the tests could not run: {reasons}"
    return result.score, result.usage, unverified
