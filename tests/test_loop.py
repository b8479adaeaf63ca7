"""The agent loop end to end, through the CLI, with a scripted model over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shoal.client import query as read
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import places_holding, shoal, wait_for

# What README says `--json` prints.
RESULT_KEYS = (
    "task_id",
    "status",
    "decision",
    "score",
    "iterations",
    "tokens",
    "cost_usd",
    "files_changed",
    "summary",
)
BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(BUGGY)
    (repo / "tests" / "test_calc.py").write_text(TEST)
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    for cmd in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start"],
    ):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True)
    return repo


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def plan() -> dict[str, Any]:
    return call("submit_plan", steps=[{"title": "fix add in calc.py", "detail": "a - b -> a + b"}])


def verdict(score: float, *findings: dict[str, str]) -> dict[str, Any]:
    return call(
        "submit_evaluation",
        score=score,
        dimensions={"correctness": score, "completeness": score},
        findings=list(findings),
    )


def model_env(server: ScriptedModelServer) -> dict[str, str]:
    return {
        "SHOAL_PLANNER_MODEL": "openai/scripted-planner",
        "SHOAL_EXECUTOR_MODEL": "openai/scripted-executor",
        "SHOAL_EVALUATOR_MODEL": "openai/scripted-evaluator",
        "SHOAL_BASE_URL": server.base_url,
        "SHOAL_PRELOAD": "litellm",
    }


def run_task(
    server: ScriptedModelServer, repo: Path, *args: str, bare: bool = False
) -> tuple[int, dict[str, Any]]:
    """``shoal run "fix the add function" -C repo --json ...``; ``bare``: without the ``run``."""
    result = shoal(
        *(() if bare else ("run",)),
        "fix the add function",
        "-C",
        str(repo),
        "--json",
        *args,
        env=model_env(server),
        timeout=120,
    )
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def pytest_passes(repo: Path) -> bool:
    return (
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=repo,
            capture_output=True,
        ).returncode
        == 0
    )


def test_a_bug_is_fixed_and_every_step_is_recorded(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("shell", command="rm calc.py"),  # refused by --deny
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("finish", summary="add now adds"),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        # the README's headline form: `shoal "task"` is `shoal run "task"`
        code, out = run_task(
            server, repo, "--deny", "shell:rm *", "--allow", "shell:pytest*", bare=True
        )
        refusal = server.requests_for("scripted-executor")[1]["messages"][-1]["content"]
    assert "shell rm calc.py is denied by the permission rule (deny shell 'rm *')" in refusal
    assert code == 0, out
    assert set(out) >= set(RESULT_KEYS)
    assert out["status"] == "accepted" and out["decision"] == "quality"
    assert out["iterations"] == 1 and out["score"] >= 0.8
    assert out["files_changed"] == ["calc.py"] and out["summary"] == "add now adds"
    assert out["tokens"] > 0
    assert "a + b" in (repo / "calc.py").read_text() and pytest_passes(repo)
    shown = json.loads(shoal("show", out["task_id"], "--json", check=True).stdout)
    assert shown["status"] == "accepted" and shown["score"] == out["score"]
    assert [it["n"] for it in shown["iterations_detail"]] == [1]
    assert [c["name"] for c in shown["tool_calls"]] == ["shell", "read_file", "edit_file", "finish"]
    assert shown["plan"]["steps"][0]["title"] == "fix add in calc.py"
    checks = shown["iterations_detail"][0]["checks"]
    assert any(c["kind"] == "test" and c["passed"] for c in checks)
    listed = read(home, "tasks.recent", {"limit": 5})
    assert listed.rows[0][0] == out["task_id"]


def test_findings_drive_the_next_iteration_and_a_regression_keeps_the_best(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    blocker = {
        "severity": "blocker",
        "title": "add(2, 3) is still wrong",
        "detail": "it returns -1",
        "fix": "use a + b",
    }
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    # iteration 1: a wrong fix
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a * b"),
                    call("finish", summary="tried multiplication"),
                    # iteration 2: the right fix (after reading the finding)
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a * b", new_string="a + b"),
                    call("finish", summary="add now adds"),
                    # iteration 3: a regression
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a + b", new_string="a + b + 1"),
                    call("finish", summary="made it worse"),
                ],
                "scripted-evaluator": [verdict(0.2, blocker), verdict(0.7), verdict(0.3, blocker)],
            }
        }
    )
    with ScriptedModelServer(script, requests_log=tmp_path / "requests.jsonl") as server:
        code, out = run_task(server, repo, "--quality", "0.9", "--iterations", "3")
    assert code == 1 and out["status"] == "unaccepted"
    assert out["decision"] == "regression" and out["iterations"] == 3
    assert out["score"] == pytest.approx(0.7, abs=0.31)  # the best iteration's composite
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    requests = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    executor = [r for r in requests if r["model"] == "scripted-executor"]
    assert "add(2, 3) is still wrong" in json.dumps(executor[3]["messages"])  # iteration 2
    assert "add(2, 3) is still wrong" not in json.dumps(executor[0]["messages"])
    shown = json.loads(shoal("show", out["task_id"], "--json", check=True).stdout)
    assert [it["decision"] for it in shown["iterations_detail"]] == [
        "refine",
        "refine",
        "regression",
    ]
    assert shown["best_iteration"] == 2
    assert [f["title"] for f in shown["findings"] if f["iteration"] == 1] == [blocker["title"]]


def test_shoal_demo_fixes_its_repository_in_two_iterations(home: Home, tmp_path: Path) -> None:
    result = shoal(
        "demo", "--json", "--dir", str(tmp_path), env={"SHOAL_PRELOAD": "litellm"}, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "accepted" and out["iterations"] == 2 and out["tests_pass"] is True
    assert "scripted" in result.stderr
    assert "len(numbers)" in (tmp_path / "demo-repo" / "stats.py").read_text()


def test_no_model_or_no_repository_is_a_usage_error(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    no_model = shoal("run", "do it", "-C", str(repo), env={"SHOAL_MODEL": ""})
    assert no_model.returncode == 2 and "no model configured" in no_model.stderr
    not_repo = shoal("run", "do it", "-C", str(tmp_path), env={"SHOAL_MODEL": "openai/x"})
    assert not_repo.returncode == 2 and "not a git repository" in not_repo.stderr


def test_a_budget_breaker_stops_a_run_that_would_go_on(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    costly = {"usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    {**call("read_file", path="calc.py"), **costly},
                    {**call("finish", summary="looked around"), **costly},
                ],
                "scripted-evaluator": [verdict(0.3)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        code, out = run_task(server, repo, "--budget-tokens", "1500", "--iterations", "5")
        executor_calls = len(server.requests_for("scripted-executor"))
    assert code == 1
    assert (out["status"], out["decision"], out["iterations"]) == ("unaccepted", "budget_tokens", 1)
    assert executor_calls <= 2  # the iteration stopped at the budget; no second one started


def test_a_model_that_keeps_failing_fails_the_task_clearly(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [{"status": 500}],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        code, out = run_task(server, repo)
    assert code == 1 and out["status"] == "failed"
    assert out["decision"].startswith("error: model openai/scripted-executor: HTTP 500 after")
    shown = json.loads(shoal("show", out["task_id"], "--json", check=True).stdout)
    assert shown["status"] == "failed" and shown["plan"]["steps"]
    assert (repo / "calc.py").read_text() == BUGGY


def test_refused_tool_calls_reach_the_model_and_leave_files_alone(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    (tmp_path / "secret.txt").write_text("outside")
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a", new_string="x"),
                    call("read_file", path="../secret.txt"),
                    call("finish", summary="could not"),
                ],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        run_task(server, repo)  # unaccepted: the bug stays, the tests fail
        executor = server.requests_for("scripted-executor")
    assert "occurs" in executor[2]["messages"][-1]["content"]
    assert "outside the workspace" in executor[3]["messages"][-1]["content"]
    assert (repo / "calc.py").read_text() == BUGGY


def test_tasks_and_costs_list_what_ran_and_keys_are_never_recorded(
    home: Home, tmp_path: Path
) -> None:
    import os

    repo = make_repo(tmp_path)
    keys = {
        "SHOAL_API_KEY": f"sk-{os.urandom(12).hex()}",
        "OPENAI_API_KEY": f"sk-{os.urandom(12).hex()}",
    }
    marker = f"note-{os.urandom(6).hex()}"  # in the task text: the scan must find it
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [call("finish", summary="nothing to do")],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        ran = shoal(
            "run",
            f"fix it ({marker})",
            "-C",
            str(repo),
            "--json",
            env={**model_env(server), **keys},
            timeout=120,
        )
        sent = server.api_keys
    out = json.loads(ran.stdout)
    listed = [json.loads(line) for line in shoal("tasks", "--json", check=True).stdout.splitlines()]
    assert listed[0]["id"] == out["task_id"] and listed[0]["status"] == out["status"]
    costs = json.loads(shoal("status", "--costs", "--json", check=True).stdout)["costs"]
    assert {c["role"] for c in costs} == {"planner", "executor", "evaluator"}
    assert sum(c["prompt_tokens"] + c["completion_tokens"] for c in costs) == out["tokens"]
    # README: keys never travel in messages or land in the database; actors read them
    # from their environment (and did send one to the model).
    secrets = list(keys.values())
    assert sent & set(secrets), sent
    assert shoal("orchestrator", "stop").returncode == 0
    assert places_holding(home, *secrets) == []
    assert {"tasks.description", "messages.body"} <= set(places_holding(home, marker))
    assert not any(k in ran.stdout + ran.stderr for k in secrets)


def test_the_time_budget_cancels_a_slow_iteration(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [{**call("read_file", path="calc.py"), "delay": 1.5}],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        code, out = run_task(server, repo, "--timeout", "4")
        evaluations = len(server.requests_for("scripted-evaluator"))
    assert code == 1 and (out["status"], out["decision"]) == ("unaccepted", "budget_time")
    assert evaluations == 0


def test_rate_limits_and_context_overflow_do_not_fail_the_task(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    overflow = {
        "status": 400,
        "error": {
            "message": "This model's maximum context length is 8192 tokens",
            "code": "context_length_exceeded",
        },
    }
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [{"status": 429, "headers": {"Retry-After": "1"}}, plan()],
                "scripted-executor": [
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    overflow,
                    call("finish", summary="fixed after pruning"),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        code, out = run_task(server, repo)
        executor = server.requests_for("scripted-executor")
    assert code == 0 and out["status"] == "accepted" and out["summary"] == "fixed after pruning"
    assert "[pruned" in json.dumps(executor[3]["messages"])  # the retry after the overflow
    assert pytest_passes(repo)


def test_project_config_and_a_changed_model_env_restart_an_idle_orchestrator(
    home: Home, tmp_path: Path
) -> None:
    from shoal import daemon

    repo = make_repo(tmp_path)
    (repo / ".shoal").mkdir()
    (repo / ".shoal" / "config.toml").write_text(
        '[shoal]\nplanner_model = "openai/scripted-planner"\n'
        'executor_model = "openai/scripted-executor"\n'
        'evaluator_model = "openai/scripted-evaluator"\n'
    )
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    # A repository's models are ignored until the user approves its file (tests/test_trust.py).
    shoal("config", "approve", cwd=repo, check=True)
    old_pid, _ = daemon.start(home)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [call("finish", summary="config works")],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        result = shoal(
            "run",
            "fix it",
            "-C",
            str(repo),
            "--json",
            env={"SHOAL_BASE_URL": server.base_url},
            timeout=120,
        )
    assert json.loads(result.stdout)["summary"] == "config works", result.stderr
    assert daemon.running_pid(home) != old_pid


def test_print_output_is_the_final_summary_only(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("finish", summary="The final answer."),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        printed = shoal(
            "run", "fix it", "-C", str(repo), "--print", env=model_env(server), timeout=120
        )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == "The final answer.\n" and printed.stderr == ""
    # the edit before any read was refused, the one after the read went through
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_a_task_survives_a_kill_9_of_the_orchestrator(home: Home, tmp_path: Path) -> None:
    import os
    import signal
    import time

    from shoal import daemon

    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("read_file", path="calc.py"),
                    {
                        **call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                        "delay": 3.0,
                    },
                    call("finish", summary="fixed across a crash"),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "run", "fix it", "-C", str(repo), "--json"],
            env={**os.environ, **model_env(server)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while len(server.requests_for("scripted-executor")) < 2:  # the slow call is running
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            os.kill(daemon.running_pid(home), signal.SIGKILL)
            time.sleep(0.5)
            daemon.start(home, env=model_env(server))
            stdout, stderr = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    out = json.loads(stdout)
    assert out["status"] == "accepted" and out["summary"] == "fixed across a crash"
    assert "resumed 1 running task" in (home.logs / "orchestrator.log").read_text()
    assert pytest_passes(repo)


def test_a_task_can_be_cancelled_while_it_runs(home: Home, tmp_path: Path) -> None:
    import os
    import signal
    import time

    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [{**call("read_file", path="calc.py"), "delay": 1.0}],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "run", "fix it", "-C", str(repo), "--json"],
            env={**os.environ, **model_env(server)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not server.requests_for("scripted-executor"):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does
            stdout, stderr = proc.communicate(timeout=60)
            evaluations = len(server.requests_for("scripted-evaluator"))
        finally:
            if proc.poll() is None:
                proc.kill()
    out = json.loads(stdout)
    assert (out["status"], out["decision"]) == ("cancelled", "cancelled"), stderr
    assert "cancelling" in stderr and evaluations == 0
    assert proc.returncode == 1


def test_a_cost_budget_stops_a_run_on_a_priced_model_and_bypass_mode_runs_shell(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    costly = {"usage": {"prompt_tokens": 100_000, "completion_tokens": 1_000}}  # ~$0.26
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "gpt-4o": [
                    # no --allow rule: only bypass mode lets it run (it would ask, so refused)
                    call("shell", command="touch bypassed.txt"),
                    {**call("read_file", path="calc.py"), **costly},
                    {**call("finish", summary="looked around"), **costly},
                ],
                "scripted-evaluator": [verdict(0.3)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        env = {**model_env(server), "SHOAL_EXECUTOR_MODEL": "openai/gpt-4o"}
        result = shoal(
            "run",
            "fix the add function",
            "-C",
            str(repo),
            "--json",
            "--budget-usd",
            "0.001",
            "--budget-tokens",
            "10000000",
            "-i",
            "5",
            "--permission-mode",
            "bypass",
            env=env,
            timeout=120,
        )
        executor = server.requests_for("gpt-4o")
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert (out["status"], out["decision"], out["iterations"]) == ("unaccepted", "budget_usd", 1)
    assert out["cost_usd"] >= 0.001 and len(executor) <= 3  # no second iteration started
    shell_result = executor[1]["messages"][-1]["content"]
    assert (repo / "bypassed.txt").exists(), shell_result
    assert "not allowed" not in shell_result and "--permission-mode" not in shell_result


def test_a_plateau_stops_the_loop_and_is_learned_quietly_and_plan_mode_refuses_edits(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    # iteration 1: plan mode lets the read through and refuses the edit
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("finish", summary="described the fix"),
                    # iteration 2
                    call("finish", summary="described it again"),
                ],
                "scripted-evaluator": [verdict(0.50), verdict(0.51)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        quiet = shoal(
            "run",
            "fix the add function",
            "-C",
            str(repo),
            "--quiet",
            "--quality",
            "0.9",
            "-i",
            "4",
            "--permission-mode",
            "plan",
            env=model_env(server),
            timeout=120,
        )
        refusal = server.requests_for("scripted-executor")[2]["messages"][-1]["content"]
    assert "the run is in plan mode (read-only), so edit_file is not allowed" in refusal
    assert (repo / "calc.py").read_text() == BUGGY
    # --quiet: no progress on stderr, the result on stdout
    assert quiet.returncode == 1 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith("unaccepted: score ")
    assert "after 2 iteration(s) (plateau)" in quiet.stdout
    assert "described it again" in quiet.stdout and "details: shoal show " in quiet.stdout

    def plateau_learnings() -> list[dict[str, Any]]:
        listed = shoal("memory", "list", "--json", check=True).stdout.splitlines()
        return [m for m in map(json.loads, listed) if m["kind"] == "plateau"]

    learned = wait_for(plateau_learnings, 30, what="the learner's plateau learning")
    assert "refinements stopped improving the score" in learned[0]["content"]  # type: ignore[index]
