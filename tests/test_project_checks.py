"""The project's checks run with the project's own toolchain: real venvs, real runners.

Virtual environments are made here with ``python -m venv --without-pip`` and get
their packages through a ``.pth`` file (offline, fast); nothing of shoal's own
interpreter decides what a project's tests run with.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.evaluation import checks
from shoal.evaluation.settings import load_checks, parse_table
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.messages.tasks import CheckSetting
from shoal.paths import Home
from shoal.settings import SettingsError
from tests.conftest import shoal
from tests.test_loop import call, model_env, plan, verdict

UNITTEST_OK = (
    "import unittest\n\n\nclass T(unittest.TestCase):\n"
    "    def test_ok(self):\n        self.assertTrue(True)\n"
)
GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t"]


@pytest.fixture(autouse=True)
def fast_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def make_venv(path: Path, *importable: Path) -> Path:
    """A venv without pip whose site-packages also hold what is in ``importable`` (a .pth)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next(path.glob("lib/python3*/site-packages"))
    (site / "project-deps.pth").write_text("".join(f"{p}\n" for p in importable))
    return path


def git_init(repo: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *GIT_ID, "commit", "-qm", "start"], check=True)
    return repo


def pytest_dir() -> Path:
    spec = importlib.util.find_spec("pytest")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent.parent


# --- Python environments ------------------------------------------------------------


def tinydep_project(tmp_path: Path) -> Path:
    """A repository whose code and tests import ``tinydep``, installed only in its .venv."""
    deps = write(tmp_path / "deps", {"tinydep/__init__.py": "def offset():\n    return 0\n"})
    repo = write(
        tmp_path / "repo",
        {
            ".gitignore": ".venv/\n",
            "calc.py": "import tinydep\n\n\ndef add(a, b):\n    return a - b + tinydep.offset()\n",
            "tests/test_calc.py": (
                "import unittest\n\nimport tinydep\nfrom calc import add\n\n\n"
                "class AddTest(unittest.TestCase):\n"
                "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
                "    def test_dep(self):\n        self.assertEqual(tinydep.offset(), 0)\n"
            ),
        },
    )
    make_venv(repo / ".venv", deps)
    return git_init(repo)


def test_the_projects_venv_runs_its_tests_a_fix_is_accepted_and_a_bug_left_in_is_not(
    home: Home, tmp_path: Path
) -> None:
    assert importlib.util.find_spec("tinydep") is None  # shoal's environment lacks it
    fixed = tinydep_project(tmp_path / "a")
    [check] = checks.find(fixed)
    # The project's interpreter decides: its venv has no pytest, so unittest runs.
    assert (check.name, check.runner) == ("unittest", ".venv/bin/python")
    fix = [
        call("read_file", path="calc.py"),
        call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
        call("finish", summary="add adds"),
    ]
    script = {
        "scripted-planner": [plan(), plan()],
        "scripted-executor": [*fix, call("finish", summary="nothing to change")],
        "scripted-evaluator": [verdict(0.95), verdict(0.95)],
    }
    with ScriptedModelServer(Script.model_validate({"models": script})) as server:
        accepted = shoal("run", "fix add", "-C", str(fixed), "--json", env=model_env(server))
        buggy = tinydep_project(tmp_path / "b")
        kept = shoal("run", "fix add", "-C", str(buggy), "--json", "-i", "1", env=model_env(server))
    out = json.loads(accepted.stdout)
    assert accepted.returncode == 0 and out["status"] == "accepted", accepted.stderr
    [ran] = out["checks"]
    assert ran["runner"] == ".venv/bin/python" and ran["status"] == "passed"
    assert ran["counts"] == {"passed": 2, "failed": 0, "errors": 0} and out["tests"] == "passed"
    out = json.loads(kept.stdout)
    assert kept.returncode == 1 and out["status"] == "unaccepted", kept.stderr
    assert out["checks"][0]["status"] == "failed" and out["checks"][0]["counts"]["failed"] == 1
    assert out["score"] < 0.8  # the judge's 0.95 alone would have accepted it


