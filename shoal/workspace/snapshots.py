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

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
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


def snapshot_paths(repo: str | Path, task_id: str, n: int, prior: str, paths: list[str]) -> str:
    """Commit ``prior`` with ``paths`` (relative to the work tree's root) taken from the work
    tree, as iteration ``n`` of ``task_id``; return the commit's sha.

    This is how a task that shares its work tree with a person records its work: only the
    paths its own tool calls changed, so whatever someone else changed meanwhile is neither
    in its snapshot nor in its diff. A path gone from the work tree is gone from the
    snapshot; one that ignore rules cover and ``prior`` does not track stays out.
    """
    ref = _ref(task_id, n)
    root = toplevel(repo)
    with tempfile.TemporaryDirectory(prefix="shoal-snap-") as tmp:
        index = Path(tmp) / "index"
        git(root, "read-tree", prior, index=index)
        present = [p for p in paths if os.path.lexists(root / p)]
        gone = [p for p in paths if not os.path.lexists(root / p)]
        if gone:
            _pathspec(root, index, "rm", "--cached", "-r", "-q", "--ignore-unmatch", paths=gone)
        ignored = set(_ignored(root, present, index=index))
        present = [p for p in present if p not in ignored]
        if present:
            _pathspec(root, index, "add", "-A", paths=present)
        tree = git(root, "write-tree", index=index).decode().strip()
    parent = head(root)
    parents = ["-p", parent] if parent else []
    message = f"shoal snapshot {task_id}/{n}".encode()
    commit = git(root, "commit-tree", "--no-gpg-sign", *parents, tree, input=message)
    sha = commit.decode().strip()
    git(root, "update-ref", "-m", f"shoal snapshot {task_id}/{n}", ref, sha)
    return sha


class ChangeProbe:
    """Which paths change in the work tree between a mark and now: before and after a
    command, to learn what it changed.

    A private index, seeded from the work tree's own (so its stat data spares hashing
    unchanged files), is brought up to the work tree at each mark; what ``git status``
    then finds different from it changed since. Two git processes per command.
    """

    def __init__(self, repo: str | Path) -> None:
        self.root = toplevel(repo)
        self._tmp = tempfile.TemporaryDirectory(prefix="shoal-probe-")
        self._index = Path(self._tmp.name) / "index"

    def mark(self) -> None:
        if not self._index.exists():
            real, parent = _index_and_head(self.root)
            _worktree_tree(self.root, Path(self._tmp.name), parent, real)
            return
        git(self.root, "add", "-A", index=self._index)

    def since_mark(self) -> list[str]:
        """Paths created, changed or removed since the last mark (submodules left out)."""
        out = git(
            self.root,
            "status",
            "--porcelain",
            "-z",
            "--untracked-files=all",
            "--no-renames",
            "--ignore-submodules=all",
            index=self._index,
        )
        entries = out.decode(errors="surrogateescape").split("\0")
        # "XY path": X compares HEAD with our index (not what we ask), Y the work tree with it.
        return [e[3:] for e in entries if len(e) > 3 and (e[1] != " " or e[:2] == "??")]

    def close(self) -> None:
        self._tmp.cleanup()


@dataclass
class Applied:
    """What :func:`apply` did to the work tree."""

    written: list[str] = field(default_factory=list)
    """Paths set to the new state (written, or removed)."""
    merged: list[str] = field(default_factory=list)
    """Paths someone else had changed too, merged cleanly with the new state."""
    kept: list[str] = field(default_factory=list)
    """Paths someone else had changed in a way that does not merge: left as they are."""


