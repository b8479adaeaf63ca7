"""shoal replay: recorded tasks run again from their base snapshot, with another model."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from shoal.client import query as read
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal
from tests.test_cli import assert_one_line_error
from tests.test_loop import BUGGY, call, make_repo, model_env, plan, verdict

FIX = [
    call("read_file", path="calc.py"),
    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
    call("finish", summary="add now adds"),
]
BREAK = [
    call("read_file", path="data.txt"),  # untracked when the original ran: in its base
    call("read_file", path="calc.py"),
    call("edit_file", path="calc.py", old_string="a - b", new_string="a * b"),
    call("finish", summary="multiplied"),
]
WRONG = {"severity": "blocker", "title": "add multiplies", "detail": "", "fix": "use +"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def repo_state(repo: Path) -> dict[str, Any]:
    """Everything of the user's that a replay must leave alone, byte for byte."""
    files = {
        str(p.relative_to(repo)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return {
        "files": files,
        "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "HEAD": (repo / ".git" / "HEAD").read_text(),
        "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
                    "refs/heads", "refs/tags", "refs/stash"),
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
        "status": git(repo, "--no-optional-locks", "status", "--porcelain=v2"),
    }  # fmt: skip


def run(server: ScriptedModelServer, repo: Path, description: str, *args: str) -> dict[str, Any]:
    ran = shoal(
        "run", description, "-C", str(repo), "--json", *args, env=model_env(server), timeout=120
    )
    assert ran.stdout.strip(), ran.stderr
    return json.loads(ran.stdout)


def replay(server: ScriptedModelServer, *args: str) -> tuple[int, dict[str, Any], str]:
    ran = shoal("replay", *args, "--json", env=model_env(server), timeout=180)
    return ran.returncode, json.loads(ran.stdout) if ran.stdout.strip() else {}, ran.stderr


def sql(statement: str) -> list[dict[str, Any]]:
    out = shoal("sql", statement, "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def recorded(task_id: str) -> list[list[dict[str, Any]]]:
    return [
        sql(f"select * from main.{table} where {key} = '{task_id}' order by all")
        for table, key in (("tasks", "id"), ("iterations", "task_id"), ("findings", "task_id"))
    ]


def learned(task_id: str) -> int:
    return sql(
        f"select count(*) as n from messages where kind = 'learn.request' and task_id = '{task_id}'"
    )[0]["n"]


def assert_replay_recorded(home: Home, original: str, again: str) -> None:
    """The replay's own records: tagged, its own models, scores, tool calls and findings."""
    (row,) = sql(
        "select replay_of, kind, cwd, planner_model, executor_model, evaluator_model from tasks "
        f"where task_id = '{again}'"
    )
    assert row["replay_of"] == original and row["kind"] == "replay"
    assert row["cwd"].startswith(str(home.root / "worktrees" / f"replay-{original}"))
    assert (row["planner_model"], row["executor_model"], row["evaluator_model"]) == (
        "openai/scripted-planner", "openai/scripted-bad", "openai/scripted-evaluator",
    )  # fmt: skip
    scores = sql(f"select iteration, score from iterations where task_id = '{again}'")
    assert [s["iteration"] for s in scores] == [1, 2] and all(s["score"] < 0.5 for s in scores)
    reads = sql(f"select detail, ok from tool_calls where task_id = '{again}' "
                "and name = 'read_file' order by recorded_at")  # fmt: skip
    assert json.loads(reads[0]["detail"]) == {"path": "data.txt"} and reads[0]["ok"]
    findings = sql(f"select title from findings where task_id = '{again}'")
    assert {f["title"] for f in findings} == {"add multiplies"}


def test_an_accepted_task_replayed_with_a_failing_executor_leaves_original_and_repo_alone(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": FIX,
                "scripted-bad": BREAK,  # then it repeats `finish`, changing nothing
                "scripted-evaluator": [verdict(0.95), verdict(0.2, WRONG)],
            }
        }
    )
    (repo / "data.txt").write_text("untracked\n")
    with ScriptedModelServer(script) as server:
        original = run(server, repo, "fix the add function", "-i", "2")
        assert original["status"] == "accepted"
        (repo / "data.txt").unlink()
        # Your own work since: an untracked file, a staged one, the task's fix uncommitted.
        (repo / "notes.txt").write_text("mine\n")
        (repo / "staged.txt").write_text("staged\n")
        git(repo, "add", "staged.txt")
        before, rows_before = repo_state(repo), recorded(original["task_id"])
        code, report, err = replay(
            server, original["task_id"][:10], "--model", "openai/scripted-bad",
            "--role", "executor",
        )  # fmt: skip
        bad_calls = len(server.requests_for("scripted-bad"))
    assert code == 0, err
    assert repo_state(repo) == before
    assert recorded(original["task_id"]) == rows_before
    assert report["model"] == "openai/scripted-bad" and report["roles"] == ["executor"]
    (pair,) = report["replays"]
    assert pair["original"] == {
        **pair["original"], "task_id": original["task_id"], "status": "accepted",
        "accepted": True, "score": original["score"], "iterations": 1,
        "executor_model": "openai/scripted-executor",
    }  # fmt: skip
    again = pair["replay"]
    assert report["summary"]["original"]["accepted"] == 1
    assert report["summary"]["replay"] == {
        "tasks": 1, "accepted": 0, "mean_score": again["score"], "tokens": again["tokens"],
        "cost_usd": again["cost_usd"], "duration_s": again["duration_s"],
    }  # fmt: skip
    assert again["task_id"] != original["task_id"] and bad_calls >= 3
    assert again["status"] == "unaccepted" and not again["accepted"]
    assert again["executor_model"] == "openai/scripted-bad" and again["score"] < 0.5
    assert again["iterations"] == 2 and again["tokens"] > 0 and again["duration_s"] > 0
    assert_replay_recorded(home, original["task_id"], again["task_id"])
    # The replay is not learned from, nor mined; its worktree is gone.
    assert learned(original["task_id"]) == 1 and learned(again["task_id"]) == 0
    mined = {row[0] for row in read(home, "mining.tasks").rows}
    assert original["task_id"] in mined and again["task_id"] not in mined
    assert not list((home.root / "worktrees").iterdir())
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "rev-parse", f"refs/shoal/{again['task_id']}/1")  # its own snapshots
    twice = shoal("replay", again["task_id"], "--model", "m")
    assert_one_line_error(twice, f"is a replay of {original['task_id']}: replay that one")


