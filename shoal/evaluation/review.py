"""What ``shoal review`` reviews: the two states of a change, found without changing anything.

- nothing named: the uncommitted changes (the work tree, untracked files too, against HEAD);
- ``--staged``: the index against HEAD;
- ``REV_RANGE``: ``A..B`` (B against A), ``A...B`` (B against where it left A), or one
  commit ``C`` (C against its first parent);
- ``--pr-base BRANCH``: HEAD against where it left BRANCH (a pull request's diff).

The work tree's and the index's states are trees written through a temporary
index, so no ref, no index file and no file of the work tree is written (git's
object store gets the objects, unreferenced, as ``git stash create`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shoal.workspace.git import WorkspaceError, git, head, toplevel


@dataclass(frozen=True)
class Target:
    """The change to review."""

    repo: Path
    base: str
    """The state before: a commit or tree id."""
    head: str
    """The state after: a commit or tree id."""
    label: str
    """What it is, in words: "the uncommitted changes", "HEAD~2..HEAD"."""
    at_work_tree: bool
    """The work tree is ``head``: the project's checks can run in it as it is."""
    commits: list[str] = field(default_factory=list)
    """``short-sha subject`` of the commits in a range (newest first)."""


def select(
    cwd: Path, rev_range: str | None = None, *, staged: bool = False, pr_base: str | None = None
) -> Target:
    """The change asked for; WorkspaceError (one line) for an unknown revision."""
    from shoal.workspace import snapshots

    repo = toplevel(cwd)
    chosen = [x for x in (rev_range, pr_base) if x] + (["--staged"] if staged else [])
    if len(chosen) > 1:
        raise WorkspaceError("give one of REV_RANGE, --staged and --pr-base")
    now = snapshots.work_tree_tree(repo)
    before = head(repo) or _empty_tree(repo)
    if staged:
        after, label, commits = snapshots.index_tree(repo), "the staged changes", []
    elif pr_base:
        before = _merge_base(repo, pr_base, "HEAD")
        after, label = _commit(repo, "HEAD"), f"the changes since {pr_base}"
        commits = _log(repo, before, after)
    elif rev_range:
        before, after = _range(repo, rev_range)
        label, commits = rev_range, _log(repo, before, after)
    else:
        after, label, commits = now, "the uncommitted changes", []
    return Target(repo, before, after, label, _tree(repo, after) == now, commits)


def checkout_commit(target: Target) -> str | None:
    """A commit holding ``target.head`` to check out for the checks, when the work tree is
    not that state (an object only: no ref points to it); None when it is."""
    if target.at_work_tree:
        return None
    kind = git(target.repo, "cat-file", "-t", target.head).decode().strip()
    if kind == "commit":
        return target.head
    message = f"shoal review of {target.label}".encode()
    return (
        git(target.repo, "commit-tree", "--no-gpg-sign", target.head, input=message)
        .decode()
        .strip()
    )


def _range(repo: Path, text: str) -> tuple[str, str]:
    if "..." in text:
        left, _, right = text.partition("...")
        right_commit = _commit(repo, right or "HEAD")
        return _merge_base(repo, left or "HEAD", right_commit), right_commit
    if ".." in text:
        left, _, right = text.partition("..")
        return _commit(repo, left or "HEAD"), _commit(repo, right or "HEAD")
    commit = _commit(repo, text)
    parent = git(repo, "rev-parse", "--verify", "--quiet", f"{commit}^1", ok=(0, 1))
    return parent.decode().strip() or _empty_tree(repo), commit


def _commit(repo: Path, rev: str) -> str:
    out = git(
        repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", ok=(0, 1)
    )
    sha = out.decode().strip()
    if not sha:
        raise WorkspaceError(f"{rev!r} is not a commit in {repo}; name a branch, tag or commit")
    return sha


def _merge_base(repo: Path, left: str, right: str) -> str:
    a, b = _commit(repo, left), _commit(repo, right)
    base = git(repo, "merge-base", a, b, ok=(0, 1)).decode().strip()
    if not base:
        raise WorkspaceError(f"{left} and {right} have no common history to compare")
    return base


def _log(repo: Path, base: str, after: str) -> list[str]:
    kind = git(repo, "cat-file", "-t", base).decode().strip()
    span = f"{base}..{after}" if kind == "commit" else after
    out = git(repo, "log", "--format=%h %s", "--no-color", span, "--")
    return out.decode(errors="replace").splitlines()


def _tree(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", f"{rev}^{{tree}}").decode().strip()


def _empty_tree(repo: Path) -> str:
    return git(repo, "hash-object", "-w", "-t", "tree", "--stdin", input=b"").decode().strip()
