"""Snapshots of real git work trees: restores are byte-exact, the user's git state untouched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shoal.workspace import (
    WorkspaceError,
    base_snapshot,
    changed_files,
    diff,
    drop,
    list_snapshots,
    restore,
    snapshot,
)

BINARY = bytes(range(256)) * 4


@pytest.fixture(autouse=True)
def no_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without any git identity: shoal must not need one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.delenv(f"GIT_{who}_NAME", raising=False)
        monkeypatch.delenv(f"GIT_{who}_EMAIL", raising=False)


def git(repo: Path, *args: str) -> str:
    """The user's git, with an identity given on the command line only."""
    return subprocess.run(
        ["git", "-c", "user.name=u", "-c", "user.email=u@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    ).stdout


def files(root: Path) -> dict[str, tuple[str, bytes | str, bool]]:
    """Every file under ``root`` but .git: kind, content (or link target), executable bit."""
    found: dict[str, tuple[str, bytes | str, bool]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git" or Path(dirpath) != root]
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path), False)
            else:
                found[rel] = ("file", path.read_bytes(), os.access(path, os.X_OK))
    return found


def user_state(repo: Path) -> dict[str, str]:
    """What the user's git shows: HEAD, branch, staged entries and stash."""
    head = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout
    return {
        "head": head,
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "index": git(repo, "ls-files", "-s"),
        "stash": git(repo, "stash", "list"),
        "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"),
    }


def make_repo(root: Path, *, commit: bool) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "a.txt").write_text("alpha\n")
    (root / "gone.txt").write_text("deleted before the snapshot\n")
    (root / "bin.dat").write_bytes(BINARY)
    (root / "dir").mkdir()
    (root / "dir" / "b.txt").write_text("beta\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    if commit:
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "initial")
    # Ignored files, which no snapshot or restore may touch.
    (root / "app.log").write_text("log 1\n")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_bytes(b"\x7fELF")
    return root


def test_restore_is_byte_exact_and_leaves_head_index_and_stash(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commit=True)
    # A stash entry and a staged change the user made before shoal ran.
    (repo / "a.txt").write_text("stashed\n")
    git(repo, "stash", "-q")
    (repo / "a.txt").write_text("alpha staged\n")
    git(repo, "add", "a.txt")
    (repo / "gone.txt").unlink()
    (repo / "untracked.txt").write_text("not added\n")
    (repo / "link").symlink_to("dir/b.txt")
    before = user_state(repo)

    base = base_snapshot(repo, "T1")
    assert user_state(repo) == before
    assert "a.txt" in git(repo, "diff", "--cached", "--name-only")  # still staged
    expected = files(repo)

    # The executor's iteration: edits, creations, deletions, mode and ignored-file changes.
    (repo / "a.txt").write_text("alpha edited\n")
    (repo / "untracked.txt").write_text("changed\n")
    (repo / "bin.dat").write_bytes(BINARY[::-1])
    (repo / "dir" / "b.txt").unlink()
    (repo / "gone.txt").write_text("came back\n")
    (repo / "new.txt").write_text("new\n")
    (repo / "new_dir" / "deep").mkdir(parents=True)
    (repo / "new_dir" / "deep" / "n.py").write_text("x = 1\n")
    (repo / "run.sh").chmod(0o644)
    (repo / "link").unlink()
    (repo / "link").write_text("now a file\n")
    (repo / "app.log").write_text("log 2\n")
    first = snapshot(repo, "T1", 1)
    assert user_state(repo) == before

    touched = restore(repo, base)
    after = files(repo)
    assert after.pop("app.log") == ("file", b"log 2\n", False)  # ignored: untouched
    expected.pop("app.log")
    assert after == expected
    assert not (repo / "new_dir").exists()
    assert (repo / "build" / "out.o").read_bytes() == b"\x7fELF"
    assert "new_dir/deep/n.py" in touched and "app.log" not in touched
    assert user_state(repo) == before
    assert git(repo, "diff", "--cached", "--name-only").split() == ["a.txt"]

    # Forward again to the later snapshot, then back: both directions are exact.
    restore(repo, first)
    assert (repo / "new_dir" / "deep" / "n.py").read_text() == "x = 1\n"
    assert (repo / "bin.dat").read_bytes() == BINARY[::-1]
    assert not os.access(repo / "run.sh", os.X_OK)
    assert restore(repo, first) == []
    assert user_state(repo) == before


def test_a_repository_without_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commit=False)
    git(repo, "add", "a.txt")
    before = user_state(repo)
    sha = snapshot(repo, "T2", 0)
    assert git(repo, "cat-file", "-p", sha).count("parent ") == 0
    expected = files(repo)

    (repo / "a.txt").write_text("changed\n")
    (repo / "bin.dat").unlink()
    (repo / "extra.txt").write_text("extra\n")
    restore(repo, sha)
    assert files(repo) == expected
    assert user_state(repo) == before
    assert before["head"] == ""  # still unborn
    everything = [".gitignore", "a.txt", "bin.dat", "dir/b.txt", "gone.txt", "run.sh"]
    assert changed_files(repo, None, sha) == everything


