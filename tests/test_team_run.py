"""Team runs: subtasks in parallel git worktrees, merged, evaluated; claims on the task list."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import duckdb

from shoal import daemon
from shoal.client import query as read
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.mailbox.client import MailboxClient
from shoal.mailbox.envelope import ORCHESTRATOR
from shoal.messages.tasks import Subtask
from shoal.messages.teams import TeamTaskClaim, TeamTaskClaimResult, TeamTasksCreate, TeamTaskUpdate
from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.test_loop import call, model_env, pytest_passes, verdict

FILES = {
    "calc.py": ("def add(a, b):\n    return a - b\n", "a - b", "a + b"),
    "strs.py": ("def shout(s):\n    return s.lower()\n", "s.lower()", "s.upper()"),
    "nums.py": ("def double(n):\n    return n * 3\n", "n * 3", "n * 2"),
}
TESTS = (
    "from calc import add\nfrom nums import double\nfrom strs import shout\n\n\n"
    "def test_all():\n    assert add(2, 3) == 5\n    assert shout('a') == 'A'\n"
    "    assert double(4) == 8\n"
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_repo(root: Path, buggy: tuple[str, ...] = tuple(FILES)) -> Path:
    repo = root / "repo"
    (repo / "tests").mkdir(parents=True)
    for name, (text, old, new) in FILES.items():
        (repo / name).write_text(text if name in buggy else text.replace(old, new))
    (repo / "tests" / "test_all.py").write_text(TESTS)
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    return repo


def subtask(sid: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "title": f"fix {name}", "detail": "", "files": [name], **extra}


def fix(name: str, old: str, new: str) -> list[dict[str, Any]]:
    return [
        call("read_file", path=name),
        call("edit_file", path=name, old_string=old, new_string=new),
        call("finish", summary=f"fixed {name}"),
    ]


def run_team(server: ScriptedModelServer, repo: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = shoal(
        "team", "run", "fix the three bugs", "-C", str(repo), "--json", *args,
        env=model_env(server), timeout=150,
    )  # fmt: skip
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_three_executors_fix_three_files_in_parallel_and_all_branches_merge(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    ids = {"calc.py": "fix-add", "strs.py": "fix-shout", "nums.py": "fix-double"}
    plan = call(
        "submit_plan",
        steps=[{"title": "fix each function"}],
        subtasks=[subtask(ids[name], name) for name in FILES],
    )
    routes = {f"subtask {ids[name]} ": fix(name, old, new) for name, (_, old, new) in FILES.items()}
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan],
                # Each executor's reply takes a while: the three must overlap to finish in time.
                "scripted-executor": {
                    "routes": {k: [{**r, "delay": 0.3} for r in v] for k, v in routes.items()}
                },
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        code, out = run_team(server, repo, "--size", "3")
    assert code == 0, out
    assert out["status"] == "accepted" and out["iterations"] == 1
    assert sorted(out["files_changed"]) == sorted(FILES)
    subtasks = {s["id"]: s for s in out["subtasks"]}
    assert set(subtasks) == set(ids.values())
    assert all(s["status"] == "accepted" and s["score"] >= 0.8 for s in subtasks.values()), out[
        "subtasks"
    ]
    assert all(s["branch"] == f"shoal/team/{out['task_id']}/{s['id']}" for s in subtasks.values())
    assert pytest_passes(repo)
    # The user's branch and index are untouched: the fixes are work-tree changes.
    assert git(repo, "log", "--oneline").count("\n") == 1
    # Worktrees and branches are removed afterwards.
    assert "shoal/team" not in git(repo, "branch", "--list", "-a")
    assert git(repo, "worktree", "list").count("\n") == 1
    assert not (home.root / "worktrees" / out["task_id"]).exists()
    children = read(home, "tasks.children", {"task_id": out["task_id"]}).rows
    assert len(children) == 3 and all(row[1] == "accepted" for row in children)
    listed = read(home, "team.tasks", {"list_id": out["task_id"]}).rows
    assert sorted((r[0], r[2]) for r in listed) == sorted((i, "accepted") for i in ids.values())
    # Each executor was told which subtask it works on (`shoal team status` shows it).
    daemon.stop(home)
    with duckdb.connect(str(home.root / "shoal.duckdb"), read_only=True) as con:
        told = con.execute(
            "SELECT DISTINCT body->'payload'->>'subtask' FROM messages WHERE kind = 'exec.request'"
        ).fetchall()
    assert {row[0] for row in told} == set(ids.values())
    # Sent together, the three went one to each executor (none queued behind another).
    with duckdb.connect(str(home.root / "shoal.duckdb"), read_only=True) as con:
        took = con.execute(
            "SELECT DISTINCT sender FROM messages WHERE kind = 'exec.result' AND task_id IN "
            "(SELECT id FROM tasks WHERE parent = ?)",
            [out["task_id"]],
        ).fetchall()
    assert len(took) == 3, took
    # Each fresh worktree's first snapshot is the run's base itself, not a re-read copy.
    base = git(repo, "rev-parse", f"refs/shoal/{out['task_id']}/0").strip()
    firsts = {git(repo, "rev-parse", f"refs/shoal/{row[0]}/0").strip() for row in children}
    assert firsts == {base}
    # The three ran at once: their executions overlapped in time.
    started = [r[9] for r in children]
    finished = [r[10] for r in children]
    assert max(started) < min(finished)


def test_a_merge_conflict_goes_to_an_executor_that_resolves_it(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, buggy=("calc.py",))
    plan = call(
        "submit_plan",
        steps=[{"title": "fix add twice"}],
        subtasks=[subtask("left", "calc.py"), subtask("right", "calc.py")],
    )
    resolved = "def add(a, b):\n    return a + b  # both\n"
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan],
                "scripted-executor": {
                    "routes": {
                        "Resolve the merge conflicts": [
                            call("write_file", path="calc.py", content=resolved),
                            call("finish", summary="kept both"),
                        ],
                        "subtask left ": fix("calc.py", "a - b", "a + b"),
                        "subtask right ": fix("calc.py", "a - b", "b + a"),
                    }
                },
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        code, out = run_team(server, repo, "--size", "2")
    assert code == 0, out
    assert [s["status"] for s in out["subtasks"]] == ["accepted", "accepted"]
    assert (repo / "calc.py").read_text() == resolved
    assert "<<<<<<<" not in (repo / "calc.py").read_text()
    children = read(home, "tasks.children", {"task_id": out["task_id"]}).rows
    assert len(children) == 3  # two subtasks and the resolver


def test_two_concurrent_claims_have_one_winner_and_a_blocked_task_cannot_be_claimed(
    orchestrator: Home,
) -> None:
    tasks = [Subtask(id="a", title="a"), Subtask(id="b", title="b", depends_on=["a"])]
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        client.request(ORCHESTRATOR, TeamTasksCreate(list_id="L1", tasks=tasks), timeout=10)
    results: list[TeamTaskClaimResult] = []

    def claim(owner: str) -> None:
        with MailboxClient(orchestrator.mailbox_endpoint) as client:
            reply = client.request(
                ORCHESTRATOR, TeamTaskClaim(list_id="L1", id="a", owner=owner), timeout=10
            )
            results.append(reply.parse_payload())  # type: ignore[arg-type]

    threads = [threading.Thread(target=claim, args=(f"member-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.won for r in results) == [False, False, False, True]
    assert all("already claimed by member-" in r.reason for r in results if not r.won)
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        blocked = client.request(
            ORCHESTRATOR, TeamTaskClaim(list_id="L1", id="b", owner="x"), timeout=10
        ).parse_payload()
        assert isinstance(blocked, TeamTaskClaimResult) and not blocked.won
        assert blocked.reason == "blocked by a"
        client.request(
            ORCHESTRATOR, TeamTaskUpdate(list_id="L1", id="a", status="done"), timeout=10
        )
        unblocked = client.request(
            ORCHESTRATOR, TeamTaskClaim(list_id="L1", id="b", owner="x"), timeout=10
        ).parse_payload()
        assert isinstance(unblocked, TeamTaskClaimResult) and unblocked.won
    rows = wait_for(
        lambda: [r for r in read(orchestrator, "team.tasks", {"list_id": "L1"}).rows if r[3]],
        what="claims recorded",
    )
    assert {r[0]: r[3] for r in rows}["b"] == "x"  # type: ignore[index]


def test_a_conflict_the_resolver_leaves_is_reported_and_its_branch_kept(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path, buggy=("calc.py",))
    plan = call(
        "submit_plan",
        steps=[{"title": "fix add twice"}],
        subtasks=[subtask("left", "calc.py"), subtask("right", "calc.py")],
    )
    edits = {"left": "a + b", "right": "b + a"}
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan],
                "scripted-executor": {
                    "routes": {
                        # The resolver gives up: it finishes without touching the file.
                        "Resolve the merge conflicts": [call("finish", summary="cannot decide")],
                        **{f"subtask {k} ": fix("calc.py", "a - b", v) for k, v in edits.items()},
                    }
                },
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        code, out = run_team(server, repo, "--size", "2")
        resolver = [
            r
            for r in server.requests_for("scripted-executor")
            if "Resolve the merge conflicts" in json.dumps(r["messages"][:2])
        ]
    assert resolver, "the conflict went to no executor"
    # Whichever ended first merged; the other one conflicts and is reported.
    by_status = {s["status"]: s for s in out["subtasks"]}
    assert sorted(by_status) == ["accepted", "conflict"], out["subtasks"]
    merged, kept = by_status["accepted"]["id"], by_status["conflict"]
    # The merged result (one fix) passes the final evaluation.
    # The merged part passed its evaluation, but one subtask's work is not in it.
    assert code == 1 and (out["status"], out["decision"]) == ("unaccepted", "unmerged"), out
    assert "calc.py" in kept["detail"]
    branch = f"shoal/team/{out['task_id']}/{kept['id']}"
    assert kept["branch"] == branch
    assert "unresolved conflicts kept on " + branch in out["summary"]
    assert f"merged 1 of 2 subtasks ({merged})" in out["summary"]
    # The conflicted branch outlives the run with its commit on it; the others are gone.
    assert git(repo, "branch", "--list", "shoal/team/*").split() == [branch]
    assert edits[kept["id"]] in git(repo, "show", f"{branch}:calc.py")
    # The merged fix is what landed in the work tree, with no conflict markers.
    assert (repo / "calc.py").read_text() == f"def add(a, b):\n    return {edits[merged]}\n"
    assert not (home.root / "worktrees" / out["task_id"]).exists()


def test_a_dependent_subtask_starts_after_its_dependency_merged_and_keep_keeps_the_worktrees(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path, buggy=("calc.py", "nums.py"))
    plan = call(
        "submit_plan",
        steps=[{"title": "fix add, then double"}],
        subtasks=[
            subtask("use-add", "nums.py", depends_on=["fix-add"]),
            subtask("fix-add", "calc.py"),
        ],
    )
    first = fix("calc.py", "a - b", "a + b")
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan],
                "scripted-executor": {
                    "routes": {
                        "subtask fix-add ": [{**first[0], "delay": 1.0}, *first[1:]],
                        "subtask use-add ": [
                            call("read_file", path="calc.py"),
                            *fix("nums.py", "n * 3", "n * 2"),
                        ],
                    }
                },
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        code, out = run_team(server, repo, "--size", "2", "--keep")
        dependent = [
            r
            for r in server.requests_for("scripted-executor")
            if "subtask use-add " in json.dumps(r["messages"][:2])
        ]
    assert code == 0, out
    assert out["status"] == "accepted"
    assert [s["status"] for s in out["subtasks"]] == ["accepted", "accepted"]
    assert [s["id"] for s in out["subtasks"]] == ["fix-add", "use-add"]  # dependency order
    assert pytest_passes(repo)
    # use-add's worktree started from the merge of fix-add: reading calc.py shows the fix.
    results = [m for m in dependent[1]["messages"] if m["role"] == "tool"]
    assert results and "return a + b" in results[0]["content"]
    # It started only once fix-add had ended (and merged), though two executors were free.
    children = {r[0]: r for r in read(home, "tasks.children", {"task_id": out["task_id"]}).rows}
    by_subtask = {s["id"]: children[s["task_id"]] for s in out["subtasks"]}
    assert by_subtask["use-add"][9] >= by_subtask["fix-add"][10]
    # --keep: the branches and worktrees are still there after the run.
    task = out["task_id"]
    branches = git(repo, "branch", "--list", f"shoal/team/{task}/*").split()
    assert {f"shoal/team/{task}/{s}" for s in ("fix-add", "use-add", "_merged")} <= set(branches)
    kept = home.root / "worktrees" / task
    assert {p.name for p in kept.iterdir()} == {"fix-add", "use-add", "_merged"}
    assert "a + b" in (kept / "_merged" / "calc.py").read_text()
    assert str(kept / "use-add") in git(repo, "worktree", "list")