def test_a_venv_with_pytest_runs_pytest_with_that_interpreter(tmp_path: Path) -> None:
    repo = write(tmp_path / "p", {"pyproject.toml": "[tool.pytest.ini_options]\n"})
    write(repo, {"tests/test_env.py": "import sys\n\ndef test_prefix():\n    print(sys.prefix)\n"})
    make_venv(repo / ".venv", pytest_dir())
    [check] = checks.find(repo)
    assert check.name == "pytest" and check.command[0] == str(repo / ".venv" / "bin" / "python")
    result = checks.run(check, timeout=60)
    assert result.status == "passed" and result.counts == checks.Counts(passed=1)
    assert result.runner == ".venv/bin/python"
    # Without pytest in the venv a project that uses pytest cannot run: said, with the fix.
    (next((repo / ".venv").glob("lib/python3*/site-packages")) / "project-deps.pth").unlink()
    [check] = checks.find(repo)
    assert (
        check.problem and "has no pytest" in check.problem and "pip install pytest" in check.problem
    )
    result = checks.run(check)
    assert result.status == "could_not_run" and result.reason == check.problem
    assert checks.detect(repo) == []  # detect: only what can run


def test_the_submitting_shells_venv_and_a_worktrees_main_venv(tmp_path: Path) -> None:
    repo = git_init(write(tmp_path / "repo", {"setup.py": "", "tests/test_a.py": UNITTEST_OK}))
    make_venv(repo / "env311")
    [check] = checks.find(repo)
    assert check.runner != "env311/bin/python"  # not a venv name shoal looks for...
    [check] = checks.find(repo, virtual_env=str(repo / "env311"))
    assert check.runner == "env311/bin/python"  # ...but the shell's VIRTUAL_ENV names it
    assert checks.run(check, timeout=60).status == "passed"
    elsewhere = make_venv(tmp_path / "other-venv")
    [check] = checks.find(repo, virtual_env=str(elsewhere))
    assert check.runner != f"{elsewhere}/bin/python"  # another project's venv: not used

    make_venv(repo / ".venv")
    worktree = tmp_path / "wt"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(worktree)], check=True)
    [check] = checks.find(worktree)
    assert check.runner == str(repo / ".venv" / "bin" / "python")
    assert check.pythonpath == [str(worktree)]  # its own code first, not the main tree's
    result = checks.run(check, timeout=60)
    assert result.status == "passed" and result.counts == checks.Counts(passed=1)
    # A batch unit's `git clone --shared` borrows its source's venv the same way.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(repo), str(clone)], check=True)
    [check] = checks.find(clone)
    assert check.runner == str(repo / ".venv" / "bin" / "python")
    assert check.pythonpath == [str(clone)]


def test_a_broken_venv_could_not_run_with_the_fix(tmp_path: Path) -> None:
    repo = write(tmp_path / "p", {"setup.py": "", "tests/test_a.py": UNITTEST_OK})
    venv = make_venv(repo / ".venv")
    python = venv / "bin" / "python"
    python.unlink()
    python.symlink_to(tmp_path / "gone" / "python3")  # its base interpreter was removed
    [check] = checks.find(repo)
    result = checks.run(check)
    assert result.status == "could_not_run" and not result.passed
    assert "points to a missing interpreter" in result.reason
    assert "python3 -m venv --clear" in result.reason
    assert checks.score([result], "test") == 0.0


