"""Release notes from the commits between two revisions, grouped, as Markdown.

A commit's group comes from its Conventional Commits type when it has one
(``feat:``, ``fix(parser):``, ``docs:``...), else from its subject's first words
(add, fix, refactor...), else from the files its diff touches (only tests: Tests;
only docs: Documentation). Merge commits are left out (their changes are in
the commits they merge). Each entry keeps its short hash and its diff's size.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shoal.workspace.git import WorkspaceError, git, toplevel

GROUPS = (
    "Breaking changes",
    "Features",
    "Fixes",
    "Performance",
    "Refactoring",
    "Documentation",
    "Tests",
    "Build and CI",
    "Other changes",
)
_TYPES = {
    "feat": "Features",
    "feature": "Features",
    "fix": "Fixes",
    "bugfix": "Fixes",
    "perf": "Performance",
    "refactor": "Refactoring",
    "docs": "Documentation",
    "doc": "Documentation",
    "test": "Tests",
    "tests": "Tests",
    "build": "Build and CI",
    "ci": "Build and CI",
    "chore": "Other changes",
    "style": "Other changes",
    "revert": "Other changes",
}
_WORDS = (
    ("Fixes", ("fix", "fixes", "fixed", "repair", "correct")),
    ("Features", ("add", "adds", "added", "implement", "support", "introduce", "new")),
    ("Refactoring", ("refactor", "rename", "extract", "simplify", "clean", "move")),
    ("Documentation", ("document", "docs", "readme")),
    ("Performance", ("speed", "faster", "optimize", "optimise")),
)
_CONVENTIONAL = re.compile(
    r"^(?P<type>[A-Za-z]+)(?:\((?P<scope>[^)]*)\))?(?P<bang>!)?:\s*(?P<rest>.+)$"
)
_SEP = "\x1f"


@dataclass
class Change:
    sha: str
    subject: str
    author: str
    group: str
    files: list[str] = field(default_factory=list)
    insertions: int = 0
    deletions: int = 0


@dataclass
class Notes:
    start: str
    end: str
    groups: dict[str, list[Change]]

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.start,
            "to": self.end,
            "groups": {g: [asdict(c) for c in cs] for g, cs in self.groups.items()},
        }

    def markdown(self) -> str:
        lines = [f"## Changes from {self.start} to {self.end}", ""]
        if not self.groups:
            lines.append("No changes.")
        for group, changes in self.groups.items():
            lines += [f"### {group}", ""]
            for c in changes:
                size = f"+{c.insertions}/-{c.deletions} in {len(c.files)} file(s)"
                lines.append(f"- {c.subject} ({c.sha}; {size})")
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def notes(cwd: Path, spec: str) -> Notes:
    """The notes of ``FROM..TO`` (``FROM..`` or ``FROM``: up to HEAD)."""
    repo = toplevel(cwd)
    start, _, end = spec.partition("..")
    start, end = start.strip(), end.strip().lstrip(".") or "HEAD"
    if not start:
        raise WorkspaceError(f"{spec!r}: give FROM..TO, e.g. v1.2.0..HEAD")
    for rev in (start, end):
        if not git(
            repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", ok=(0, 1)
        ).strip():
            raise WorkspaceError(f"{rev!r} is not a commit in {repo}; name a tag, branch or commit")
    groups: dict[str, list[Change]] = {}
    for change in _changes(repo, f"{start}..{end}"):
        groups.setdefault(change.group, []).append(change)
    ordered = {g: groups[g] for g in GROUPS if g in groups}
    return Notes(start, end, ordered)


def _changes(repo: Path, span: str) -> list[Change]:
    fmt = f"--format=%x1e%h{_SEP}%an{_SEP}%s"
    out = git(repo, "log", "--no-merges", "--no-color", "--numstat", fmt, span, "--")
    changes = []
    for block in out.decode(errors="replace").split("\x1e"):
        if not block.strip():
            continue
        head, *stats = block.strip("\n").split("\n")
        sha, author, subject = head.split(_SEP, 2)
        change = Change(sha, subject.strip(), author, "")
        for row in filter(None, stats):
            added, removed, path = row.split("\t", 2)
            change.files.append(path)
            change.insertions += int(added) if added.isdigit() else 0
            change.deletions += int(removed) if removed.isdigit() else 0
        change.group = group_of(change.subject, change.files)
        changes.append(change)
    return changes


def group_of(subject: str, files: list[str]) -> str:
    match = _CONVENTIONAL.match(subject)
    if match and match.group("type").lower() in _TYPES:
        if match.group("bang") or "BREAKING" in subject:
            return "Breaking changes"
        return _TYPES[match.group("type").lower()]
    first = subject.split(maxsplit=1)[0].lower().strip(":,.") if subject.strip() else ""
    for group, words in _WORDS:
        if first in words:
            return group
    if files and all(_is_test(f) for f in files):
        return "Tests"
    if files and all(f.endswith((".md", ".rst", ".txt")) or f.startswith("docs/") for f in files):
        return "Documentation"
    return "Other changes"


def _is_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return (
        path.startswith(("tests/", "test/"))
        or name.startswith("test_")
        or name.endswith(("_test.py", ".test.js", ".test.ts", "_test.go"))
    )
