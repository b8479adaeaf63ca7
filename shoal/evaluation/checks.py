"""The project's own tests and linters: what they are, running them, scoring the results.

:func:`find` (in :mod:`shoal.evaluation.detection`) finds what a repository
already uses, each check with the project's own interpreter or package manager
(:mod:`shoal.evaluation.environment`); configured checks (``[checks]``,
``--check``) replace the detected ones of their kind. A check found but not
runnable here keeps its ``problem`` and comes back ``could_not_run`` with the
reason and the fix: never dropped, never a pass. :func:`detect` is the subset
that can run.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from shoal import process

if TYPE_CHECKING:
    from shoal.messages.tasks import CheckSetting

CheckKind = Literal["test", "lint"]
Status = Literal["passed", "failed", "could_not_run"]

OUTPUT_LIMIT = 20_000
"""Characters of output kept per run (the tail, where summaries are)."""

UNKNOWN_PROBLEMS = 10
"""Problems assumed for a failed lint whose output gives no count (scores 0.5)."""

PYTEST_ARGS = ("-m", "pytest", "-q", "-x", "--no-header", "-p", "no:cacheprovider")


class Check(BaseModel):
    """One command that checks the repository."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """What it is, for findings and logs: "pytest", "ruff", "npm test", "test command"."""

    kind: CheckKind
    """"test" or "lint": which score the result counts toward."""

    command: list[str] | str
    """An argv, or a string run by /bin/sh (configured overrides are strings)."""

    cwd: Path
    """The directory it runs in: the repository root."""

    parser: Literal["pytest", "unittest"] | None = None
    """Output format to read test counts from; None: the exit code alone decides."""

    runner: str = ""
    """The interpreter or tool it runs with, as results show it (``.venv/bin/python``)."""

    path: list[str] = Field(default_factory=list)
    """Directories put first on PATH (the project's venv ``bin``, ``node_modules/.bin``)."""

    venv: str | None = None
    """The project's virtual environment, set as ``VIRTUAL_ENV`` while it runs."""

    pythonpath: list[str] = Field(default_factory=list)
    """Put first on PYTHONPATH: a worktree's own code, when its venv is borrowed."""

    timeout: float | None = None
    """Seconds it may run; None: what the caller of :func:`run` gives."""

    problem: str | None = None
    """Found but cannot run here: why, and the fix, in one line. None: it can run."""

    @property
    def command_text(self) -> str:
        return self.command if isinstance(self.command, str) else shlex.join(self.command)


class Counts(BaseModel):
    """Test counts from a runner's summary line."""

    passed: int = 0
    """Tests that passed."""

    failed: int = 0
    """Tests that failed."""

    errors: int = 0
    """Errors outside test bodies: collection, fixtures, setup and teardown."""

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors


class CheckResult(BaseModel):
    """What running a check produced."""

    name: str
    """The check's name."""

    kind: CheckKind
    """The check's kind."""

    passed: bool
    """Exit code 0 within the timeout (and, for tests, some ran)."""

    exit_code: int
    """The exit code; negative: killed by that signal; 127: could not be started."""

    output: str
    """The tail of stdout and stderr (at most OUTPUT_LIMIT characters, marked when cut)."""

    duration_s: float
    """Wall time of the run, in seconds."""

    timed_out: bool
    """The timeout passed and the process group was killed."""

    counts: Counts | None = None
    """Parsed test counts (pytest's summary line), when the check has a parser and it matched."""

    problems: int | None = None
    """For lint: problems reported ("Found N errors", or file:line: lines); None if unknown."""

    status: Status = "failed"
    """passed, failed, or could_not_run: it says nothing about the code (not started, no
    runner, timed out, no tests ran); ``reason`` says why and how to fix it."""

    reason: str = ""
    """For could_not_run: why, and the fix, in one line."""

    command: str = ""
    """The command as a shell would show it."""

    runner: str = ""
    """The interpreter or tool it ran with."""


def find(
    repo: str | Path,
    *,
    settings: Sequence[CheckSetting] = (),
    virtual_env: str | None = None,
    test_command: list[str] | str | None = None,
    lint_command: list[str] | str | None = None,
) -> list[Check]:
    """Every check ``repo`` has, tests first, runnable or not (see ``Check.problem``).

    ``settings`` (``[checks]``, ``--check``) replace the detected checks of their kind;
    ``test_command``/``lint_command`` are the older form of the same, one per kind.
    """
    from shoal.evaluation.detection import find_checks

    return find_checks(
        Path(repo).expanduser().absolute(),
        settings=settings,
        virtual_env=virtual_env,
        legacy={"test": test_command, "lint": lint_command},
    )


def detect(
    repo: str | Path,
    *,
    test_command: list[str] | str | None = None,
    lint_command: list[str] | str | None = None,
    settings: Sequence[CheckSetting] = (),
    virtual_env: str | None = None,
) -> list[Check]:
    """The checks ``repo`` has that can run here (``find`` without the unrunnable ones)."""
    found = find(
        repo,
        settings=settings,
        virtual_env=virtual_env,
        test_command=test_command,
        lint_command=lint_command,
    )
    return [c for c in found if c.problem is None]


def run(check: Check, timeout: float = 600.0, *, output_limit: int = OUTPUT_LIMIT) -> CheckResult:
    """Run ``check`` in its own process group; kill the group after its timeout.

    ``timeout`` applies unless the check has its own. A check with a ``problem`` is not
    started: its result is ``could_not_run`` with that problem as the reason.
    """
    if check.problem is not None:
        return _not_run(check, check.problem)
    limit = check.timeout or timeout
    if not check.cwd.is_dir():
        return _not_run(check, f"cannot run: {check.cwd} is not a directory")
    try:
        outcome = process.run(
            check.command,
            cwd=check.cwd,
            timeout=limit,
            env=_environment(check),
            limit=output_limit,
            keep="tail",
        )
    except OSError as exc:
        program = check.command if isinstance(check.command, str) else check.command[0]
        why = f"cannot run {program}: {exc.strerror or exc}"
        return _not_run(check, f"{why}; {_fix(check)}")
    passed = outcome.exit_code == 0 and not outcome.timed_out
    counts = None
    if check.parser == "pytest":
        counts = parse_pytest_counts(outcome.output)
    elif check.parser == "unittest":
        counts = parse_unittest_counts(outcome.output)
    problems = None
    if check.kind == "lint":
        problems = 0 if passed else parse_problem_count(outcome.output)
    reason = _could_not_run(check, outcome, limit, counts)
    status: Status = "could_not_run" if reason else ("passed" if passed else "failed")
    return CheckResult(
        name=check.name,
        kind=check.kind,
        passed=passed and reason is None,
        exit_code=outcome.returncode,
        output=outcome.output,
        duration_s=round(outcome.duration_s, 3),
        timed_out=outcome.timed_out,
        counts=counts,
        problems=problems,
        status=status,
        reason=reason or "",
        command=check.command_text,
        runner=check.runner,
    )


def score(results: Iterable[CheckResult], kind: CheckKind) -> float | None:
    """The mean score in [0, 1] of the results of ``kind``; None when there are none.

    - test: the fraction of tests that passed, by parsed counts when they
      account for the outcome (a failed run with no failure counted, e.g. a
      coverage threshold, scores by exit code), else 1.0 passed / 0.0 failed.
      A timeout scores 0.0.
    - lint: 1.0 when clean, else ``1 / (1 + problems / 10)``: 1 problem 0.91,
      10 problems 0.5, 30 problems 0.25; a failure with no count scores as
      UNKNOWN_PROBLEMS (0.5).
    """
    scores = [_score_one(r) for r in results if r.kind == kind]
    return sum(scores) / len(scores) if scores else None


_PYTEST_SUMMARY = re.compile(
    r"^=*\s*(?P<body>(?:\d+ \w+(?:, )?)+|no tests ran)\s+in [\d.]+s(?: \([^)]*\))?\s*=*\s*$"
)
_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?)\b")
_FOUND = re.compile(r"^Found (\d+) errors?\b", re.MULTILINE)
_LOCATION = re.compile(r"^[^\s:][^:\n]*:\d+:(?:\d+:)?\s", re.MULTILINE)


