"""glob: files whose workspace-relative path matches a pattern, newest first."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from shoal.tools.base import ToolArgs, ToolError, ToolOutput
from shoal.tools.patterns import compile_glob, literal_prefix
from shoal.tools.workspace import Workspace

MAX_RESULTS = 500


class GlobArgs(ToolArgs):
    pattern: str = Field(min_length=1)
    """Glob over paths relative to the workspace root, e.g. "**/*.py", "src/**/test_*.ts",
    "*.{js,ts}" or "docs/*"."""


GLOB = f"""\
Find files by path pattern. `*` and `?` match within one path component, `**/` any \
number of directories, `{{a,b}}` alternatives, `[abc]` a character class. Returns \
matching file paths relative to the workspace root, most recently modified first, at \
most {MAX_RESULTS}. `.git` is skipped. Use grep to search file contents."""


def glob(ws: Workspace, args: GlobArgs) -> ToolOutput:
    pattern, roots = _relative(ws, args.pattern)
    regex = compile_glob(pattern)
    prefix = literal_prefix(pattern)
    found: dict[Path, tuple[float, str]] = {}
    for root in roots:
        start = Path(os.path.realpath(root / prefix)) if prefix else root
        if not start.is_dir() or not (start == root or root in start.parents):
            continue
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            for name in filenames:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not regex.match(rel):
                    continue
                full = Path(dirpath) / name
                try:
                    mtime = full.stat().st_mtime
                except OSError:
                    continue  # a dangling symlink, or gone since listed
                real = Path(os.path.realpath(full))
                if real not in found:
                    found[real] = (mtime, ws.display(full))
    if not found:
        return ToolOutput(f"no files match {args.pattern}")
    ranked = sorted(found.values(), key=lambda item: (-item[0], item[1]))
    text = "\n".join(shown for _, shown in ranked[:MAX_RESULTS])
    footer = ""
    if len(ranked) > MAX_RESULTS:
        footer = (
            f"(showing the {MAX_RESULTS} newest of {len(ranked)} matches; "
            "narrow the pattern to see others)"
        )
    return ToolOutput(text, footer=footer)


def _relative(ws: Workspace, pattern: str) -> tuple[str, tuple[Path, ...]]:
    """The pattern relative to the roots it applies to; an absolute one must be inside a root."""
    if ".." in pattern.split("/"):
        raise ToolError(
            f"glob pattern {pattern} contains '..'; patterns are relative to {ws.root} "
            "and cannot leave it"
        )
    if ".git" in pattern.split("/"):
        raise ToolError(
            f"glob pattern {pattern} looks inside .git; repository internals are off limits, "
            "use the git tool instead"
        )
    if pattern.startswith("/"):
        for root in ws.roots:
            prefix = f"{root.as_posix().rstrip('/')}/"
            if pattern.startswith(prefix):
                return pattern[len(prefix) :], (root,)
        raise ToolError(f"glob pattern {pattern} is outside {ws.describe()}; use a relative one")
    while pattern.startswith("./"):
        pattern = pattern[2:]
    return pattern, ws.roots
