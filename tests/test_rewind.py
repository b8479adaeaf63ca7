"""``shoal rewind``, ``shoal undo`` and the chat's ``/rewind`` on real repositories, scripted model.

A three-iteration task leaves a snapshot per iteration; rewinding to one of them
must give exactly its files (byte for byte), leave alone what the user made,
never touch HEAD, the index or the stash, go forward again, and refuse over a
later change unless forced (keeping that change in a ref).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal
from tests.test_chat import Pane, chat_env, pane  # noqa: F401 (pane is a fixture)
from tests.test_loop import call, make_repo, model_env, plan, verdict

TASK_FILES = ("a.txt", "new.txt", "c.txt")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def snapshot_file(repo: Path, ref: str, path: str) -> bytes | None:
    shown = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{path}"], capture_output=True)
    return shown.stdout if shown.returncode == 0 else None


def files(repo: Path) -> dict[str, bytes | None]:
    return {p: (repo / p).read_bytes() if (repo / p).exists() else None for p in TASK_FILES}


def git_state(repo: Path) -> tuple[str, ...]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "for-each-ref", "refs/heads", "refs/tags", "refs/stash"),
        git(repo, "stash", "list"),
        (repo / ".git" / "index").read_bytes().hex(),
    )


def rewind(*args: str) -> tuple[int, dict[str, Any], str]:
    ran = shoal("rewind", *args, "--json")
    return ran.returncode, json.loads(ran.stdout) if ran.stdout.strip() else {}, ran.stderr


@pytest.mark.timeout(300)
def test_rewind_restores_an_iteration_exactly_keeps_user_files_and_goes_forward(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    (repo / "a.txt").write_text("zero\n")
    git(repo, "add", "a.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    git(repo, "stash", "list")
    script = {
        "models": {
            "scripted-planner": [plan()],
            "scripted-executor": [
                call("write_file", path="a.txt", content="one\n"),
                call("write_file", path="new.txt", content="made in 1\n"),
                call("finish", summary="1"),
                call("write_file", path="a.txt", content="two\n"),
                call("write_file", path="c.txt", content="made in 2\n"),
                call("finish", summary="2"),
                call("write_file", path="a.txt", content="three\n"),
                call("shell", command="rm new.txt"),
                call("finish", summary="3"),
            ],
            "scripted-evaluator": [verdict(0.2), verdict(0.4), verdict(0.6)],
        }
    }
    with ScriptedModelServer(script) as server:
        ran = shoal(
            "run", "write the files", "-C", str(repo), "--json", "--no-checks",
            "--quality", "0.95", "--iterations", "3", "--allow", "shell:rm *",
            env=model_env(server), timeout=180,
        )  # fmt: skip
    out = json.loads(ran.stdout)
    task = out["task_id"]
    assert out["iterations"] == 3 and out["best_iteration"] == 3, out
    assert files(repo) == {"a.txt": b"three\n", "new.txt": None, "c.txt": b"made in 2\n"}
    (repo / "mine.txt").write_text("the user's own, untracked\n")
    before = git_state(repo)

    code, done, err = rewind(task[:10], "--iteration", "1")
    assert code == 0, err
    ref1 = f"refs/shoal/{task}/1"
    assert files(repo) == {p: snapshot_file(repo, ref1, p) for p in TASK_FILES}  # byte for byte
    assert files(repo) == {"a.txt": b"one\n", "new.txt": b"made in 1\n", "c.txt": None}
    assert done["written"] == ["a.txt", "new.txt"] and done["removed"] == ["c.txt"]
    assert (repo / "mine.txt").read_text() == "the user's own, untracked\n"
    assert git_state(repo) == before

    code, done, err = rewind(task, "-n", "3")  # forward again
    assert code == 0, err
    assert files(repo) == {"a.txt": b"three\n", "new.txt": None, "c.txt": b"made in 2\n"}

    undone = shoal("undo", "--json", cwd=repo)
    assert undone.returncode == 0, undone.stderr
    assert json.loads(undone.stdout)["iteration"] == 0
    assert files(repo) == {"a.txt": b"zero\n", "new.txt": None, "c.txt": None}
    assert (repo / "mine.txt").exists() and git_state(repo) == before

    (repo / "a.txt").write_text("the user changed it after\n")
    code, done, err = rewind(task, "-n", "2")
    assert code == 1 and "a.txt changed since task" in err and "--force" in err
    assert (repo / "a.txt").read_text() == "the user changed it after\n"  # nothing written
    assert (repo / "c.txt").exists() is False
    code, done, err = rewind(task, "-n", "2", "--force")
    assert code == 0, err
    assert files(repo) == {"a.txt": b"two\n", "new.txt": b"made in 1\n", "c.txt": b"made in 2\n"}
    assert done["overwritten"] == ["a.txt"] and done["saved"] == f"refs/shoal/{task}.kept/0"
    assert snapshot_file(repo, done["saved"], "a.txt") == b"the user changed it after\n"
    assert git_state(repo) == before

    bad = shoal("rewind", task, "-n", "7")
    assert bad.returncode == 1 and "has no iteration 7" in bad.stderr
    chat_only = shoal("rewind", task, "--files-only")
    assert chat_only.returncode == 2 and "for a chat session" in chat_only.stderr
    none = shoal("rewind", "ZZZZZZZZ")
    assert none.returncode == 1 and "no task or chat session" in none.stderr


@pytest.mark.timeout(240)
def test_chat_rewind_in_tmux_restores_files_and_conversation(
    home: Home,
    tmp_path: Path,
    pane: Pane,  # noqa: F811
) -> None:
    repo = make_repo(tmp_path)
    (repo / "mine.txt").write_text("the user's\n")
    script = {
        "models": {
            "scripted-chat": {
                "replies": [
                    call("write_file", path="a.txt", content="one\n"),
                    "Wrote a.txt.",
                    call("write_file", path="a.txt", content="two\n"),
                    call("shell", command="echo b > b.txt"),
                    "Changed a.txt and made b.txt.",
                    "We are back at turn one.",
                ],
                "repeat_last": False,
            }
        }
    }
    with ScriptedModelServer(script) as server:
        pane.env = chat_env(server)
        pane.run("chat", "--permission-mode", "bypass", cwd=repo)
        pane.prompt(1)
        pane.type("FIRST make a.txt")
        pane.wait("Wrote a.txt.")
        pane.prompt(2)
        pane.type("SECOND change it")
        pane.wait("made b.txt.")
        pane.prompt(3)
        assert (repo / "a.txt").read_text() == "two\n" and (repo / "b.txt").exists()

        pane.type("/rewind")
        listing = pane.wait("/rewind N goes back")
        assert "FIRST make a.txt  a.txt" in listing
        assert "SECOND change it  a.txt, b.txt" in listing
        pane.prompt(4)
        pane.type("/rewind 2")
        pane.wait("the conversation goes back to before turn 2")
        assert (repo / "a.txt").read_text() == "one\n" and not (repo / "b.txt").exists()
        assert (repo / "mine.txt").read_text() == "the user's\n"
        pane.prompt(5)
        pane.type("THIRD where are we")
        pane.wait("We are back at turn one.")
        last = json.dumps(server.requests_for("scripted-chat")[-1]["messages"])
    assert "FIRST make a.txt" in last and "SECOND change it" not in last
    assert "Changed a.txt" not in last


@pytest.mark.timeout(240)
def test_a_chat_session_is_rewound_from_the_shell(home: Home, tmp_path: Path) -> None:
    from tests.test_chat import chat_lines

    repo = make_repo(tmp_path)
    script = {
        "models": {
            "scripted-chat": [
                call("write_file", path="a.txt", content="one\n"),
                "Wrote it.",
                call("write_file", path="a.txt", content="two\n"),
                "Changed it.",
                "Still at two in the conversation.",
                "Back to one.",
            ]
        }
    }
    with ScriptedModelServer(script) as server:
        env = chat_env(server)
        out = chat_lines(repo, ["ONE make a.txt", "TWO change it"], env, "-s", "rw")
        assert out.returncode == 0, out.stderr
        session = json.loads(shoal("sessions", "list", "--json", env=env).stdout.splitlines()[0])
        sid = session["id"]
        files_only = shoal("rewind", sid, "--files-only", "--json", env=env)
        assert files_only.returncode == 0, files_only.stderr
        done = json.loads(files_only.stdout)
        assert (done["turn"], done["conversation"], done["written"]) == (2, False, ["a.txt"])
        assert (repo / "a.txt").read_text() == "one\n"
        chat_lines(repo, ["WHERE are we"], env, "-s", "rw")
        kept = json.dumps(server.requests_for("scripted-chat")[-1]["messages"])
        assert "TWO change it" in kept  # --files-only: the conversation stayed
        both = shoal("rewind", sid, "--turn", "2", "--json", env=env)
        assert both.returncode == 0, both.stderr
        assert json.loads(both.stdout)["conversation"] is True
        chat_lines(repo, ["AGAIN"], env, "-s", "rw")
        last = json.dumps(server.requests_for("scripted-chat")[-1]["messages"])
    assert "ONE make a.txt" in last and "TWO change it" not in last
    assert (repo / "a.txt").read_text() == "one\n"
    bad = shoal("rewind", sid, "--turn", "9")
    assert bad.returncode == 1 and "turn 9 is not in the conversation" in bad.stderr