def parse_pytest_counts(output: str) -> Counts | None:
    """Counts from pytest's last summary line ("1 failed, 3 passed in 0.12s"), if any."""
    for line in reversed(output.splitlines()):
        match = _PYTEST_SUMMARY.match(line.strip())
        if match:
            values = {"passed": 0, "failed": 0, "errors": 0}
            for number, word in _PYTEST_COUNT.findall(match["body"]):
                values["errors" if word.startswith("error") else word] += int(number)
            return Counts(**values)
    return None


def parse_problem_count(output: str) -> int | None:
    """Problems a linter reported: ruff's or mypy's "Found N errors", else file:line: lines."""
    found = _FOUND.findall(output)
    if found:
        return int(found[-1])
    located = len(_LOCATION.findall(output))
    return located or None


def _score_one(result: CheckResult) -> float:
    if result.timed_out:
        return 0.0
    if result.kind == "lint":
        if result.passed:
            return 1.0
        return 1.0 / (1.0 + (result.problems or UNKNOWN_PROBLEMS) / 10.0)
    counts = result.counts
    if counts and counts.total and (result.passed or counts.failed + counts.errors):
        return counts.passed / counts.total
    return 1.0 if result.passed else 0.0


def parse_unittest_counts(output: str) -> Counts | None:
    """Counts from unittest's "Ran N tests" and "FAILED (failures=1, errors=2, skipped=1)"."""
    ran = _UNITTEST_RAN.findall(output)
    if not ran:
        return None
    total = int(ran[-1])
    tail = output[output.rfind("Ran " + ran[-1]) :]
    found = {k: int(v) for k, v in _UNITTEST_DETAIL.findall(tail)}
    failed = found.get("failures", 0) + found.get("unexpected successes", 0)
    errors = found.get("errors", 0)
    skipped = found.get("skipped", 0) + found.get("expected failures", 0)
    return Counts(passed=max(0, total - failed - errors - skipped), failed=failed, errors=errors)


