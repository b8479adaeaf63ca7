"""A work tree shared with a person: a task records, judges and restores only its own changes.

The first tests drive the snapshot plumbing directly on real repositories; the
last ones run scripted tasks through the CLI while "the user" edits the same
work tree, and check that nothing of theirs is reverted, deleted or counted as
the task's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from shoal.workspace import snapshots
from shoal.workspace.changes import TaskChanges, forget, record_dir
from tests.conftest import shoal
from tests.test_loop import call, model_env, plan, verdict

CALC = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=u", "-c", "user.email=u@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    ).stdout


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "calc.py").write_text(CALC)
    (repo / "README.md").write_text("# calc\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    return repo


def test_a_snapshot_of_paths_leaves_out_what_else_changed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    base = snapshots.base_snapshot(
        repo,
        "t1",
    )
    (repo / "calc.py").write_text(CALC.replace("a - b", "a + b", 1))
    (repo / "new.py").write_text("x = 1\n")
    (repo / "README.md").write_text("# calc\nthe user's line\n")  # someone else's
    (repo / "user.txt").write_text("mine\n")  # someone else's
    (repo / "debug.log").write_text("ignored\n")
    sha = snapshots.snapshot_paths(repo, "t1", 1, base, ["calc.py", "new.py", "debug.log"])
    assert snapshots.changed_files(repo, base, sha) == ["calc.py", "new.py"]
    assert "the user's line" not in snapshots.diff(repo, base, sha)
    # A path the task deleted is gone from its snapshot; one never there is no error.
    (repo / "new.py").unlink()
    sha2 = snapshots.snapshot_paths(repo, "t1", 2, sha, ["new.py", "never.py"])
    assert snapshots.changed_files(repo, base, sha2) == ["calc.py"]
    assert git(repo, "status", "--porcelain") == (
        " M README.md\n M calc.py\n?? user.txt\n"
    )  # the user's index and HEAD untouched


def test_apply_moves_only_the_tasks_paths_and_never_over_someone_elses_change(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    base = snapshots.base_snapshot(repo, "t2")
    (repo / "calc.py").write_text(CALC.replace("a - b", "a + b", 1))
    (repo / "a.txt").write_text("one\ntwo\nthree\n")
    best = snapshots.snapshot_paths(repo, "t2", 1, base, ["calc.py", "a.txt"])
    (repo / "calc.py").write_text(CALC.replace("a - b", "a * b"))  # a worse iteration 2
    (repo / "a.txt").write_text("one\ntwo\nTHREE\n")
    (repo / "b.txt").write_text("created by iteration 2\n")
    last = snapshots.snapshot_paths(repo, "t2", 2, best, ["calc.py", "a.txt", "b.txt"])
    # Meanwhile the user: a line on top of a.txt (merges), their own b.txt edit (conflicts),
    # a new file and an edit of a file the task never touched.
    (repo / "a.txt").write_text("zero\none\ntwo\nTHREE\n")
    (repo / "b.txt").write_text("created by iteration 2\nand edited by the user\n")
    (repo / "user.txt").write_text("mine\n")
    (repo / "README.md").write_text("# calc\nuser\n")

    done = snapshots.apply(repo, last, best)

    assert done.written == ["calc.py"] and done.merged == ["a.txt"] and done.kept == ["b.txt"]
    assert (repo / "calc.py").read_text() == CALC.replace("a - b", "a + b", 1)
    assert (repo / "a.txt").read_text() == "zero\none\ntwo\nthree\n"
    assert (repo / "b.txt").read_text() == "created by iteration 2\nand edited by the user\n"
    assert (repo / "user.txt").read_text() == "mine\n"
    assert (repo / "README.md").read_text() == "# calc\nuser\n"
    # Applying again changes nothing: every path is as wanted or someone else's now.
    again = snapshots.apply(repo, last, best)
    assert again.written == [] and again.kept == ["b.txt"]


def test_apply_removes_what_the_task_created_unless_someone_changed_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    base = snapshots.base_snapshot(repo, "t3")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "made.py").write_text("made\n")
    (repo / "touched.py").write_text("made too\n")
    last = snapshots.snapshot_paths(repo, "t3", 1, base, ["pkg/made.py", "touched.py"])
    (repo / "touched.py").write_text("made too\nthen the user's\n")
    done = snapshots.apply(repo, last, base)  # back to before the task
    assert done.written == ["pkg/made.py"] and done.kept == ["touched.py"]
    assert not (repo / "pkg").exists() and (repo / "touched.py").exists()


def test_task_changes_are_kept_in_the_git_dir_and_found_by_a_probe(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    changes = TaskChanges(repo, "t4", 1)
    with changes.writing(repo / "calc.py"):
        (repo / "calc.py").write_text("x\n")
    (repo / "user.txt").write_text("not during a call\n")
    with changes.probing():
        (repo / "made by shell.txt").write_text("y\n")
        (repo / "README.md").unlink()
        (repo / "noise.log").write_text("ignored\n")
    (repo / "user2.txt").write_text("not during a call either\n")
    with changes.probing():
        pass
    changes.close()
    assert changes.paths == {"calc.py", "made by shell.txt", "README.md"}
    # An executor taking over iteration 1 after a crash knows all of it.
    assert TaskChanges(repo, "t4", 1).paths == changes.paths
    assert TaskChanges(repo, "t4", 2).paths == set()
    forget(repo, "t4")
    assert not list(record_dir(repo).iterdir())


def _wait_requests(server: ScriptedModelServer, model: str, n: int, proc: Any) -> None:
    deadline = time.monotonic() + 90
    while len(server.requests_for(model)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no request {n} for {model}"
        time.sleep(0.02)


def _start(server: ScriptedModelServer, repo: Path, task: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", task, "-C", str(repo), *args],
        env={**os.environ, **model_env(server)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _edit(path: str, old: str, new: str) -> dict[str, Any]:
    return call("edit_file", path=path, old_string=old, new_string=new)


def test_a_persons_edits_during_a_task_stay_theirs(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    slow = 1.5  # the model "thinks" while the person edits
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("read_file", path="calc.py"),
                    _edit("calc.py", "return a - b\n\n\ndef add", "x"),  # no match: refused
                    _edit(
                        "calc.py",
                        "def add(a, b):\n    return a - b",
                        "def add(a, b):\n    return a + b",
                    ),
                    {**call("finish", summary="add adds"), "delay": slow},
                    call("read_file", path="calc.py"),
                    _edit("calc.py", "return a + b", "return a * b"),
                    {**call("finish", summary="add multiplies"), "delay": slow},
                ],
                "scripted-evaluator": [
                    {**verdict(0.7), "delay": slow},  # refine
                    {**verdict(0.5), "delay": slow},  # a regression: iteration 1 is the best
                ],
            }
        }
    )
    readme = repo / "README.md"
    with ScriptedModelServer(script) as server:
        proc = _start(server, repo, "fix the add function", "--json")
        try:
            _wait_requests(server, "scripted-executor", 4, proc)  # executing
            (repo / "notes.txt").write_bytes(b"the user's notes\r\n")
            readme.write_text(readme.read_text() + "a line added while it executes\n")
            _wait_requests(server, "scripted-evaluator", 1, proc)  # evaluating
            (repo / "late.txt").write_text("written while it is judged\n")
            readme.write_text(readme.read_text() + "a line added while it is judged\n")
            _wait_requests(server, "scripted-evaluator", 2, proc)  # judging iteration 2
            calc = (repo / "calc.py").read_text()
            (repo / "calc.py").write_text(calc.replace("a * b", "a * b  # the user's"))
            stdout, stderr = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
        judged = json.dumps(server.requests_for("scripted-evaluator"))
    out = json.loads(stdout)
    assert (out["status"], out["decision"]) == ("unaccepted", "regression"), stderr
    assert out["files_changed"] == ["calc.py"] and out["best_iteration"] == 1
    # Nothing of the person's was reverted, deleted or counted as the task's.
    assert (repo / "notes.txt").read_bytes() == b"the user's notes\r\n"
    assert (repo / "late.txt").read_text() == "written while it is judged\n"
    assert readme.read_text() == (
        "# calc\na line added while it executes\na line added while it is judged\n"
    )
    assert "notes.txt" not in judged and "a line added" not in judged
    for n in (1, 2):
        changed = git(
            repo,
            "diff",
            "--name-only",
            f"refs/shoal/{out['task_id']}/0",
            f"refs/shoal/{out['task_id']}/{n}",
        )
        assert changed == "calc.py\n"
    # calc.py: the person changed the task's last line after its last snapshot, so going
    # back to iteration 1 would overwrite them: theirs stays, the task's is in the ref.
    assert out["conflicts"] == ["calc.py"]
    assert (repo / "calc.py").read_text() == CALC.replace(
        "return a - b", "return a * b  # the user's", 1
    )
    best = git(repo, "show", f"refs/shoal/{out['task_id']}/1:calc.py")
    assert best == CALC.replace("a - b", "a + b", 1)
    assert f"git show refs/shoal/{out['task_id']}/1:calc.py" in stderr
    assert not list(record_dir(repo).iterdir())  # the task's change records are gone


def test_a_second_task_on_a_work_tree_waits_for_the_first(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan(), plan()],
                "scripted-executor": [
                    call("read_file", path="calc.py"),
                    {
                        **_edit(
                            "calc.py",
                            "add(a, b):\n    return a - b",
                            "add(a, b):\n    return a + b",
                        ),
                        "delay": 1.0,
                    },
                    call("finish", summary="first"),
                    call("read_file", path="calc.py"),
                    _edit(
                        "calc.py",
                        "def sub(a, b):\n    return a - b",
                        "def sub(a, b):\n    return b - a",
                    ),
                    call("finish", summary="second"),
                ],
                "scripted-evaluator": [verdict(0.9), verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        first = _start(server, repo, "fix add", "--json")
        try:
            _wait_requests(server, "scripted-executor", 1, first)
            second = _start(server, repo, "change sub")
            out1, err1 = first.communicate(timeout=90)
            out2, err2 = second.communicate(timeout=90)
            order = [r["model"] for r in server.requests]
        finally:
            for proc in (first, second):
                if proc.poll() is None:
                    proc.kill()
    one = json.loads(out1)
    assert one["status"] == "accepted" and out2.startswith("accepted"), (err1, err2)
    assert f"queued · waiting for task {one['task_id']} in this work tree" in err2
    assert one["files_changed"] == ["calc.py"] and "files changed: calc.py" in out2
    assert (repo / "calc.py").read_text() == CALC.replace("a - b", "a + b", 1).replace(
        "return a - b", "return b - a"
    )
    # The second was planned only once the first had been judged and had ended.
    second_plan = [i for i, model in enumerate(order) if model == "scripted-planner"][1]
    assert order.index("scripted-evaluator") < second_plan


def test_a_read_only_task_never_waits(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan(), plan()],
                "scripted-executor": [
                    {**call("read_file", path="calc.py"), "delay": 2.0},
                    call("finish", summary="done"),
                ],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        first = _start(server, repo, "fix add", "--json")
        try:
            _wait_requests(server, "scripted-executor", 1, first)
            result = shoal(
                "run",
                "look around",
                "-C",
                str(repo),
                "--json",
                "--permission-mode",
                "plan",
                env=model_env(server),
                timeout=90,
            )
            first.communicate(timeout=90)
        finally:
            if first.poll() is None:
                first.kill()
    assert "queued" not in result.stderr, result.stderr
    assert json.loads(result.stdout)["status"] in ("accepted", "unaccepted")
