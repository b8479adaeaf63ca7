"""Where the executor's tools may act: the roots, where long outputs go, what was read.

Every path a tool receives is resolved here, symlinks included, and refused
if it lands outside the roots or inside a ``.git`` directory (any component
named ``.git`` in any letter case: on macOS and Windows ``.GIT/hooks`` is
``.git/hooks``). Nothing is global: each executor (or each subtask's worktree)
has its own workspace.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from shoal.tools.base import ToolError
from shoal.tools.reads import ReadTracker


class Workspace:
    """The directories an executor works in, its outputs directory and its read-tracker."""

    def __init__(
        self,
        roots: Sequence[str | os.PathLike[str]],
        outputs_dir: str | os.PathLike[str],
        *,
        ripgrep: bool = True,
    ) -> None:
        """``roots[0]`` is the working directory; ``ripgrep=False`` forces grep's fallback."""
        if not roots:
            raise ValueError("a workspace needs at least one root")
        resolved = []
        for root in roots:
            real = Path(os.path.realpath(os.path.expanduser(root)))
            if not real.is_dir():
                raise ValueError(f"workspace root {root} is not a directory")
            resolved.append(real)
        self.roots: tuple[Path, ...] = tuple(resolved)
        self.outputs_dir = Path(os.path.realpath(os.path.expanduser(outputs_dir)))
        self.reads = ReadTracker()
        self.ripgrep = ripgrep

    @property
    def root(self) -> Path:
        """The first root: the working directory of shell and git, the base of relative paths."""
        return self.roots[0]

    def describe(self) -> str:
        if len(self.roots) == 1:
            return f"the workspace {self.root}"
        return "the workspace roots " + ", ".join(str(r) for r in self.roots)

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """The real path of ``path``, or ToolError if it is outside the roots or in ``.git``.

        Reads may also reach the outputs directory, where truncated outputs are saved.
        """
        if not path.strip():
            raise ToolError(f"path is empty; give a path inside {self.describe()}")
        if "\0" in path:
            raise ToolError(f"path {path!r} contains a NUL byte; give a plain file path")
        given = Path(os.path.expanduser(path))
        candidate = given if given.is_absolute() else self.root / given
        real = Path(os.path.realpath(candidate))
        base = self._base_of(real, write=write)
        if base is None:
            lexical = Path(os.path.normpath(candidate))
            if self._base_of(lexical, write=write) is not None:
                raise ToolError(
                    f"path {path} resolves through a symlink to {real}, outside "
                    f"{self.describe()}; use a path inside it"
                )
            if write and self._within(real, self.outputs_dir):
                raise ToolError(f"path {path} is a saved output; it can be read but not changed")
            raise ToolError(f"path {path} is outside {self.describe()}; use a path inside it")
        if any(folded(part) == ".git" for part in real.relative_to(base).parts):
            raise ToolError(
                f"path {path} is inside .git; repository internals are off limits, "
                "use the git tool (status, diff, log, show, add, commit, restore) instead"
            )
        return real

    def below_root(self, path: str, real: Path) -> list[tuple[str, ...]]:
        """The components of ``path`` below its root: resolved (``real``, from :meth:`resolve`)
        and as given, so a symlink's own name counts as well as what it points to."""
        given = Path(os.path.expanduser(path))
        lexical = Path(os.path.normpath(given if given.is_absolute() else self.root / given))
        found = []
        for spelling in (real, lexical):
            base = self._base_of(spelling, write=True)
            if base is not None:
                found.append(spelling.relative_to(base).parts)
        return found

    def display(self, path: Path) -> str:
        """How a resolved path is shown to the model: relative to the root when under it."""
        if self._within(path, self.root):
            rel = path.relative_to(self.root)
            return rel.as_posix() if rel.parts else "."
        return str(path)

    def _base_of(self, path: Path, *, write: bool) -> Path | None:
        for root in self.roots:
            if self._within(path, root):
                return root
        if not write and self._within(path, self.outputs_dir):
            return self.outputs_dir
        return None

    @staticmethod
    def _within(path: Path, root: Path) -> bool:
        return path == root or root in path.parents


def folded(name: str) -> str:
    """A file name as a case-insensitive file system matches it (macOS, Windows): any letter
    case, and Windows drops trailing dots and spaces."""
    return name.lower().rstrip(". ")