def test_a_unittest_only_project_is_detected_and_run(tmp_path: Path) -> None:
    failing = UNITTEST_OK.replace("assertTrue(True)", "assertTrue(False)")
    repo = write(
        tmp_path / "p",
        {
            "pyproject.toml": "[project]\nname = 'p'\n",
            "tests/test_a.py": UNITTEST_OK,
            "tests/test_b.py": failing.replace("test_ok", "test_bad"),
        },
    )
    make_venv(repo / ".venv")
    [check] = checks.find(repo)
    assert check.name == "unittest" and check.command[-3:] == ["discover", "-s", "tests"]
    result = checks.run(check, timeout=60)
    assert result.status == "failed" and result.counts == checks.Counts(passed=1, failed=1)
    assert checks.score([result], "test") == 0.5
    # pytest-style tests where there is no pytest: unittest would find none, so it says so.
    write(repo, {"tests/test_a.py": "def test_x():\n    pass\n", "tests/test_b.py": ""})
    [check] = checks.find(repo)
    assert check.problem and "look like pytest tests" in check.problem


def test_a_makefile_test_target_runs_with_the_venv_on_path(tmp_path: Path) -> None:
    makefile = "test:\n\tpython -c 'import sys; print(\"prefix\", sys.prefix)'\n"
    repo = write(tmp_path / "p", {"Makefile": makefile, "main.c": "int main(){return 0;}\n"})
    venv = make_venv(repo / ".venv")
    [check] = checks.find(repo)
    assert check.name == "make test" and check.runner == "make with .venv/bin on PATH"
    result = checks.run(check, timeout=60)
    assert result.status == "passed" and f"prefix {venv}" in result.output
    # A Python project whose runner is missing here is tested the way its Makefile says.
    write(repo, {"conftest.py": "", "tests/test_a.py": UNITTEST_OK})
    assert [c.name for c in checks.find(repo)] == ["make test"]


@pytest.mark.parametrize(
    ("manager", "lockfile"), [("pnpm", "pnpm-lock.yaml"), ("yarn", "yarn.lock")]
)
def test_a_node_project_runs_its_test_script_with_its_lockfiles_manager(
    tmp_path: Path, manager: str, lockfile: str
) -> None:
    if shutil.which(manager) is None:
        pytest.skip(f"{manager} is not installed here (npm install -g {manager})")
    package = {"name": "p", "version": "1.0.0", "scripts": {"test": "node check.js"}}
    repo = write(
        tmp_path / "p",
        {
            "package.json": json.dumps(package),
            lockfile: "lockfileVersion: '9.0'\n" if manager == "pnpm" else "# yarn lockfile v1\n",
            "check.js": "process.exit(require('./sum.js')(2, 3) === 5 ? 0 : 1)\n",
            "sum.js": "module.exports = (a, b) => a - b\n",
        },
    )
    [check] = checks.find(repo)
    assert check.name == f"{manager} test" and check.command[0] == manager
    assert check.runner == manager and check.path == [str(repo / "node_modules" / ".bin")]
    assert checks.run(check, timeout=60).status == "failed"
    write(repo, {"sum.js": "module.exports = (a, b) => a + b\n"})
    assert checks.run(check, timeout=60).status == "passed"


def test_a_lockfiles_manager_missing_or_no_node_modules_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = {"scripts": {"test": "jest"}, "devDependencies": {"jest": "29"}}
    repo = write(tmp_path, {"package.json": json.dumps(package), "bun.lockb": ""})
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/npm" if name == "npm" else None)
    [check] = checks.find(repo)
    assert check.command == ["bun", "run", "test"]
    assert check.problem == "bun.lockb names bun and bun is not on PATH; npm install -g bun"
    (repo / "bun.lockb").unlink()
    [check] = checks.find(repo)
    assert check.problem == f"node_modules is missing; run `npm install` in {repo}"
    assert checks.run(check).status == "could_not_run"


# --- configured checks ------------------------------------------------------------------


