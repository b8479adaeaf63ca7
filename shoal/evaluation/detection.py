"""Which checks a repository has, each with the project's own toolchain.

Tests: Python (pytest where the project's environment has it, else ``python -m
unittest`` discovery), the package.json ``test`` script through the lockfile's
package manager, ``go test``, ``cargo test``; the Makefile's ``test`` target when
none of those can run. Lint: ruff where the project configures it. Checks the
user configured replace the detected ones of their kind.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.evaluation.checks import PYTEST_ARGS, Check, CheckKind
from shoal.evaluation.environment import (
    Python,
    find_node,
    find_python,
    find_venv,
    own_code_first,
    pyproject,
    shown_path,
)

if TYPE_CHECKING:
    from shoal.messages.tasks import CheckSetting

_NPM_DEFAULT_TEST = "no test specified"
_MAKE_TEST_TARGET = re.compile(r"^test\s*::?(?!=)", re.MULTILINE)
_TEST_FILES_READ = 30
"""Test files read, at most, to tell unittest-style tests from pytest-style ones."""


def find_checks(
    root: Path,
    *,
    settings: Sequence[CheckSetting] = (),
    virtual_env: str | None = None,
    legacy: Mapping[str, list[str] | str | None] | None = None,
) -> list[Check]:
    """Tests first, then lints; configured checks replace the detected ones of their kind."""
    venv = find_venv(root, virtual_env)
    tests = [
        c
        for c in (_python(root, virtual_env), _node(root), _go(root), _cargo(root))
        if c is not None
    ]
    if not any(c.problem is None for c in tests):
        # `make test` often only wraps the native runner, so it is a fallback, not an
        # extra run; and it is how a project whose runner is missing here is tested.
        make = _make(root, venv)
        if make is not None and (make.problem is None or not tests):
            tests = [make]
    found = {"test": tests, "lint": [c for c in (_ruff(root, venv),) if c is not None]}
    configured = _configured(root, settings, legacy or {}, venv)
    for kind in ("test", "lint"):
        mine = [c for c in configured if c.kind == kind]
        if mine:
            found[kind] = mine
    return found["test"] + found["lint"]


# --- Python ---------------------------------------------------------------------


def _python(root: Path, virtual_env: str | None) -> Check | None:
    configured = _pytest_configured(root)
    if not configured and not (_is_python_project(root) and _has_test_layout(root)):
        return None
    python = find_python(root, virtual_env)
    name = "pytest" if configured else "python tests"
    if python.problem is not None:
        return _python_check(root, python, name, list(python.argv), problem=python.problem)
    if python.manager is not None:
        has_pytest = configured or _declares_pytest(root)
    else:
        has_pytest = "pytest" in python.modules
    if has_pytest:
        command = [*python.argv, *PYTEST_ARGS]
        return _python_check(root, python, "pytest", command, parser="pytest")
    if configured:
        problem = f"the project uses pytest and {python.runner} has no pytest; {_install(python)}"
        return _python_check(root, python, "pytest", [*python.argv, *PYTEST_ARGS], problem=problem)
    if not _looks_like_unittest(root):
        problem = (
            f"the tests look like pytest tests and {python.runner} has no pytest "
            f"(unittest would find none); {_install(python)}"
        )
        return _python_check(root, python, "pytest", [*python.argv, *PYTEST_ARGS], problem=problem)
    command = [*python.argv, "-m", "unittest", "discover", *_unittest_start(root)]
    return _python_check(root, python, "unittest", command, parser="unittest")


def _python_check(
    root: Path, python: Python, name: str, command: list[str], **fields: Any
) -> Check:
    return Check(
        name=name,
        kind="test",
        command=command,
        cwd=root,
        runner=python.runner,
        path=[str(python.venv / "bin")] if python.venv else [],
        venv=str(python.venv) if python.venv else None,
        pythonpath=own_code_first(root, python),
        **fields,
    )


def _install(python: Python) -> str:
    if python.manager == "uv":
        return "add it: uv add --dev pytest"
    if python.manager == "poetry":
        return "add it: poetry add --group dev pytest"
    if python.venv is not None:
        return f"install it: {python.argv[0]} -m pip install pytest"
    return (
        "make the project a venv with it: python3 -m venv .venv && "
        ".venv/bin/pip install pytest -e ."
    )


def _declares_pytest(root: Path) -> bool:
    for name in ("uv.lock", "poetry.lock", "pyproject.toml"):
        try:
            text = (root / name).read_text(errors="replace")
        except OSError:
            continue
        if re.search(r"""(?:^|["'\s])pytest\b(?![-_.\w])""", text, re.MULTILINE):
            return True
    return False


def _pytest_configured(root: Path) -> bool:
    return (
        "pytest" in pyproject(root).get("tool", {})
        or (root / "pytest.ini").is_file()
        or (root / "conftest.py").is_file()
        or _ini_has_section(root / "setup.cfg", "tool:pytest")
        or _ini_has_section(root / "tox.ini", "pytest")
    )


def _unittest_start(root: Path) -> list[str]:
    """Where discovery starts: the root, unless the tests are only in a non-package dir."""
    if next(_root_test_files(root), None) is not None:
        return []
    for name in ("tests", "test"):
        directory = root / name
        if directory.is_dir() and not (directory / "__init__.py").is_file():
            return ["-s", name]  # discovery only enters packages: start in the dir itself
    return []


def _looks_like_unittest(root: Path) -> bool:
    for path in islice(_test_files(root), _TEST_FILES_READ):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "unittest" in text or "TestCase" in text:
            return True
    return False


def _root_test_files(root: Path) -> Iterator[Path]:
    for pattern in ("test_*.py", "*_test.py"):
        yield from root.glob(pattern)


def _test_files(root: Path) -> Iterator[Path]:
    yield from _root_test_files(root)
    for name in ("tests", "test"):
        directory = root / name
        if directory.is_dir():
            yield from directory.rglob("test*.py")
            yield from directory.rglob("*_test.py")


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


def _ruff(root: Path, venv: Python | None) -> Check | None:
    configured = (
        "ruff" in pyproject(root).get("tool", {})
        or (root / "ruff.toml").is_file()
        or (root / ".ruff.toml").is_file()
    )
    if not configured:
        return None
    check = Check(name="ruff", kind="lint", command=["ruff", "check", "."], cwd=root)
    own = venv.venv / "bin" / "ruff" if venv and venv.venv else None
    if own is not None and own.is_file():
        update = {"command": [str(own), "check", "."], "runner": shown_path(own, root)}
        return check.model_copy(update=update)
    if shutil.which("ruff"):
        return check.model_copy(update={"runner": "ruff on PATH"})
    if importlib.util.find_spec("ruff") is not None:
        # ruff is a standalone program that never imports the project's code, so the
        # copy installed with shoal is a fair last resort.
        command = [sys.executable, "-m", "ruff", "check", "."]
        return check.model_copy(update={"command": command, "runner": "shoal's own ruff"})
    problem = "the project configures ruff and none is installed; install it: pip install ruff"
    return check.model_copy(update={"problem": problem})


# --- Node, Go, Cargo, make ---------------------------------------------------------


def _node(root: Path) -> Check | None:
    try:
        package = json.loads((root / "package.json").read_text())
        script = package["scripts"]["test"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # `npm init` writes a test script that only fails: not a test suite.
    if not isinstance(script, str) or not script.strip() or _NPM_DEFAULT_TEST in script:
        return None
    node = find_node(root)
    return Check(
        name=f"{node.manager} test",
        kind="test",
        command=list(node.test),
        cwd=root,
        runner=node.manager,
        path=[str(node.bin_dir)],
        problem=node.problem,
    )


def _go(root: Path) -> Check | None:
    if not (root / "go.mod").is_file():
        return None
    check = Check(name="go test", kind="test", command=["go", "test", "./..."], cwd=root)
    return _needs(check, "go", "go.mod is here and go is not on PATH; install Go")


def _cargo(root: Path) -> Check | None:
    if not (root / "Cargo.toml").is_file():
        return None
    check = Check(name="cargo test", kind="test", command=["cargo", "test"], cwd=root)
    return _needs(check, "cargo", "Cargo.toml is here and cargo is not on PATH; install Rust")


def _make(root: Path, venv: Python | None) -> Check | None:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        try:
            text = (root / name).read_text(errors="replace")
        except OSError:
            continue
        if not _MAKE_TEST_TARGET.search(text):
            return None  # make reads only the first of these it finds
        check = Check(name="make test", kind="test", command=["make", "test"], cwd=root)
        check = check.model_copy(update=_venv_fields(venv, "make", root))
        return _needs(check, "make", f"{name} has a test target and make is not on PATH")
    return None


def _needs(check: Check, program: str, problem: str) -> Check:
    runner = check.runner or program
    if shutil.which(program):
        return check.model_copy(update={"runner": runner})
    return check.model_copy(update={"runner": runner, "problem": problem})


# --- configured checks ----------------------------------------------------------------


def _configured(
    root: Path,
    settings: Sequence[CheckSetting],
    legacy: Mapping[str, list[str] | str | None],
    venv: Python | None,
) -> list[Check]:
    checks = []
    for kind, command in legacy.items():
        if command and kind in ("test", "lint"):
            name = f"{kind} command"
            checks.append(_command_check(root, name, kind, command, venv))  # type: ignore[arg-type]
    for s in settings:
        check = _command_check(root, s.name, s.kind, s.command, venv)
        checks.append(check.model_copy(update={"timeout": s.timeout}))
    return checks


def _command_check(
    root: Path, name: str, kind: CheckKind, command: list[str] | str, venv: Python | None
) -> Check:
    text = command if isinstance(command, str) else " ".join(command)
    parser = "pytest" if "pytest" in text else ("unittest" if "unittest" in text else None)
    fields = _venv_fields(venv, "sh" if isinstance(command, str) else command[0], root)
    node_bin = root / "node_modules" / ".bin"
    if node_bin.is_dir():
        fields["path"] = [*fields.get("path", []), str(node_bin)]
    return Check(name=name, kind=kind, command=command, cwd=root, parser=parser, **fields)


def _venv_fields(venv: Python | None, tool: str, root: Path) -> dict[str, Any]:
    """PATH and VIRTUAL_ENV of the project's venv, as activating it would set them."""
    if venv is None or venv.venv is None or venv.problem is not None:
        return {"runner": tool}
    bin_dir = venv.venv / "bin"
    return {
        "runner": f"{tool} with {shown_path(bin_dir, root)} on PATH",
        "path": [str(bin_dir)],
        "venv": str(venv.venv),
        "pythonpath": own_code_first(root, venv),
    }


# --- files ----------------------------------------------------------------------------


def _ini_has_section(path: Path, section: str) -> bool:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(errors="replace"))
    except (OSError, configparser.Error):
        return False
    return parser.has_section(section)