def test_diff_and_changed_files_between_snapshots_and_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commit=True)
    base = base_snapshot(repo, "T3")
    (repo / "a.txt").write_text("alpha\nsecond line\n")
    (repo / "bin.dat").write_bytes(b"\0" + BINARY)
    (repo / "dir" / "b.txt").unlink()
    (repo / "c.txt").write_text("gamma\n")
    (repo / "noise.log").write_text("ignored\n")
    one = snapshot(repo, "T3", 1)

    assert changed_files(repo, base, one) == ["a.txt", "bin.dat", "c.txt", "dir/b.txt"]
    assert changed_files(repo, None, base) == []
    text = diff(repo, base, one)
    assert "diff --git a/a.txt b/a.txt" in text and "+second line" in text
    assert "Binary files a/bin.dat and b/bin.dat differ" in text
    assert "deleted file mode" in text and "noise.log" not in text
    assert diff(repo, None, one) == text  # HEAD is the base snapshot's parent, same tree
    assert diff(repo, one, one) == ""


def test_restore_since_touches_only_what_the_loop_changed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commit=True)
    base = base_snapshot(repo, "T4")
    (repo / "a.txt").write_text("iteration 1\n")
    (repo / "made.txt").write_text("by the loop\n")
    one = snapshot(repo, "T4", 1)
    (repo / "user.txt").write_text("the user's, outside the loop\n")

    assert restore(repo, base, since_sha=one) == ["a.txt", "made.txt"]
    assert (repo / "a.txt").read_text() == "alpha\n"
    assert not (repo / "made.txt").exists()
    assert (repo / "user.txt").exists()


def test_files_the_snapshots_ignore_rules_cover_are_never_removed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commit=True)
    (repo / ".gitignore").write_text("*.log\nbuild/\nsecret.env\n")
    (repo / "secret.env").write_text("TOKEN=x\n")
    sha = snapshot(repo, "T5", 0)
    # The executor un-ignores the file; restoring must bring back the rule, not delete the file.
    (repo / ".gitignore").write_text("*.log\n")
    restore(repo, sha)
    assert (repo / "secret.env").read_text() == "TOKEN=x\n"
    assert (repo / "build" / "out.o").exists()
    assert "secret.env" in (repo / ".gitignore").read_text()


def test_list_and_drop_only_the_tasks_refs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commit=True)
    shas = [snapshot(repo, "T6", n) for n in range(3)]
    other = snapshot(repo, "T6x", 1)
    assert list_snapshots(repo, "T6") == dict(enumerate(shas))
    assert drop(repo, "T6") == 3
    assert list_snapshots(repo, "T6") == {}
    assert list_snapshots(repo, "T6x") == {1: other}
    assert drop(repo, "T6") == 0


def test_clear_one_line_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(WorkspaceError, match="not inside a git work tree") as info:
        snapshot(plain, "T7", 0)
    assert "\n" not in str(info.value)
    with pytest.raises(WorkspaceError, match="is not a directory"):
        snapshot(tmp_path / "missing", "T7", 0)
    repo = make_repo(tmp_path / "r", commit=True)
    with pytest.raises(WorkspaceError, match="cannot name a ref"):
        snapshot(repo, "a/b", 0)
    with pytest.raises(WorkspaceError, match="non-negative"):
        snapshot(repo, "T7", -1)
    with pytest.raises(WorkspaceError, match="not a commit or tree") as info:
        restore(repo, "0" * 40)
    assert "\n" not in str(info.value)
    good = snapshot(repo, "T7", 0)
    for base, sha in ((good, "0" * 40), ("0" * 40, good)):  # either side of a diff
        with pytest.raises(WorkspaceError, match=f"'{'0' * 40}' is not a commit or tree"):
            changed_files(repo, base, sha)


def test_a_subdirectory_snapshots_the_whole_work_tree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commit=True)
    sha = snapshot(repo / "dir", "T8", 0)
    (repo / "a.txt").write_text("changed\n")
    restore(repo / "dir", sha)
    assert (repo / "a.txt").read_text() == "alpha\n"


def test_racily_clean_files_are_seen_as_changed(tmp_path: Path) -> None:
    """A same-size edit with the index's own timestamp must be hashed, not trusted by stat."""
    repo = make_repo(tmp_path / "r", commit=True)
    path, index = repo / "a.txt", repo / ".git" / "index"
    past = path.stat().st_mtime_ns - 100 * 10**9
    os.utime(path, ns=(past, past))
    git(repo, "add", "a.txt")  # the index records mtime `past` for a.txt
    os.utime(index, ns=(past, past))  # ...and was written in that same instant: racy
    path.write_text("ALPHA\n")  # same size
    os.utime(path, ns=(past, past))
    assert "a.txt" in git(repo, "diff", "--name-only")  # git itself sees the change
    sha = snapshot(repo, "T9", 0)
    assert git(repo, "show", f"{sha}:a.txt") == "ALPHA\n"