def test_configured_checks_replace_their_kind_and_broken_ones_are_reported(
    tmp_path: Path,
) -> None:
    repo = write(tmp_path / "p", {"pytest.ini": "[pytest]\n", "ruff.toml": ""})
    make_venv(repo / ".venv")
    settings = [
        CheckSetting(name="test", command="python -c 'import sys; print(sys.prefix)'"),
        CheckSetting(name="typecheck", kind="lint", command="no-such-type-checker .", timeout=5),
    ]
    found = checks.find(repo, settings=settings)
    assert [(c.name, c.kind) for c in found] == [("test", "test"), ("typecheck", "lint")]
    assert found[0].runner == "sh with .venv/bin on PATH"
    test, lint = (checks.run(c) for c in found)
    assert test.status == "passed" and test.output.strip() == str(repo / ".venv")
    assert lint.status == "could_not_run" and "no-such-type-checker: not found" in lint.reason
    assert "[checks] typecheck" in lint.reason
    slow = CheckSetting(name="test", command="sleep 5", timeout=0.3)
    [timed_out] = [checks.run(c) for c in checks.find(repo, settings=[slow])[:1]]
    assert timed_out.status == "could_not_run" and "timed out after 0.3s" in timed_out.reason
    assert checks.score([timed_out], "test") == 0.0
    failing = CheckSetting(name="test", command="exit 1")
    assert checks.run(checks.find(repo, settings=[failing])[0]).status == "failed"


def test_checks_settings_from_both_files_flags_win_and_bad_ones_are_one_line(
    tmp_path: Path,
) -> None:
    home_config = write(tmp_path, {"home.toml": '[checks]\ntest = "make test"\nlint = "ruff ."\n'})
    project = write(
        tmp_path,
        {"project.toml": '[checks]\ntest = "tox -e py311"\n[checks.types]\ncommand = "mypy ."\n'},
    )
    loaded = load_checks(home_config / "home.toml", project / "project.toml")
    assert [(c.name, c.kind, c.command) for c in loaded] == [
        ("test", "test", "tox -e py311"),
        ("lint", "lint", "ruff ."),
        ("types", "test", "mypy ."),
    ]
    flags = load_checks(home_config / "home.toml", project / "project.toml", ["a", "b"])
    assert [(c.name, c.command) for c in flags] == [("check", "a"), ("check-2", "b")]
    for table, wanted in (
        ({"x": 3}, "give a command string or a table"),
        ({"x": {"command": "y", "kind": "style"}}, "kind"),
        ({"x": {"command": "y", "timout": 3}}, "timout"),
        ({"x": {"command": "y", "timeout": -1}}, "timeout"),
    ):
        with pytest.raises(SettingsError, match=wanted) as raised:
            parse_table(table, "config.toml")
        assert "\n" not in str(raised.value) and "[checks] x in config.toml" in str(raised.value)


def bare_repo(root: Path, *, with_tests: bool = False) -> Path:
    files = {"calc.py": "def add(a, b):\n    return a + b\n"}
    if with_tests:
        files["tests/test_calc.py"] = UNITTEST_OK
    return git_init(write(root, files))