def apply(repo: str | Path, old: str, new: str) -> Applied:
    """Move the paths that differ between snapshots ``old`` and ``new`` from ``old``'s
    state to ``new``'s in the work tree, three-way, never over someone else's change.

    ``old`` is the state the work tree was left in (a task's last snapshot, a team run's
    base), ``new`` the one wanted (its best, the merged result). For each path that
    differs: as in ``old`` now -> set to ``new``; already as in ``new`` -> nothing; changed
    by someone else since -> merged with ``git merge-file`` when both sides are text and it
    merges cleanly, else left as it is and listed in ``kept`` (``new`` still holds the
    other version). Paths that do not differ are never touched, whatever their state.
    """
    if old == new:  # a task restored to its last snapshot: nothing differs (no git calls)
        return Applied()
    root = toplevel(repo)
    changes = [c for c in _diff_tree_ids(root, _tree(root, old), _tree(root, new)) if c.plain]
    if not changes:
        return Applied()
    now = _work_tree_ids(root, [c.path for c in changes])
    done = Applied()
    removes: list[str] = []
    for c in changes:
        state = now.get(c.path)
        if state == c.new:
            continue
        if state == c.old:
            (done.written if c.new is not None else removes).append(c.path)
        elif _merge_into(root, c, state):
            done.merged.append(c.path)
        else:
            done.kept.append(c.path)
    _write_paths(root, new, done.written, removes)
    done.written = sorted(done.written + removes)
    return done


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
        for c in _diff_tree_ids(root, current, target):
            if c.plain:  # a submodule's checkout is its own repository: never ours to change
                (removes if c.new is None else writes).append(c.path)
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


def work_tree_tree(repo: str | Path) -> str:
    """The tree of the work tree as ``git add -A`` would see it, through a temporary index:
    no ref, index or file of the user's is written (only objects)."""
    root = toplevel(repo)
    index, parent = _index_and_head(root)
    with tempfile.TemporaryDirectory(prefix="shoal-tree-") as tmp:
        return _worktree_tree(root, Path(tmp), parent, index)


def index_tree(repo: str | Path) -> str:
    """The tree of the user's index (what is staged), written from a copy of it: git's
    write-tree would otherwise update the index file itself."""
    root = toplevel(repo)
    index, parent = _index_and_head(root)
    with tempfile.TemporaryDirectory(prefix="shoal-tree-") as tmp:
        copy = Path(tmp) / "index"
        if index.is_file():
            shutil.copy2(index, copy)
        elif parent:
            git(root, "read-tree", parent, index=copy)
        else:
            return _base_tree(root, None)
        return git(root, "write-tree", index=copy).decode().strip()


