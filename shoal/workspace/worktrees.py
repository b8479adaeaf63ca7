"""Git worktrees for team runs: one branch and directory per subtask, merged back in order.

Worktrees live under ``$SHOAL_HOME/worktrees/<run>/`` (outside the repository,
so the project's own globs and test discovery never see them) and share the
repository's object store and refs, so a subtask's snapshots and branches are
visible from the main checkout at once. Nothing here touches the user's HEAD,
branch or index: the merged result reaches the work tree through
:func:`shoal.workspace.snapshots.restore`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shoal.workspace.git import (
    Remembered,
    WorkspaceError,
    git,
    git_status,
    split_z,
    still_a_directory,
)

BRANCH_PREFIX = "shoal/team"
CONFLICT_MARKERS = (b"<<<<<<< ", b"\n=======\n", b">>>>>>> ")


@dataclass
class Merge:
    ok: bool
    conflicts: list[str] = field(default_factory=list)
    """Paths git could not merge (left with conflict markers in the worktree)."""


def branch_name(run_id: str, subtask: str) -> str:
    return f"{BRANCH_PREFIX}/{run_id}/{subtask}"


def add(repo: Path, path: Path, branch: str | None, start: str) -> Path:
    """A new worktree at ``path`` on a new ``branch`` starting at commit ``start``
    (``branch`` None: ``start`` checked out detached)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():  # left by an earlier attempt of the same run
        remove(repo, path)
    on = ["-B", branch] if branch is not None else ["--detach"]
    with _admin_lock(repo):
        git(repo, "worktree", "add", "--quiet", *on, str(path), start)
    return path


def remove(repo: Path, *paths: Path) -> None:
    """Remove worktrees, whatever state they are in (a merge in progress, untracked files).

    Deleting the directories and pruning once is one git call for any number of
    worktrees (``git worktree remove`` is one call, and a status check, each).
    """
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    with _admin_lock(repo):
        git(repo, "worktree", "prune")


@contextlib.contextmanager
def _admin_lock(repo: Path) -> Iterator[None]:
    """One worktree add or prune at a time per repository, across threads and processes.

    git does not lock ``.git/worktrees/`` itself: a prune that reads a worktree another
    process is still adding fails ("failed to read .git/worktrees/s3/commondir"), and a
    team run's lead adds the next subtask's worktree while its merger prunes.
    """
    fd = os.open(_common_dir(repo) / "shoal-worktrees.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _common_dir(repo: Path) -> Path:
    """The repository's own git directory (shared by its worktrees), asked of git once:
    it was asked before every worktree add and prune, two processes per subtask."""
    return _common_dirs.get(
        repo, lambda: repo / git(repo, "rev-parse", "--git-common-dir").decode().strip()
    )


_common_dirs = Remembered(still_a_directory)


def delete_branches(repo: Path, branches: list[str]) -> None:
    """Delete the branches (one git call); one already gone does not stop the others."""
    if branches:
        with contextlib.suppress(WorkspaceError):
            git(repo, "branch", "-D", "--quiet", *branches)


def commit_all(path: Path, message: str) -> str | None:
    """Commit everything in the worktree (new files too); the commit, None when nothing
    changed."""
    return head(path) if commit_everything(path, message) else None


def commit_everything(path: Path, message: str) -> bool:
    """:func:`commit_all` without asking for the commit: two git processes, not four
    (a team run commits each subtask's worktree at the moment the next ones start)."""
    git(path, "add", "-A")
    code, out = git_status(path, "commit", "--quiet", "--no-verify", "-m", message, ok=(0, 1))
    if code == 0:
        return True
    if b"nothing to commit" in out or b"nothing added to commit" in out:
        return False
    raise WorkspaceError(f"git commit failed in {path}: {out.decode(errors='replace')[-300:]}")


def discard(path: Path) -> None:
    """Delete a worktree's directory; git forgets it at the next :func:`remove` (one prune
    for a whole team run, not one per subtask)."""
    shutil.rmtree(path, ignore_errors=True)


def head(path: Path) -> str:
    return git(path, "rev-parse", "HEAD").decode().strip()


def merge(path: Path, branch: str, message: str) -> Merge:
    """Merge ``branch`` into the worktree's branch; on conflict leave the markers for a resolver."""
    code, out = git_status(path, "merge", "--no-ff", "--no-edit", "-m", message, branch, ok=(0, 1))
    if code == 0:  # merged and committed: nothing can be left unmerged
        return Merge(ok=True)
    if not unmerged(path):
        if b"CONFLICT" in out:  # e.g. a rename/delete git did not leave in the index
            raise WorkspaceError(f"merging {branch} failed: {out.decode(errors='replace')[:300]}")
        return Merge(ok=True)
    return Merge(ok=False, conflicts=unmerged(path))


def unmerged(path: Path) -> list[str]:
    out = git(path, "diff", "--name-only", "--diff-filter=U", "-z")
    return sorted(set(split_z(out)))


def with_markers(path: Path, files: list[str]) -> list[str]:
    """Which of ``files`` still hold conflict markers."""
    left = []
    for name in files:
        try:
            data = (path / name).read_bytes()
        except OSError:
            continue
        if all(marker in data for marker in CONFLICT_MARKERS):
            left.append(name)
    return left


def conclude_merge(path: Path) -> str:
    """Commit a merge whose conflicts were resolved in the work tree."""
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "--no-verify", "--no-edit")
    return head(path)


def abort_merge(path: Path) -> None:
    with contextlib.suppress(WorkspaceError):
        git(path, "merge", "--abort")
