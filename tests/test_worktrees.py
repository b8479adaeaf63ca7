"""Worktrees and merges for team runs, on real git repositories."""

from __future__ import annotations

from pathlib import Path

from shoal.actors.lead import ordered
from shoal.messages.tasks import Subtask
from shoal.workspace import worktrees
from tests.test_team_run import git


def repo_with(tmp_path: Path, text: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "f.txt").write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    return repo


def test_a_conflict_is_detected_kept_on_its_branch_and_aborted_cleanly(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "one\n")
    start = git(repo, "rev-parse", "HEAD").strip()
    merged = worktrees.add(repo, tmp_path / "wt" / "m", "shoal/team/r/_merged", start)
    for name, text in (("a", "left\n"), ("b", "right\n")):
        path = worktrees.add(repo, tmp_path / "wt" / name, f"shoal/team/r/{name}", start)
        (path / "f.txt").write_text(text)
        assert worktrees.commit_all(path, name) is not None
        assert worktrees.commit_all(path, "nothing new") is None
    assert worktrees.merge(merged, "shoal/team/r/a", "merge a").ok
    conflict = worktrees.merge(merged, "shoal/team/r/b", "merge b")
    assert not conflict.ok and conflict.conflicts == ["f.txt"]
    assert worktrees.with_markers(merged, conflict.conflicts) == ["f.txt"]
    worktrees.abort_merge(merged)
    assert (merged / "f.txt").read_text() == "left\n"
    assert worktrees.unmerged(merged) == []
    for name in ("a", "b", "m"):
        worktrees.remove(repo, tmp_path / "wt" / name)
    assert git(repo, "worktree", "list").count("\n") == 1
    assert "shoal/team/r/b" in git(repo, "branch", "--list", "shoal/team/*")


def test_subtasks_are_ordered_by_dependencies_and_cycles_are_refused(tmp_path: Path) -> None:
    subtasks = [
        Subtask(id="c", title="c", depends_on=["b"]),
        Subtask(id="a", title="a"),
        Subtask(id="b", title="b", depends_on=["a", "ghost"]),
    ]
    assert [s.id for s in ordered(subtasks)] == ["a", "b", "c"]
    assert ordered(subtasks)[1].depends_on == ["a"]  # an unknown id is dropped
    cycle = [
        Subtask(id="x", title="x", depends_on=["y"]),
        Subtask(id="y", title="y", depends_on=["x"]),
    ]
    try:
        ordered(cycle)
    except ValueError as exc:
        assert "cycle" in str(exc)
    else:
        raise AssertionError("a cycle was accepted")


def test_the_base_of_a_run_and_the_checks_failing_on_it_leave_no_checkout(tmp_path: Path) -> None:
    from shoal.actors.lead import prepare_base
    from shoal.workspace import snapshots

    repo = repo_with(tmp_path, "one\n")
    (repo / "untracked.txt").write_text("in the base too\n")
    root = tmp_path / "worktrees"
    base, failing = prepare_base(str(repo), "run1", root)
    assert (base, failing) == (snapshots.list_snapshots(repo, "run1")[0], [])
    assert not root.exists()  # no checks: no checkout made

    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    (repo / "test_f.py").write_text("def test_f():\n    assert open('f.txt').read() == 'two\\n'\n")
    base, failing = prepare_base(str(repo), "run2", root)
    assert failing == ["pytest"]
    assert "test_f.py" in git(repo, "ls-tree", "--name-only", base)
    assert list(root.iterdir()) == []  # the checkout and its run's directory are gone
    assert git(repo, "worktree", "list").count("\n") == 1


def test_worktrees_added_and_pruned_at_once_in_one_repository_all_succeed(
    tmp_path: Path,
) -> None:
    # A team run's lead adds the next subtask's worktree while its merger prunes one
    # done, and other processes (a reviewer, a delegate) may do the same in the repo.
    # Checked: without the lock in worktrees.py git fails here ("failed to read
    # .git/worktrees/<name>/commondir", or the worktree's files missing).
    from concurrent.futures import ThreadPoolExecutor

    repo = repo_with(tmp_path, "one\n")
    start = git(repo, "rev-parse", "HEAD").strip()

    def churn(worker: int) -> int:
        for round_ in range(12):
            path = tmp_path / "wt" / f"w{worker}-{round_}"
            worktrees.add(repo, path, f"shoal/team/r/w{worker}-{round_}", start)
            assert (path / "f.txt").read_text() == "one\n"
            worktrees.remove(repo, path)
        return worker

    with ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(churn, range(6))) == list(range(6))
    listed = git(repo, "worktree", "list", "--porcelain")
    assert listed.count("worktree ") == 1  # only the repository's own
