"""Detecting and running a project's own checks: real pytest and ruff runs in temp projects."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from shoal.evaluation import Check, CheckResult, Counts, detect, run, score
from shoal.evaluation.checks import parse_problem_count, parse_pytest_counts

PASSING = "def test_a():\n    assert 1 + 1 == 2\n"
FAILING = "def test_b():\n    assert 1 + 1 == 3\n"


@pytest.fixture(autouse=True)
def fast_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    # The nested pytest would load every installed plugin (seconds); the checks need none.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def only_on_path(*programs: str):
    return lambda name: f"/usr/bin/{name}" if name in programs else None


def test_pytest_passing_and_failing_tests_are_counted(tmp_path: Path) -> None:
    project = write(
        tmp_path,
        {
            "pyproject.toml": "[project]\nname = 'p'\n\n[tool.pytest.ini_options]\n",
            "tests/test_math.py": PASSING + "\n\n" + FAILING,
        },
    )
    [check] = detect(project)
    assert check.name == "pytest" and check.kind == "test" and check.command[0] == sys.executable
    result = run(check, timeout=30)
    assert not result.passed and result.exit_code == 1 and not result.timed_out
    assert result.counts == Counts(passed=1, failed=1, errors=0)
    assert "test_b" in result.output
    assert score([result], "test") == 0.5
    assert score([result], "lint") is None
    # Nothing written into the project: no cache dir, no bytecode.
    assert sorted(p.name for p in project.rglob("*")) == ["pyproject.toml", "test_math.py", "tests"]

    write(project, {"tests/test_math.py": PASSING})
    result = run(check, timeout=30)
    assert result.passed and result.counts == Counts(passed=1) and score([result], "test") == 1.0


def test_a_sleeping_test_is_killed_with_its_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    project = write(
        tmp_path / "p",
        {
            "setup.py": "",
            "tests/test_slow.py": (
                "import subprocess, time\n"
                "def test_sleeps():\n"
                "    child = subprocess.Popen(['sleep', '60'])\n"
                f"    open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
                "    time.sleep(60)\n"
            ),
        },
    )
    [check] = detect(project)
    started = time.monotonic()
    result = run(check, timeout=1.5)
    assert time.monotonic() - started < 5
    assert result.timed_out and not result.passed and result.exit_code < 0
    assert result.counts is None and score([result], "test") == 0.0
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the test's child process outlived the timeout"


@pytest.mark.parametrize(
    "files",
    [
        {"pytest.ini": "[pytest]\n"},
        {"setup.cfg": "[metadata]\nname = p\n\n[tool:pytest]\naddopts = -q\n"},
        {"tox.ini": "[tox]\n\n[pytest]\nminversion = 7\n"},
        {"pyproject.toml": "[tool.pytest]\n"},
        {"setup.py": "", "tests/unit/test_x.py": PASSING},
        {"requirements.txt": "", "test_top.py": PASSING},
    ],
)
def test_pytest_is_detected_by_config_or_layout(tmp_path: Path, files: dict[str, str]) -> None:
    assert [c.name for c in detect(write(tmp_path, files))] == ["pytest"]


def test_nothing_is_detected_without_a_sign_of_pytest(tmp_path: Path) -> None:
    # setup.cfg without [tool:pytest], tests/ without Python: no pytest.
    write(tmp_path, {"setup.cfg": "[metadata]\nname = p\n", "tests/data.txt": "x", "README": ""})
    assert detect(tmp_path) == []


def test_ruff_is_detected_from_config_and_counts_problems(tmp_path: Path) -> None:
    project = write(tmp_path, {"ruff.toml": "line-length = 100\n", "mod.py": "import os\n"})
    [check] = detect(project)
    assert check.name == "ruff" and check.kind == "lint"
    result = run(check, timeout=30)
    assert not result.passed and result.problems == 1
    assert score([result], "lint") == pytest.approx(1 / 1.1)
    assert score([result], "test") is None

    write(project, {"mod.py": "import os\n\nprint(os.sep)\n"})
    clean = run(check, timeout=30)
    assert clean.passed and clean.problems == 0 and score([clean], "lint") == 1.0


def test_ruff_config_places_and_module_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [c.name for c in detect(write(tmp_path / "a", {".ruff.toml": ""}))] == ["ruff"]
    pyproject = write(tmp_path / "b", {"pyproject.toml": "[tool.ruff.lint]\nselect = ['F']\n"})
    assert [c.name for c in detect(pyproject)] == ["ruff"]
    assert detect(write(tmp_path / "c", {"pyproject.toml": "[project]\nname = 'c'\n"})) == []
    monkeypatch.setattr(shutil, "which", only_on_path())
    [check] = detect(pyproject)
    assert check.command == [sys.executable, "-m", "ruff", "check", "."]


def test_npm_default_test_script_is_not_a_test_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", only_on_path("npm"))
    default = 'echo "Error: no test specified" && exit 1'
    package = {"name": "p", "scripts": {"test": default}}
    write(tmp_path, {"package.json": json.dumps(package)})
    assert detect(tmp_path) == []
    package["scripts"]["test"] = "node --test"
    write(tmp_path, {"package.json": json.dumps(package)})
    [check] = detect(tmp_path)
    assert check.command == ["npm", "test"] and check.cwd == tmp_path
    monkeypatch.setattr(shutil, "which", only_on_path())
    assert detect(tmp_path) == []  # npm is not installed here


def test_go_cargo_and_make_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", only_on_path("go", "cargo", "make"))
    makefile = ".PHONY: test\nTESTS := a\ntest: build\n\tgo test ./...\n"
    project = write(tmp_path, {"go.mod": "module x\n", "Cargo.toml": "", "Makefile": makefile})
    assert [c.command for c in detect(project)] == [["go", "test", "./..."], ["cargo", "test"]]
    (project / "go.mod").unlink()
    (project / "Cargo.toml").unlink()
    assert [c.command for c in detect(project)] == [["make", "test"]]
    write(project, {"Makefile": "test := x\nall:\n\ttrue\n"})
    assert detect(project) == []


def test_configured_commands_win(tmp_path: Path) -> None:
    project = write(tmp_path, {"pytest.ini": "[pytest]\n", "ruff.toml": ""})
    checks = detect(project, test_command="echo ran; exit 3", lint_command=["true"])
    assert [(c.name, c.kind, c.command) for c in checks] == [
        ("test command", "test", "echo ran; exit 3"),
        ("lint command", "lint", ["true"]),
    ]
    result = run(checks[0], timeout=10)
    assert result.exit_code == 3 and result.output == "ran\n" and score([result], "test") == 0.0
    assert detect(project, test_command="python -m pytest -q")[0].parser == "pytest"


def test_a_missing_program_and_long_output(tmp_path: Path) -> None:
    missing = Check(name="x", kind="lint", command=["no-such-program-here"], cwd=tmp_path)
    result = run(missing, timeout=5)
    assert result.exit_code == 127 and "no-such-program-here" in result.output
    assert score([result], "lint") == 0.5  # failed, problem count unknown

    loud = Check(
        name="loud",
        kind="test",
        command=[sys.executable, "-c", "print('a' * 50000 + 'END')"],
        cwd=tmp_path,
    )
    result = run(loud, timeout=10, output_limit=1000)
    assert result.passed and result.output.endswith("aEND\n")
    assert result.output.startswith("[... ") and len(result.output) < 1100


def test_parsers() -> None:
    summary = "===== 2 failed, 3 passed, 1 error, 4 warnings in 1.23s ====="
    assert parse_pytest_counts(f"noise\n{summary}\n") == Counts(passed=3, failed=2, errors=1)
    assert parse_pytest_counts("5 passed in 75.20s (0:01:15)") == Counts(passed=5)
    assert parse_pytest_counts("no tests ran in 0.01s") == Counts()
    assert parse_pytest_counts("3 passed somewhere") is None
    assert parse_problem_count("a.py:1:8: F401 unused\nFound 1 error.\n") == 1
    assert parse_problem_count("Found 12 errors (3 fixed, 9 remaining).") == 12
    assert parse_problem_count("a.py:1: error: x\nb.py:2:3: warning\n") == 2
    assert parse_problem_count("something broke") is None


def result(kind: str, passed: bool, **fields: object) -> CheckResult:
    base = {"exit_code": 0 if passed else 1, "output": "", "duration_s": 0.1, "timed_out": False}
    return CheckResult.model_validate(
        {"name": kind, "kind": kind, "passed": passed, **base, **fields}
    )


def test_score_formulas() -> None:
    assert score([], "test") is None
    tests = [
        result("test", False, counts=Counts(passed=3, failed=1)),  # 0.75
        result("test", True),  # 1.0, no counts
        result("test", False, counts=Counts(passed=4)),  # counts explain nothing: 0.0
    ]
    assert score(tests, "test") == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    lints = [result("lint", True, problems=0), result("lint", False, problems=30)]
    assert score(lints, "lint") == pytest.approx((1.0 + 0.25) / 2)
    assert score([result("lint", False, problems=10, timed_out=True)], "lint") == 0.0


def test_environment_is_non_interactive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    probe = (
        "import os, sys; print(os.environ.get('CI'), 'FORCE_COLOR' in os.environ, sys.stdin.read())"
    )
    check = Check(name="env", kind="test", command=[sys.executable, "-c", probe], cwd=tmp_path)
    assert run(check, timeout=10).output == "1 False \n"
    assert os.environ["FORCE_COLOR"] == "1"


def test_a_check_runs_on_its_workspace_whatever_git_dir_the_shell_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    repo, decoy = tmp_path / "repo", tmp_path / "decoy"
    for root in (repo, decoy):
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    (repo / "mine.txt").write_text("x\n")
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    command = "git rev-parse --show-toplevel && git status --short"
    result = run(Check(kind="test", name="git", command=command, cwd=repo))
    assert str(repo) in result.output and "mine.txt" in result.output
    assert str(decoy) not in result.output