def test_tests_that_could_not_run_end_unverified_and_no_checks_or_no_tests_say_so(
    home: Home, tmp_path: Path
) -> None:
    edit = [call("write_file", path="notes.txt", content="x\n"), call("finish", summary="done")]
    script = {
        "scripted-planner": [plan()] * 6,
        "scripted-executor": edit * 6,
        "scripted-evaluator": [verdict(0.95)] * 6,
    }
    with ScriptedModelServer(Script.model_validate({"models": script})) as server:
        env = model_env(server)

        def run(repo: Path, *args: str) -> tuple[int, dict]:
            result = shoal("run", "tidy up", "-C", str(repo), "--json", *args, env=env)
            assert result.stdout.strip(), result.stderr
            return result.returncode, json.loads(result.stdout)

        code, out = run(bare_repo(tmp_path / "a", with_tests=True), "--check", "no-runner -q")
        assert code == 1 and (out["status"], out["decision"]) == ("unaccepted", "unverified")
        [check] = out["checks"]
        assert check["status"] == "could_not_run" and check["command"] == "no-runner -q"
        assert "no-runner: not found" in check["reason"] and out["tests"] == "could_not_run"
        # Without --json the progress and the result say so too.
        shown = shoal("run", "tidy up", "-C", str(tmp_path / "a"), "--check", "no-runner", env=env)
        assert shown.returncode == 1 and "unaccepted: score" in shown.stdout
        assert "check test check with sh: COULD NOT RUN: " in shown.stderr
        assert "tests could not run: the result is unverified" in shown.stderr
        assert "tests could not run: the result is unverified" in shown.stdout

        code, out = run(bare_repo(tmp_path / "b", with_tests=True), "--no-checks")
        assert code == 0 and out["status"] == "accepted" and out["tests"] == "off"
        assert out["checks"] == []
        off = shoal("run", "tidy up", "-C", str(tmp_path / "b"), "--no-checks", env=env)
        assert off.returncode == 0 and "checks off (--no-checks)" in off.stderr

        code, out = run(bare_repo(tmp_path / "c"))
        assert code == 0 and out["tests"] == "none_found"

        configured = bare_repo(tmp_path / "d")
        write(configured, {".shoal/config.toml": '[checks]\ntest = "echo 3 passed; exit 0"\n'})
        code, out = run(configured)
        assert code == 0 and [c["name"] for c in out["checks"]] == ["test"]
        assert out["checks"][0]["status"] == "passed"

    shown = json.loads(shoal("show", out["task_id"], "--json", check=True).stdout)
    assert shown["checks"][0]["name"] == "test" and shown["checks"][0]["runner"] == "sh"
    text = shoal("show", out["task_id"], check=True).stdout
    assert "test test with sh: passed" in text
    both = shoal("run", "x", "-C", str(configured), "--check", "a", "--no-checks", env=env)
    assert both.returncode == 2 and "contradict" in both.stderr


def test_doctor_shows_the_checks_a_task_here_would_run_and_with_what(
    home: Home, tmp_path: Path
) -> None:
    repo = tinydep_project(tmp_path)
    write(repo, {".shoal/config.toml": '[checks.types]\ncommand = "mypy ."\nkind = "lint"\n'})
    report = json.loads(shoal("doctor", "--json", "-C", str(repo)).stdout)
    found = {c["name"]: c for c in report["checks"]}
    assert (
        found["test unittest"]["ok"]
        and ".venv/bin/python -m unittest" in (found["test unittest"]["detail"])
    )
    assert found["lint types"]["detail"] == "mypy . (with sh with .venv/bin on PATH)"
    shutil.rmtree(repo / ".venv")
    (repo / ".shoal" / "config.toml").unlink()
    write(repo, {"conftest.py": ""})
    only_git = tmp_path / "bin"
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git") or "git")
    no_python = {"PATH": str(only_git)}
    report = json.loads(shoal("doctor", "--json", "-C", str(repo), env=no_python).stdout)
    found = {c["name"]: c for c in report["checks"]}
    assert found["test pytest"]["status"] == "warn"
    assert "no python3 on PATH" in found["test pytest"]["detail"]


def test_every_loop_command_takes_check_and_no_checks_and_the_api_shows_the_best_checks() -> None:
    from shoal.api.models import TaskDetail

    for command in (("run",), ("team", "run"), ("batch", "run")):
        text = shoal(*command, "--help", env={"COLUMNS": "200"}).stdout
        assert "--check" in text and "--no-checks" in text, command
    check = {"name": "pytest", "kind": "test", "passed": False, "status": "could_not_run"}
    iteration = {"score": 0.5, "judge_score": 0.9, "dimensions": {}, "summary": None}
    iteration |= {"tool_calls": 1, "tokens": 1, "cost_usd": 0.0, "duration_s": 1.0}
    detail = TaskDetail.model_validate(
        {
            "id": "t", "status": "unaccepted", "decision": "unverified", "score": 0.9,
            "iterations": 2, "tokens": 1, "cost_usd": 0.0, "created_at": "-",
            "description": "d", "cwd": "/r", "phase": "done", "best_iteration": 2,
            "plan": None, "files_changed": [], "summary": None, "finished_at": None,
            "findings": [],
            "iterations_detail": [
                {**iteration, "n": 1, "decision": "refine", "checks": []},
                {**iteration, "n": 2, "decision": "unverified",
                 "checks": [{**check, "output": "long", "reason": "no pytest"}]},
            ],
        }
    )  # fmt: skip
    assert [c.model_dump(exclude_defaults=True) for c in detail.checks] == [
        {**check, "reason": "no pytest"}
    ]