def test_every_role_by_default_a_sample_and_learn_on_request(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": FIX,
                "scripted-evaluator": [verdict(0.95)],
                # One model playing every role, told apart by each role's first message.
                "scripted-all": {
                    "routes": {
                        "Repository files:": [plan()],
                        "Diff of this iteration": [verdict(0.9)],
                    },
                    "replies": FIX,
                },
            }
        }
    )
    with ScriptedModelServer(script) as server:
        original = run(server, repo, "fix the add function")
        before = repo_state(repo)
        ran = shoal(
            "replay", "--sample", "3", "--since", "all", "--model", "openai/scripted-all",
            "--learn", env=model_env(server), timeout=180,
        )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert repo_state(repo) == before
    lines = ran.stdout.splitlines()
    assert lines[0] == (
        f"replay of {original['task_id']} with openai/scripted-all "
        "(planner, executor, evaluator, small)"
    )
    table = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert table["status"] == ["accepted", "accepted"]
    assert table["executor"] == ["openai/scripted-executor", "openai/scripted-all"]
    again = table["task"][1]
    (row,) = sql(f"select options from main.tasks where id = '{again}'")
    models = json.loads(row["options"])["models"]
    assert {role: m["model"] for role, m in models.items() if role != "embedding"} == {
        role: "openai/scripted-all" for role in ("planner", "executor", "evaluator", "small")
    }
    used = sql(f"select distinct role, model from costs where task_id = '{again}' order by 1")
    assert [(u["role"], u["model"]) for u in used] == [
        ("evaluator", "openai/scripted-all"), ("executor", "openai/scripted-all"),
        ("planner", "openai/scripted-all"),
    ]  # fmt: skip
    assert learned(again) == 1  # --learn
    assert again in {row[0] for row in read(home, "mining.tasks").rows}
    assert "replaying" in ran.stderr  # progress on stderr without --json


