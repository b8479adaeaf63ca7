"""shell and git tools: real processes, process-group kills, a real repository."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from shoal.tools import Permissions, Toolbox, ToolResult, Workspace


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var, value in {
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }.items():
        monkeypatch.setenv(var, value)
    root = tmp_path / "repo"
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q", str(root)], check=True)
    return root


@pytest.fixture
def box(repo: Path, tmp_path: Path) -> Toolbox:
    return Toolbox(Workspace([repo], tmp_path / "outputs"), Permissions(mode="bypass"))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


# --- shell ----------------------------------------------------------------------


def test_shell_runs_in_the_root_with_empty_stdin_and_reports_the_exit_code(
    box: Toolbox, repo: Path
) -> None:
    result = box.call("shell", {"command": "pwd; cat; echo err >&2; exit 3"})
    assert not result.ok and result.exit_code == 3
    assert result.output == f"{repo}\nerr\nexit code: 3"
    good = box.call("shell", {"command": "true"})
    assert good.ok and good.output == "(no output)\nexit code: 0"


def test_shell_timeout_kills_the_whole_process_group_promptly(box: Toolbox, repo: Path) -> None:
    started = time.monotonic()
    result = box.call(
        "shell", {"command": "sleep 100 & echo $! > bg.pid; echo started; sleep 100", "timeout": 1}
    )
    elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    assert not result.ok and result.exit_code is None
    assert result.output.startswith("started\ntimed out after 1 s")
    assert "SIGTERM, then SIGKILL" in result.output
    grandchild = int((repo / "bg.pid").read_text())
    assert wait_gone(grandchild), f"grandchild {grandchild} survived the timeout"


def test_shell_escalates_to_sigkill_when_sigterm_is_ignored(box: Toolbox, repo: Path) -> None:
    started = time.monotonic()
    command = "trap '' TERM; (trap '' TERM; sleep 100) & echo $! > bg.pid; sleep 100"
    result = box.call("shell", {"command": command, "timeout": 0.5})
    assert time.monotonic() - started < 6
    assert "timed out" in result.output
    assert wait_gone(int((repo / "bg.pid").read_text()))


def test_background_processes_left_behind_are_stopped_and_do_not_block(
    box: Toolbox, repo: Path
) -> None:
    started = time.monotonic()
    result = box.call("shell", {"command": "sleep 100 & echo $! > bg.pid; echo done"})
    assert time.monotonic() - started < 5
    assert result.ok and result.output.startswith("done\nexit code: 0")
    assert "background processes" in result.output
    assert wait_gone(int((repo / "bg.pid").read_text()))


def test_shell_is_denied_before_anything_runs(repo: Path, tmp_path: Path) -> None:
    box = Toolbox(Workspace([repo], tmp_path / "out"), Permissions(mode="plan"))
    result = box.call("shell", {"command": "touch made"})
    assert result.denied and not (repo / "made").exists()


# --- git ------------------------------------------------------------------------


def test_git_allowed_subcommands_work_in_the_workspace(box: Toolbox, repo: Path) -> None:
    (repo / "a.txt").write_text("one\n")
    assert "a.txt" in box.call("git", {"args": ["status", "--short"]}).output
    assert box.call("git", {"args": ["add", "a.txt"]}).ok
    commit = box.call("git", {"args": ["commit", "-q", "-m", "Add a"]})
    assert commit.ok, commit.output
    (repo / "a.txt").write_text("two\n")
    diff = box.call("git", {"args": ["diff"]})
    assert diff.ok and "-one" in diff.output and "+two" in diff.output
    assert box.call("git", {"args": ["restore", "a.txt"]}).ok
    assert (repo / "a.txt").read_text() == "one\n"
    assert "Add a" in box.call("git", {"args": "log --oneline"}).output
    assert box.call("git", {"args": ["branch", "--show-current"]}).output == "main"
    assert box.call("git", {"args": ["rev-parse", "--is-inside-work-tree"]}).output == "true"
    head = box.call("git", {"args": ["show", "--stat", "HEAD"]})
    assert head.ok and "a.txt" in head.output


def test_git_dir_from_the_users_shell_cannot_point_the_tools_at_another_repository(
    box: Toolbox, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "decoy"
    subprocess.run(["git", "init", "-q", str(decoy)], check=True)
    (repo / "mine.txt").write_text("in the workspace\n")
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    monkeypatch.setenv("GIT_INDEX_FILE", str(decoy / ".git" / "index"))
    shown = box.call("shell", {"command": "git rev-parse --show-toplevel; git status --short"})
    assert shown.ok and str(repo) in shown.output and "mine.txt" in shown.output
    assert box.call("git", {"args": ["add", "mine.txt"]}).ok
    status = box.call("git", {"args": ["status", "--short"]})
    assert "A  mine.txt" in status.output
    found = box.call("grep", {"pattern": "in the workspace"})
    assert "mine.txt" in found.output
    decoy_status = subprocess.run(
        ["git", "-C", str(decoy), "status", "--short"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    )
    assert decoy_status.stdout == ""  # nothing was added to the decoy's index


def test_git_failure_is_an_error_result_with_its_exit_code(box: Toolbox) -> None:
    result = box.call("git", {"args": ["show", "no-such-rev"]})
    assert not result.ok and result.exit_code == 128
    assert result.output.endswith("exit code: 128")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["push", "origin", "main"], "git push is not allowed"),
        (["checkout", "-b", "x"], "git checkout is not allowed"),
        (["-c", "core.pager=less", "log"], "git -c is not allowed"),
        (["branch", "feature"], "may only list branches"),
        (["branch", "-D", "main"], "may only list branches"),
        (["branch", "--move", "main", "x"], "may only list branches"),
        (["diff", "--output=/tmp/x"], "reaches outside the workspace"),
        (["diff", "--no-index", "/etc/hostname", "a"], "reaches outside the workspace"),
    ],
)
def test_git_refuses_other_subcommands_and_listing_only_branch(
    box: Toolbox, repo: Path, args: list[str], expected: str
) -> None:
    result: ToolResult = box.call("git", {"args": args})
    assert not result.ok and expected in result.output
    if "subcommand" in result.output:
        assert "status, diff, log, show, add, commit, restore, rev-parse, branch" in result.output
    branches = subprocess.run(
        ["git", "branch", "--list"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert "feature" not in branches.stdout and "x" not in branches.stdout.split()


def test_git_branch_listing_forms_are_allowed(box: Toolbox, repo: Path) -> None:
    (repo / "a.txt").write_text("x\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    for args in (["branch"], ["branch", "-av"], ["branch", "--list", "ma*"],
                 ["branch", "--contains", "HEAD"]):  # fmt: skip
        result = box.call("git", {"args": args})
        assert result.ok and "main" in result.output, (args, result.output)


def test_git_writes_ask_in_default_mode_and_reads_do_not(repo: Path, tmp_path: Path) -> None:
    box = Toolbox(Workspace([repo], tmp_path / "out"))
    assert box.call("git", {"args": ["status"]}).ok
    denied = box.call("git", {"args": ["add", "."]})
    assert denied.denied and "--permission-mode bypass" in denied.output