def path_states(repo: str | Path, rev: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    """(mode, blob id) of each of ``paths`` in snapshot (or commit, or tree) ``rev``;
    paths it does not have are left out."""
    if not paths:
        return {}
    root = toplevel(repo)
    wanted = set(paths)
    out = git(root, "ls-tree", "-r", "-z", "--full-tree", _tree(root, rev))
    found = {}
    for entry in out.decode(errors="surrogateescape").split("\0"):
        meta, _, path = entry.partition("\t")
        if path in wanted:
            mode, _kind, blob = meta.split(" ")
            found[path] = (mode, blob)
    return found


def work_tree_states(repo: str | Path, paths: list[str]) -> dict[str, tuple[str, str]]:
    """(mode, blob id) of each of ``paths`` in the work tree now, as git would store it;
    absent paths are left out."""
    return _work_tree_ids(toplevel(repo), paths)


def put(repo: str | Path, rev: str, paths: list[str]) -> tuple[list[str], list[str]]:
    """Set ``paths`` in the work tree to their state in ``rev``: written from it, or removed
    where it lacks them. Nothing else is touched. (written, removed)."""
    root = toplevel(repo)
    have = path_states(root, rev, paths)
    writes = [p for p in paths if p in have and have[p][0] != _GITLINK]
    removes = [p for p in paths if p not in have and os.path.lexists(root / p)]
    _write_paths(root, rev, writes, removes)
    return sorted(writes), sorted(removes)


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


def _checkout(root: Path, index: Path, paths: list[str]) -> None:
    if paths:
        listing = "\0".join(paths).encode(errors="surrogateescape")
        git(root, "checkout-index", "-f", "-z", "--stdin", index=index, input=listing)


def _ignored(root: Path, paths: list[str], index: Path | None = None) -> list[str]:
    """The paths ignore rules match (check-ignore exits 1 when none match); with ``index``,
    paths that index tracks never count as ignored."""
    if not paths:
        return []
    listing = "\0".join(paths).encode(errors="surrogateescape")
    out = git(root, "check-ignore", "-z", "--stdin", input=listing, ok=(0, 1), index=index)
    return split_z(out)


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


@dataclass(frozen=True)
class _Change:
    path: str
    old: tuple[str, str] | None
    """(mode, blob id) in the old tree; None: absent."""
    new: tuple[str, str] | None

    @property
    def plain(self) -> bool:
        """Not a submodule: a submodule's checkout is its own repository, never ours."""
        return all(s is None or s[0] != _GITLINK for s in (self.old, self.new))


def _diff_tree_ids(root: Path, old: str, new: str) -> list[_Change]:
    """Every path that differs between two trees, with its mode and blob id on each side."""
    out = git(root, "diff-tree", "-r", "-z", "--no-renames", old, new)
    fields = out.decode(errors="surrogateescape").split("\0")
    changes = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        old_mode, new_mode, old_id, new_id, status = meta[1:].split(" ")
        before = None if status[0] == "A" else (old_mode, old_id)
        after = None if status[0] == "D" else (new_mode, new_id)
        changes.append(_Change(path, before, after))
    return changes


def _work_tree_ids(root: Path, paths: list[str]) -> dict[str, tuple[str, str]]:
    """(mode, blob id) of each path as it is in the work tree now, as git would store it
    (clean filters applied); absent paths are left out."""
    found: dict[str, tuple[str, str]] = {}
    regular: list[str] = []
    for path in paths:
        full = root / path
        if full.is_symlink():
            found[path] = ("120000", _blob_id(root, os.fsencode(os.readlink(full))))
        elif full.is_file():
            regular.append(path)
    if regular:
        listing = "\n".join(regular).encode(errors="surrogateescape")
        ids = git(root, "hash-object", "--stdin-paths", input=listing).decode().split()
        for path, blob in zip(regular, ids, strict=True):
            mode = "100755" if os.access(root / path, os.X_OK) else "100644"
            found[path] = (mode, blob)
    return found


def _blob_id(root: Path, data: bytes) -> str:
    """The id of a blob holding ``data``, in the repository's hash algorithm."""
    algo = git(root, "rev-parse", "--show-object-format").decode().strip() or "sha1"
    return hashlib.new(algo, b"blob %d\0" % len(data) + data).hexdigest()


def _merge_into(root: Path, change: _Change, state: tuple[str, str] | None) -> bool:
    """Merge ``change`` into a path someone else changed too; False if it does not merge
    cleanly (nothing is written then)."""
    if change.old is None or change.new is None or state is None:
        return False  # created or deleted on one side: nothing to merge line by line
    target = root / change.path
    if target.is_symlink() or "120000" in (change.old[0], change.new[0]):
        return False
    with tempfile.TemporaryDirectory(prefix="shoal-merge-") as tmp:
        base, theirs = Path(tmp) / "base", Path(tmp) / "theirs"
        base.write_bytes(git(root, "cat-file", "blob", change.old[1]))
        theirs.write_bytes(git(root, "cat-file", "blob", change.new[1]))
        ours = Path(tmp) / "ours"
        shutil.copy2(target, ours)
        try:
            # Exit code: the number of conflicts (0: clean), negative on an error (binary).
            out = git(root, "merge-file", "-p", str(ours), str(base), str(theirs))
        except WorkspaceError:
            return False
    _replace(target, out)
    return True


def _replace(target: Path, data: bytes) -> None:
    """Write ``data`` over ``target`` atomically, keeping its mode."""
    mode = os.stat(target).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.shoal-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_paths(root: Path, sha: str, writes: list[str], removes: list[str]) -> None:
    """Set ``writes`` to their state in ``sha`` and remove ``removes`` (which it lacks)."""
    for path in removes:
        if not _behind_symlink(root, path):  # behind a symlink is outside the tree
            _remove(root, path)
    if writes:
        with tempfile.TemporaryDirectory(prefix="shoal-apply-") as tmp:
            index = Path(tmp) / "index"
            git(root, "read-tree", _tree(root, sha), index=index)
            _checkout(root, index, writes)


def _pathspec(root: Path, index: Path, *args: str, paths: list[str]) -> bytes:
    """``git args`` on ``paths`` taken literally (no glob magic), fed on stdin."""
    listing = "\0".join(paths).encode(errors="surrogateescape")
    return git(
        root,
        "--literal-pathspecs",
        *args,
        "--pathspec-from-file=-",
        "--pathspec-file-nul",
        index=index,
        input=listing,
    )