def test_a_pruned_base_snapshot_and_tasks_that_cannot_be_replayed_are_one_line(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": {
                    "routes": {"(no plan)": [{"status": 400, "error": {"message": "refused"}}]},
                    "replies": [plan()],
                },
                "scripted-executor": FIX,
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        pruned = run(server, repo, "fix the add function")["task_id"]
        unplanned = run(server, repo, "fix it (no plan)")
        assert unplanned["status"] == "failed"
        git(repo, "update-ref", "-d", f"refs/shoal/{pruned}/0")
        before = repo_state(repo)
        code, _, err = replay(server, pruned, "--model", "openai/scripted-executor")
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("shoal: error: ") and f"refs/shoal/{pruned}/0 was pruned" in err
        code, _, err = replay(server, unplanned["task_id"], "--model", "m")
        assert "has no base snapshot" in err and code == 1
        code, report, err = replay(server, "NOSUCHTASK", pruned, "--model", "m")
        assert code == 1 and report["replays"] == []
        assert [e["task_id"] for e in report["errors"]] == ["NOSUCHTASK", pruned]
        assert "no task 'NOSUCHTASK'" in report["errors"][0]["error"]
        assert len(err.strip().splitlines()) == 2
        # Sampling picks only tasks that can be replayed: none is left here.
        code, _, err = replay(server, "--sample", "5", "--since", "all", "--model", "m")
        assert code == 1 and "no recorded task to replay" in err
    assert repo_state(repo) == before and (repo / "calc.py").read_text() != BUGGY
    listed = shoal("--help", check=True).stdout
    assert all(f"  {name} " in listed for name in ("sql", "stats", "replay"))
    usage = shoal("replay", "--help", check=True).stdout
    assert all(flag in usage for flag in ("--model", "--role", "--sample", "--since", "--learn"))
    for args, needle in (
        (("--model", "m"), "task ids or --sample"),
        ((pruned, "--sample", "2", "--model", "m"), "task ids or --sample"),
        ((pruned, "--model", "m", "--role", "judge"), "--role 'judge'"),
    ):
        result = shoal("replay", *args)
        assert result.returncode == 2
        assert_one_line_error(result, needle)


def test_a_replay_has_a_work_tree_of_its_own_and_never_queues_behind_yours(
    home: Home, tmp_path: Path
) -> None:
    from shoal.messages.tasks import ModelChoice, TaskSubmit
    from shoal.orchestrator.scheduler import TaskRun, WorkTrees
    from shoal.replay import Recorded, submission, worktree
    from shoal.workspace import snapshots

    repo = make_repo(tmp_path)
    sha = snapshots.base_snapshot(repo, "T0")
    before = repo_state(repo)
    trees, tasks = WorkTrees(), {}
    yours = TaskRun("T1", TaskSubmit(description="yours", cwd=str(repo)), "client")
    tasks["T1"] = yours
    assert trees.claim(yours, tasks) is None
    recorded_task = Recorded(
        id="T0", description="fix", cwd=str(repo), options={}, base=sha, parent=None,
        status="accepted", decision="quality", score=0.9, iterations=1, tokens=1,
        cost_usd=0.0, created_at="", finished_at=None, duration_s=1.0,
    )  # fmt: skip
    with worktree(home, repo, sha, "T0") as tree:
        assert (tree / "calc.py").read_text() == BUGGY and tree.parent == home.root / "worktrees"
        submit = submission(recorded_task, tree, ModelChoice(model="m"), ("executor",), learn=False)
        assert submit.options.replay_of == "T0" and submit.options.learn is False
        again = TaskRun("T2", submit, "client")
        tasks["T2"] = again
        assert trees.claim(again, tasks) is None  # not queued behind T1
        second = TaskRun("T3", TaskSubmit(description="also yours", cwd=str(repo)), "client")
        tasks["T3"] = second
        assert trees.claim(second, tasks) == "T1"  # while a second task in your tree is
    assert not tree.exists() and repo_state(repo) == before


def test_several_replays_are_summed_up_under_their_pairs(capsys) -> None:
    from shoal.cli.replay import _print
    from shoal.replay import summary

    def side(task_id: str, status: str, score: float | None, tokens: int) -> dict[str, Any]:
        return {"task_id": task_id, "status": status, "decision": "quality",
                "accepted": status == "accepted", "score": score, "iterations": 1,
                "tokens": tokens, "cost_usd": 0.5, "duration_s": 10.0,
                "executor_model": "m"}  # fmt: skip

    pairs = [
        {"original": side("A", "accepted", 0.9, 100), "replay": side("B", "failed", None, 50)},
        {"original": side("C", "accepted", 0.8, 100), "replay": side("D", "accepted", 0.6, 70)},
    ]
    report = {"model": "m2", "roles": ["executor"], "replays": pairs, "errors": []}
    report["summary"] = {k: summary([p[k] for p in pairs]) for k in ("original", "replay")}
    assert report["summary"]["replay"]["mean_score"] == 0.6  # a failed replay has no score
    _print(report)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [
        "originals 2/2 accepted, mean score 0.85, 200 tokens, $1.0000, 20.0s",
        "replays   1/2 accepted, mean score 0.60, 120 tokens, $1.0000, 20.0s",
    ]
    assert lines.count("replay of A with m2 (executor)") == 1 and len(lines) == 2 * 10 + 2
