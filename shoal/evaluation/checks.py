"""The project's own tests and linters: find them, run them, turn the results into scores.

:func:`detect` finds what a repository already uses (pytest, ``npm test``,
``go test``, ``cargo test``, ``make test``, ruff); a configured
``test_command`` / ``lint_command`` replaces what was found for its kind. A
check is only detected when its tool can run here, so a missing tool means
"no check of that kind" rather than a failure every iteration.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shoal.evaluation.process import run_command

CheckKind = Literal["test", "lint"]

OUTPUT_LIMIT = 20_000
"""Characters of output kept per run (the tail, where summaries are)."""

UNKNOWN_PROBLEMS = 10
"""Problems assumed for a failed lint whose output gives no count (scores 0.5)."""

PYTEST_ARGS = ("-m", "pytest", "-q", "-x", "--no-header", "-p", "no:cacheprovider")

_NPM_DEFAULT_TEST = "no test specified"


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

    parser: Literal["pytest"] | None = None
    """Output format to read test counts from; None: the exit code alone decides."""


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
    """Exit code 0 within the timeout."""

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


def detect(
    repo: str | Path,
    *,
    test_command: list[str] | str | None = None,
    lint_command: list[str] | str | None = None,
) -> list[Check]:
    """The checks ``repo`` has, tests first; an override replaces every check of its kind."""
    root = Path(repo).expanduser().absolute()
    found = (_pytest(root), _npm(root), _go(root), _cargo(root))
    tests = [c for c in found if c is not None]
    if not tests:
        # `make test` often only wraps the native runner, so it is a fallback, not an extra run.
        make = _make(root)
        tests = [make] if make else []
    lints = [c for c in (_ruff(root),) if c is not None]
    if test_command:
        tests = [_override("test", test_command, root)]
    if lint_command:
        lints = [_override("lint", lint_command, root)]
    return tests + lints


def run(check: Check, timeout: float = 600.0, *, output_limit: int = OUTPUT_LIMIT) -> CheckResult:
    """Run ``check`` in its own process group; kill the group after ``timeout`` seconds."""
    outcome = run_command(
        check.command, check.cwd, timeout, env=_environment(), output_limit=output_limit
    )
    passed = outcome.exit_code == 0 and not outcome.timed_out
    counts = parse_pytest_counts(outcome.output) if check.parser == "pytest" else None
    problems = None
    if check.kind == "lint":
        problems = 0 if passed else parse_problem_count(outcome.output)
    return CheckResult(
        name=check.name,
        kind=check.kind,
        passed=passed,
        exit_code=outcome.exit_code,
        output=outcome.output,
        duration_s=round(outcome.duration_s, 3),
        timed_out=outcome.timed_out,
        counts=counts,
        problems=problems,
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


def _environment() -> dict[str, str]:
    from shoal.workspace.git import without_redirects

    # The project's checks run on the workspace, never on a repository GIT_DIR names.
    env = without_redirects(os.environ)
    env.pop("FORCE_COLOR", None)
    # Non-interactive, uncoloured output; and no __pycache__ written into the user's tree
    # (pytest's assertion rewriting honours it too).
    env.update(CI="1", NO_COLOR="1", PY_COLORS="0", PYTHONDONTWRITEBYTECODE="1")
    return env


def _override(kind: CheckKind, command: list[str] | str, root: Path) -> Check:
    text = command if isinstance(command, str) else " ".join(command)
    parser: Literal["pytest"] | None = "pytest" if "pytest" in text else None
    return Check(name=f"{kind} command", kind=kind, command=command, cwd=root, parser=parser)


def _pytest(root: Path) -> Check | None:
    if importlib.util.find_spec("pytest") is None:
        return None
    configured = (
        "pytest" in _pyproject(root).get("tool", {})
        or (root / "pytest.ini").is_file()
        or _ini_has_section(root / "setup.cfg", "tool:pytest")
        or _ini_has_section(root / "tox.ini", "pytest")
    )
    if not configured and not (_is_python_project(root) and _has_test_layout(root)):
        return None
    return Check(
        name="pytest",
        kind="test",
        command=[sys.executable, *PYTEST_ARGS],
        cwd=root,
        parser="pytest",
    )


def _npm(root: Path) -> Check | None:
    try:
        package = json.loads((root / "package.json").read_text())
        script = package["scripts"]["test"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # `npm init` writes a test script that only fails: not a test suite.
    if not isinstance(script, str) or not script.strip() or _NPM_DEFAULT_TEST in script:
        return None
    return _if_on_path(
        "npm", Check(name="npm test", kind="test", command=["npm", "test"], cwd=root)
    )


def _go(root: Path) -> Check | None:
    if not (root / "go.mod").is_file():
        return None
    check = Check(name="go test", kind="test", command=["go", "test", "./..."], cwd=root)
    return _if_on_path("go", check)


def _cargo(root: Path) -> Check | None:
    if not (root / "Cargo.toml").is_file():
        return None
    check = Check(name="cargo test", kind="test", command=["cargo", "test"], cwd=root)
    return _if_on_path("cargo", check)


_MAKE_TEST_TARGET = re.compile(r"^test\s*::?(?!=)", re.MULTILINE)


def _make(root: Path) -> Check | None:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        try:
            text = (root / name).read_text(errors="replace")
        except OSError:
            continue
        if _MAKE_TEST_TARGET.search(text):
            check = Check(name="make test", kind="test", command=["make", "test"], cwd=root)
            return _if_on_path("make", check)
        return None  # make reads only the first of these it finds
    return None


def _ruff(root: Path) -> Check | None:
    configured = (
        "ruff" in _pyproject(root).get("tool", {})
        or (root / "ruff.toml").is_file()
        or (root / ".ruff.toml").is_file()
    )
    if not configured:
        return None
    if shutil.which("ruff"):
        command = ["ruff", "check", "."]
    elif importlib.util.find_spec("ruff") is not None:
        command = [sys.executable, "-m", "ruff", "check", "."]
    else:
        return None
    return Check(name="ruff", kind="lint", command=command, cwd=root)


def _if_on_path(program: str, check: Check) -> Check | None:
    return check if shutil.which(program) else None


def _pyproject(root: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _ini_has_section(path: Path, section: str) -> bool:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(errors="replace"))
    except (OSError, configparser.Error):
        return False
    return parser.has_section(section)


def _is_python_project(root: Path) -> bool:
    markers = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt")
    return any((root / m).is_file() for m in markers) or next(root.glob("*.py"), None) is not None


def _has_test_layout(root: Path) -> bool:
    for pattern in ("test_*.py", "*_test.py", "conftest.py"):
        if next(root.glob(pattern), None) is not None:
            return True
    for name in ("tests", "test"):
        directory = root / name
        if directory.is_dir() and next(directory.rglob("*.py"), None) is not None:
            return True
    return False
