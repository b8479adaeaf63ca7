"""Running git for shoal: no prompts, no hooks, a fixed identity, only the repository asked for.

Every call goes through :func:`git`, so a machine without ``user.name``, a
repository with hooks, or a ``GIT_DIR`` inherited from the caller's shell
cannot change what shoal's plumbing does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Collection, Mapping
from pathlib import Path


class WorkspaceError(Exception):
    """A workspace operation failed; the message is one line that says why."""


# Inherited from a hook or a wrapper script, these would point git at another
# repository, index or object store than the one we name with -C.
_REDIRECTING = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)

IDENTITY = {
    "GIT_AUTHOR_NAME": "shoal",
    "GIT_AUTHOR_EMAIL": "shoal@localhost",
    "GIT_COMMITTER_NAME": "shoal",
    "GIT_COMMITTER_EMAIL": "shoal@localhost",
}

_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    # A whole temporary index; a split one would write shared-index files into .git.
    "-c",
    "core.splitIndex=false",
    # With core.safecrlf=true and autocrlf, `git add` refuses files instead of snapshotting them.
    "-c",
    "core.safecrlf=false",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
)


def git(
    repo: Path,
    *args: str,
    index: Path | None = None,
    input: bytes | None = None,
    ok: Collection[int] = (0,),
) -> bytes:
    """Run ``git -C repo args`` and return its stdout; other exit codes raise WorkspaceError.

    ``index`` sets ``GIT_INDEX_FILE``: the user's own index is never written through here.
    """
    return git_status(repo, *args, index=index, input=input, ok=ok)[1]


def git_status(
    repo: Path,
    *args: str,
    index: Path | None = None,
    input: bytes | None = None,
    ok: Collection[int] = (0,),
) -> tuple[int, bytes]:
    """:func:`git`, with the exit code (one of ``ok``) beside the output."""
    env = without_redirects(os.environ)
    env.update(IDENTITY, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *_CONFIG, *args],
            # An empty stdin, never the caller's terminal.
            input=input if input is not None else b"",
            capture_output=True,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise WorkspaceError("git is not installed (not found on PATH)") from exc
    if proc.returncode not in ok:
        lines = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        command = next((a for a in args if not a.startswith("-")), "")
        raise WorkspaceError(f"git {command} failed in {repo}: {reason}")
    return proc.returncode, proc.stdout


def without_redirects(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that would point git at another repository or index."""
    return {k: v for k, v in env.items() if k not in _REDIRECTING}


def toplevel(repo: str | Path) -> Path:
    """The root of the work tree containing ``repo``; WorkspaceError if there is none."""
    path = Path(repo).expanduser().absolute()
    if not path.is_dir():
        raise WorkspaceError(f"{path} is not a directory")
    return _toplevels.get(path, lambda: _discovered(path) or _asked_toplevel(path))


def _asked_toplevel(path: Path) -> Path:
    try:
        out = git(path, "rev-parse", "--show-toplevel")
    except WorkspaceError as exc:
        if "not installed" in str(exc):
            raise
        raise WorkspaceError(f"{path} is not inside a git work tree") from None
    return Path(out.decode().strip())


class Remembered:
    """What git said about directories, each answer kept while ``still(key, answer)``
    holds: a snapshot, a restore, a diff and a worktree add each asked again (a git
    process each time, several per iteration). Bounded: emptied when full."""

    def __init__(self, still: Callable[[Path, Path], bool], limit: int = 256) -> None:
        self._answers: dict[Path, Path] = {}
        self._still = still
        self._limit = limit

    def get(self, key: Path, ask: Callable[[], Path]) -> Path:
        known = self._answers.get(key)
        if known is not None and self._still(key, known):
            return known
        answer = ask()
        if len(self._answers) >= self._limit:
            self._answers.clear()
        self._answers[key] = answer
        return answer


def still_a_directory(key: Path, answer: Path) -> bool:
    return answer.is_dir()


def _discovered(path: Path) -> Path | None:
    """The work tree root found as git finds it, without a git process: the nearest
    directory (symlinks resolved, as git reports it) holding a ``.git`` repository
    directory or a ``gitdir:`` file naming one. None where that is not so plain (no
    ``.git`` on the way up, ceiling directories set): git is asked then.

    Every new worktree of a team run is asked about by the orchestrator (on its routing
    thread), its executor and its evaluator: a git process each, at every wave's start.
    """
    if "GIT_CEILING_DIRECTORIES" in os.environ:
        return None
    d = path.resolve()
    while True:
        dotgit = d / ".git"
        if dotgit.is_dir():
            return d if (dotgit / "HEAD").is_file() else None
        if dotgit.is_file():
            return d if _names_a_git_dir(dotgit) else None
        if d.parent == d:
            return None
        d = d.parent


def _names_a_git_dir(dotgit: Path) -> bool:
    """A worktree's ``.git`` file: ``gitdir: <path>`` of a directory that exists."""
    try:
        line = dotgit.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return False
    if not line.startswith("gitdir: "):
        return False
    return (dotgit.parent / line[len("gitdir: ") :].strip()).is_dir()


def _still_toplevel(path: Path, root: Path) -> bool:
    """``root`` still holds the repository and no other one began between it and ``path``
    (a few stat calls; a path under a symlink never counts as known)."""
    if not (root / ".git").exists():
        return False
    d = path
    while d != root:
        if (d / ".git").exists() or d.parent == d:
            return False
        d = d.parent
    return True


# Work tree roots found before, by directory.
_toplevels = Remembered(_still_toplevel, limit=1024)


def head(root: Path) -> str | None:
    """The commit HEAD points at, or None in a repository without commits."""
    out = git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", ok=(0, 1))
    return out.decode().strip() or None


def split_z(out: bytes) -> list[str]:
    """NUL-separated paths from a ``-z`` listing (file names may hold any byte but NUL)."""
    return [p for p in out.decode(errors="surrogateescape").split("\0") if p]
