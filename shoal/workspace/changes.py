"""Which paths a task's own tool calls changed, in a work tree it shares with a person.

A file tool names the path it writes; a command (shell, a git write, an MCP
server's tool) may change anything, so the work tree is probed before and
after it and the difference is the command's. Someone typing in the same
files while a command runs is indistinguishable from the command; everything
else they change stays theirs: out of the task's snapshots, its diff and its
restore.

The paths of each iteration are appended to a file in the repository's git
directory as they are found, so an executor that takes over from a killed one
knows what the killed one changed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from shoal.workspace.git import Remembered, git, still_a_directory, toplevel
from shoal.workspace.snapshots import ChangeProbe


class TaskChanges:
    """The paths (relative to the work tree's root) one iteration of a task changed."""

    def __init__(self, repo: str | Path, task_id: str, iteration: int) -> None:
        self.root = toplevel(repo)
        self._file = record_dir(self.root) / f"{task_id}.{iteration}"
        self.paths: set[str] = set(_read(self._file))
        self._probe: ChangeProbe | None = None

    @contextlib.contextmanager
    def writing(self, path: str | os.PathLike[str]) -> Iterator[None]:
        """Around a tool call that writes ``path`` (absolute, or relative to the root)."""
        try:
            yield
        finally:
            full = Path(path)
            full = full if full.is_absolute() else self.root / full
            with contextlib.suppress(ValueError):  # outside the work tree: not ours to track
                self.add([full.relative_to(self.root).as_posix()])

    @contextlib.contextmanager
    def probing(self) -> Iterator[None]:
        """Around a call that may change anything: what differs afterwards is its."""
        if self._probe is None:
            self._probe = ChangeProbe(self.root)
        self._probe.mark()
        try:
            yield
        finally:
            self.add(self._probe.since_mark())

    def add(self, paths: Iterable[str]) -> None:
        new = sorted(set(paths) - self.paths)
        if not new:
            return
        self.paths.update(new)
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with open(self._file, "ab") as f:
            f.write(b"".join(os.fsencode(p) + b"\0" for p in new))

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None


def record_dir(repo: str | Path) -> Path:
    """Where the change records of a work tree's tasks are kept (inside its git dir)."""
    root = toplevel(repo)
    return _git_dirs.get(root, lambda: _git_dir(root)) / "shoal" / "changes"


def _git_dir(root: Path) -> Path:
    return Path(git(root, "rev-parse", "--absolute-git-dir").decode().strip())


# Asked at an iteration's start and at its task's restore: a git process each time.
_git_dirs = Remembered(still_a_directory)


def forget(repo: str | Path, task_id: str) -> None:
    """Drop the change records of ``task_id`` (once its files are where they belong)."""
    folder = record_dir(repo)
    for path in folder.glob(f"{task_id}.*"):
        path.unlink(missing_ok=True)


def _read(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [os.fsdecode(p) for p in data.split(b"\0") if p]