def test_checks_options_posted_over_http_reach_the_task(home: Home, tmp_path: Path) -> None:
    from shoal.api.models import TaskCreate
    from shoal.submission import SubmitError, task_submit

    repo = bare_repo(tmp_path / "r")
    write(repo, {".shoal/config.toml": '[checks]\nlint = "ruff check ."\n'})
    body = {"description": "x", "cwd": str(repo), "model": "o/m"}
    configured = task_submit(home, "x", repo, TaskCreate(**body).flags(), no_model="-")
    assert [(c.name, c.kind) for c in configured.options.checks] == [("lint", "lint")]
    flags = TaskCreate(**body, check=["make test"]).flags()
    options = task_submit(home, "x", repo, flags, no_model="-", virtual_env="/v").options
    assert [(c.name, c.command) for c in options.checks] == [("check", "make test")]
    assert options.run_checks and options.virtual_env == "/v"
    off = task_submit(home, "x", repo, TaskCreate(**body, no_checks=True).flags(), no_model="-")
    assert off.options.run_checks is False and off.options.checks == []
    with pytest.raises(SubmitError, match="contradict"):
        task_submit(home, "x", repo, {"check": ["a"], "no_checks": True}, no_model="-")


def test_uv_poetry_and_hatch_projects_run_through_their_tool_and_ruff_from_the_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = {"uv", "poetry", "hatch", "git"}
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n: f"/usr/bin/{n}" if n in tools else None)
    tests = {"tests/test_a.py": "def test_a():\n    pass\n"}
    lock = '[[package]]\nname = "pytest"\n'
    uv = write(tmp_path / "uv", {**tests, "pyproject.toml": "[project]\n", "uv.lock": lock})
    [check] = checks.find(uv)
    assert check.command[:5] == ["uv", "run", "--frozen", "python", "-m"]
    assert check.name == "pytest" and check.runner == "uv run"
    poetry = write(tmp_path / "poetry", {**tests, "setup.py": "", "poetry.lock": ""})
    [check] = checks.find(poetry)
    assert check.runner == "poetry run" and check.name == "pytest"
    assert check.problem and "poetry add --group dev pytest" in check.problem
    hatch = write(tmp_path / "hatch", {**tests, "pyproject.toml": "[tool.hatch.envs.test]\n"})
    write(hatch, {"tests/test_a.py": UNITTEST_OK})
    [check] = checks.find(hatch)
    assert check.runner == "hatch run" and check.command[:5] == [
        "hatch",
        "run",
        "python",
        "-m",
        "unittest",
    ]
    tools.discard("uv")  # uv.lock without uv: the interpreter on PATH (none here), said so
    [check] = checks.find(uv)
    assert check.problem and "no python3 on PATH" in check.problem

    monkeypatch.setattr(shutil, "which", real_which)
    linted = write(tmp_path / "lint", {"ruff.toml": ""})
    venv = make_venv(linted / ".venv")
    (venv / "bin" / "ruff").write_text("#!/bin/sh\necho venv ruff\n")
    (venv / "bin" / "ruff").chmod(0o755)
    [check] = checks.find(linted)
    assert check.runner == ".venv/bin/ruff" and check.command[0] == str(venv / "bin" / "ruff")
    result = checks.run(check)
    assert result.status == "passed" and result.output == "venv ruff\n"
