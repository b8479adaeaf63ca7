"""Keep every iteration's files and put the best one back, without touching the user's git state.

A snapshot is a commit of the whole work tree (tracked and untracked files,
``.gitignore`` respected) made through a temporary index, stored under
``refs/shoal/<task_id>/<n>`` (n = 0 before the first iteration). HEAD, the
branch, the user's index and stash are never written: only objects and our
own refs are added, so ``git status`` shows exactly the files the loop changed.

Content goes through git's filters both ways (``git add`` cleans, checkout
smudges), as in the user's own commits; a file whose line endings git
normalises comes back normalised. Submodules (gitlinks) are recorded by commit
but never checked out or removed by :func:`restore`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from shoal.workspace.git import WorkspaceError, git, head, split_z, toplevel

REF_PREFIX = "refs/shoal"

# Task ids become one ref path component: no '/', nothing git-check-ref-format refuses.
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
_GITLINK = "160000"
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def snapshot(repo: str | Path, task_id: str, n: int) -> str:
    """Commit the work tree as iteration ``n`` of ``task_id`` and return the commit's sha."""
    ref = _ref(task_id, n)
    root = toplevel(repo)
    index, parent = _index_and_head(root)
    with tempfile.TemporaryDirectory(prefix="shoal-snap-") as tmp:
        tree = _worktree_tree(root, Path(tmp), parent, index)
    parents = ["-p", parent] if parent else []
    message = f"shoal snapshot {task_id}/{n}".encode()
    sha = git(root, "commit-tree", "--no-gpg-sign", *parents, tree, input=message)
    commit = sha.decode().strip()
    git(root, "update-ref", "-m", f"shoal snapshot {task_id}/{n}", ref, commit)
    return commit


def keep(repo: str | Path, task_id: str, n: int, sha: str) -> None:
    """Record an existing commit (e.g. a team run's merge) as iteration ``n`` of ``task_id``."""
    git(toplevel(repo), "update-ref", "-m", f"shoal snapshot {task_id}/{n}", _ref(task_id, n), sha)


def base_snapshot(repo: str | Path, task_id: str) -> str:
    """The state before the first iteration (n = 0)."""
    return snapshot(repo, task_id, 0)


def restore(repo: str | Path, sha: str, *, since_sha: str | None = None) -> list[str]:
    """Make the work tree's files equal to snapshot ``sha``; return the paths written or removed.

    Files changed since (tracked or not) are put back; files the snapshot does
    not have are removed unless the snapshot's ``.gitignore`` rules ignore them,
    so ignored files (build output, ``.env``) are never touched. HEAD and the
    user's index stay as they are.

    ``since_sha`` names the snapshot the work tree is known to be at: only the
    paths that differ between it and ``sha`` are touched, which skips scanning
    the tree and leaves alone anything changed outside the loop. Without it the
    current work tree is scanned.
    """
    root = toplevel(repo)
    target = _tree(root, sha)
    with tempfile.TemporaryDirectory(prefix="shoal-restore-") as tmp:
        if since_sha:
            current = _tree(root, since_sha)
        else:
            index, parent = _index_and_head(root)
            current = _worktree_tree(root, Path(tmp), parent, index)
        writes: list[str] = []
        removes: list[str] = []
        for old_mode, new_mode, status, path in _diff_tree(root, current, target):
            if _GITLINK in (old_mode, new_mode):
                continue  # a submodule's checkout is its own repository: never ours to change
            (removes if status == "D" else writes).append(path)
        if not writes and not removes:
            return []
        index = Path(tmp) / "target-index"
        git(root, "read-tree", target, index=index)
        # The snapshot's ignore rules decide what counts as "created after it".
        ignore_files = [p for p in writes if os.path.basename(p) == ".gitignore"]
        _checkout(root, index, ignore_files)
        # Behind a symlink is outside the tree (checkout-index replaces such links itself).
        removes = [p for p in removes if not _behind_symlink(root, p)]
        ignored = set(_ignored(root, removes))
        removes = [p for p in removes if p not in ignored]
        for path in removes:
            _remove(root, path)
        done = set(ignore_files)
        _checkout(root, index, [p for p in writes if p not in done])
    return sorted(writes + removes)


def diff(repo: str | Path, base: str | None, sha: str) -> str:
    """Unified diff from ``base`` (a snapshot or any commit; None: HEAD) to snapshot ``sha``."""
    root = toplevel(repo)
    out = git(
        root,
        "diff-tree",
        "-r",
        "-p",
        "-M",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        *_trees(root, base, sha),
    )
    return out.decode(errors="replace")


def changed_files(repo: str | Path, base: str | None, sha: str) -> list[str]:
    """Paths added, modified or deleted from ``base`` (None: HEAD) to ``sha``, sorted."""
    root = toplevel(repo)
    out = git(
        root,
        "diff-tree",
        "-r",
        "-z",
        "--name-only",
        "--no-renames",
        *_trees(root, base, sha),
    )
    return sorted(split_z(out))