_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_UNITTEST_DETAIL = re.compile(
    r"(failures|errors|skipped|expected failures|unexpected successes)=(\d+)"
)
_RUNNER_MISSING = re.compile(r": No module named (pytest|unittest|ruff)\s*$", re.MULTILINE)
_SHELL_NOT_FOUND = (126, 127)


def _could_not_run(
    check: Check, outcome: process.Completed, timeout: float, counts: Counts | None
) -> str | None:
    """Why a run says nothing about the code (one line: the reason, then the fix), or None."""
    if outcome.timed_out:
        return (
            f"timed out after {timeout:g}s; give it more time "
            f"([checks] {check.name} timeout = ...) or make it faster"
        )
    if isinstance(check.command, str) and outcome.exit_code in _SHELL_NOT_FOUND:
        last = (outcome.output.strip().splitlines() or ["command not found"])[-1]
        return f"{last.strip()}; {_fix(check)}"
    missing = _RUNNER_MISSING.search(outcome.output) if outcome.exit_code else None
    if missing:
        return (
            f"{check.runner or 'the interpreter'} has no {missing[1]}; "
            f"install it into the project's environment"
        )
    if counts is not None and counts.total == 0 and check.kind == "test":
        return "no tests ran; check the test layout, or configure the command in [checks]"
    return None


def _fix(check: Check) -> str:
    program = check.command.split()[0] if isinstance(check.command, str) else check.command[0]
    return f"install {os.path.basename(program)} or set the command in [checks] {check.name}"


def _not_run(check: Check, reason: str) -> CheckResult:
    return CheckResult(
        name=check.name,
        kind=check.kind,
        passed=False,
        exit_code=127,
        output=reason,
        duration_s=0.0,
        timed_out=False,
        status="could_not_run",
        reason=reason,
        command=check.command_text,
        runner=check.runner,
    )


def _environment(check: Check) -> dict[str, str]:
    from shoal.evaluation.environment import run_environment
    from shoal.workspace.git import without_redirects

    # The project's checks run on the workspace, never on a repository GIT_DIR names.
    env = without_redirects(os.environ)
    env.pop("FORCE_COLOR", None)
    # Non-interactive, uncoloured output; and no __pycache__ written into the user's tree
    # (pytest's assertion rewriting honours it too).
    env.update(CI="1", NO_COLOR="1", PY_COLORS="0", PYTHONDONTWRITEBYTECODE="1")
    return run_environment(env, check.path, check.venv, check.pythonpath)