def list_snapshots(repo: str | Path, task_id: str) -> dict[int, str]:
    """The snapshots of ``task_id`` by iteration, e.g. to restore the best after a restart."""
    root = toplevel(repo)
    prefix = f"{_ref(task_id, 0).rsplit('/', 1)[0]}/"
    out = git(root, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
    found: dict[int, str] = {}
    for line in out.decode().splitlines():
        ref, sha = line.split(" ")
        last = ref.rsplit("/", 1)[1]
        if last.isdigit():
            found[int(last)] = sha
    return dict(sorted(found.items()))


def drop(repo: str | Path, task_id: str) -> int:
    """Delete the refs of ``task_id``'s snapshots; return how many there were.

    The commits become unreachable and git's own gc removes them in time.
    """
    root = toplevel(repo)
    prefix = f"{_ref(task_id, 0).rsplit('/', 1)[0]}/"
    refs = git(root, "for-each-ref", "--format=%(refname)", prefix).decode().split()
    if refs:
        commands = "".join(f"delete {ref}\n" for ref in refs)
        git(root, "update-ref", "--stdin", input=commands.encode())
    return len(refs)


def _ref(task_id: str, n: int) -> str:
    if not _TASK_ID.match(task_id) or task_id.endswith(".lock"):
        raise WorkspaceError(
            f"task id {task_id!r} cannot name a ref: use letters, digits, '.', '_' and '-'"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise WorkspaceError(f"iteration {n!r} must be a non-negative integer")
    return f"{REF_PREFIX}/{task_id}/{n}"


def _index_and_head(root: Path) -> tuple[Path, str | None]:
    """The work tree's index file and HEAD's commit (None before the first), in one git call."""
    out = git(
        root, "rev-parse", "--git-path", "index", "--verify", "--quiet", "HEAD^{commit}", ok=(0, 1)
    )
    lines = out.decode().splitlines()
    return root / lines[0], (lines[1].strip() or None) if len(lines) > 1 else None


def _worktree_tree(root: Path, tmp: Path, parent: str | None, real: Path) -> str:
    """The tree of the work tree as `git add -A` sees it, built in a temporary index
    seeded from ``real``, the work tree's own index."""
    index = tmp / "index"
    # Seeding from the real index keeps its stat data, so unchanged files are not re-hashed.
    # copy2 keeps the index's mtime too: git compares it with each entry's to find files
    # changed in the same instant the index was written ("racy git"); a fresh mtime hides them.
    if real.is_file():
        shutil.copy2(real, index)
    elif parent:
        git(root, "read-tree", parent, index=index)
    try:
        git(root, "add", "-A", index=index)
    except WorkspaceError:
        # An index in a format this git cannot reuse as a copy: start from HEAD instead.
        index.unlink(missing_ok=True)
        if parent:
            git(root, "read-tree", parent, index=index)
        git(root, "add", "-A", index=index)
    return git(root, "write-tree", index=index).decode().strip()


def _tree(root: Path, rev: str) -> str:
    out = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}", ok=(0, 1))
    tree = out.decode().strip()
    if not tree:
        raise WorkspaceError(f"{rev!r} is not a commit or tree in {root}")
    return tree


def _trees(root: Path, base: str | None, sha: str) -> tuple[str, str]:
    """The trees of ``base`` (None: HEAD) and ``sha``, in one git call when both exist."""
    if base is not None:
        out = git(root, "rev-parse", f"{base}^{{tree}}", f"{sha}^{{tree}}", ok=(0, 128))
        # On failure git echoes the name it could not resolve: only object ids count.
        trees = [t for t in out.decode().split() if _OBJECT_ID.fullmatch(t)]
        if len(trees) == 2:
            return trees[0], trees[1]
    return _base_tree(root, base), _tree(root, sha)  # one is missing: say which


def _base_tree(root: Path, base: str | None) -> str:
    if base is not None:
        return _tree(root, base)
    parent = head(root)
    if parent:
        return _tree(root, parent)
    # No commits yet: compare with the empty tree (its id depends on the hash algorithm).
    return git(root, "hash-object", "-w", "-t", "tree", "--stdin", input=b"").decode().strip()


def _diff_tree(root: Path, old: str, new: str) -> list[tuple[str, str, str, str]]:
    """(old mode, new mode, status letter, path) for every path that differs."""
    out = git(root, "diff-tree", "-r", "-z", "--no-renames", old, new)
    fields = out.decode(errors="surrogateescape").split("\0")
    changes = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        old_mode, new_mode, _, _, status = meta[1:].split(" ")
        changes.append((old_mode, new_mode, status[0], path))
    return changes


def _checkout(root: Path, index: Path, paths: list[str]) -> None:
    if paths:
        listing = "\0".join(paths).encode(errors="surrogateescape")
        git(root, "checkout-index", "-f", "-z", "--stdin", index=index, input=listing)


def _ignored(root: Path, paths: list[str]) -> list[str]:
    """The paths ignore rules match (check-ignore exits 1 when none match)."""
    if not paths:
        return []
    listing = "\0".join(paths).encode(errors="surrogateescape")
    return split_z(git(root, "check-ignore", "-z", "--stdin", input=listing, ok=(0, 1)))


def _behind_symlink(root: Path, path: str) -> bool:
    """Whether a leading directory of ``path`` is a symlink (it could lead out of the tree)."""
    parts = path.split("/")[:-1]
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            return True
    return False


def _remove(root: Path, path: str) -> None:
    target = root / path
    # A directory now where the snapshot's file was is left: it holds files we did not list.
    if target.is_symlink() or target.is_file():
        target.unlink()
    # Git does not track directories: one emptied by the removal goes too, as in a checkout.
    parent = target.parent
    while parent != root:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
