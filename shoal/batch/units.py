"""Units of a batch, and what travels between the driver and its workers (JSON)."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Literal

import msgspec

from shoal.messages.tasks import CheckSetting, ModelChoice
from shoal.workspace.git import WorkspaceError, git, head, split_z, toplevel

UnitKind = Literal["file", "dir", "repo"]


class BatchError(Exception):
    """The batch cannot be run as asked; the message says why in one line."""


class UnitSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything a worker needs to do one unit; it travels as JSON."""

    batch_id: str
    unit_id: str
    name: str
    source: str
    """Repository to clone the isolated copy from (a path the worker can read, or a URL)."""
    url: str | None = None
    """A URL of the same repository, cloned instead where ``source`` is a path this
    worker's node does not have (with the base commit): a cluster whose paths differ."""
    base: str | None = None
    """Commit to start from; None: the source's HEAD."""
    files: list[str] = msgspec.field(default_factory=list)
    instruction: str
    verify: str | None = None
    verify_timeout: float = 600.0
    models: dict[str, ModelChoice]
    judge: bool = False
    """Run the evaluator (checks and judge) on the unit's change."""
    checks: list[CheckSetting] = msgspec.field(default_factory=list)
    """The evaluator's checks; empty: the ones detected in the unit's copy."""
    run_checks: bool = True
    quality: float = 0.8
    permission_mode: str = "accept-edits"
    max_turns: int = 30
    token_budget: int | None = None
    context: str = ""
    """Learnings and skills recalled once for the batch's instruction."""
    attempt: int = 1

    def description(self) -> str:
        """The unit's task as the executor sees it (its first user message names the unit)."""
        if len(self.files) == 1:
            target = f"the file {self.files[0]}"
        elif self.files:
            target = "these files: " + ", ".join(self.files)
        else:
            target = "this repository"
        return f"{self.instruction}\n\nApply this to {target} only (unit: {self.name})."


class UnitResult(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    unit_id: str
    status: Literal["accepted", "rejected", "failed"]
    score: float | None = None
    verify_passed: bool | None = None
    verify_output: str = ""
    diff: str = ""
    """The change as a binary-safe git patch (``git apply`` can use it)."""
    files_changed: list[str] = msgspec.field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0
    duration_s: float = 0.0
    summary: str = ""
    error: str | None = None
    worker: str = ""


def unit_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:16]


def repo_root(path: Path) -> Path:
    try:
        return toplevel(path)
    except WorkspaceError as exc:
        raise BatchError(str(exc)) from None


def head_commit(repo: Path | str) -> str:
    try:
        commit = head(Path(repo))
    except WorkspaceError as exc:
        raise BatchError(str(exc)) from None
    if commit is None:
        raise BatchError(f"{repo} has no commits; batch units start from a commit")
    return commit


def tracked_files(root: Path) -> list[str]:
    try:
        return split_z(git(root, "ls-files", "-z"))
    except WorkspaceError as exc:
        raise BatchError(str(exc)) from None


def file_units(root: Path, pattern: str, kind: UnitKind) -> list[tuple[str, list[str]]]:
    """(name, files) per unit: committed files matching ``pattern``, one per file or per dir."""
    if kind == "repo":
        raise BatchError("--unit repo needs --repos FILE")
    tracked = set(tracked_files(root))
    try:
        found = {str(p.relative_to(root)) for p in root.glob(pattern)}
    except ValueError as exc:  # e.g. an absolute or empty pattern
        raise BatchError(f"--files {pattern!r}: {exc}") from exc
    matched = sorted(found & tracked)
    if not matched:
        raise BatchError(f"no committed file in {root} matches {pattern!r}")
    if kind == "file":
        return [(f, [f]) for f in matched]
    groups: dict[str, list[str]] = {}
    for f in matched:
        groups.setdefault(str(PurePosixPath(f).parent), []).append(f)
    return [(d if d != "." else "(root)", files) for d, files in sorted(groups.items())]


def repo_units(listing: Path) -> list[tuple[str, str]]:
    """(name, source) per line of ``listing``: repository paths (relative to the file) or URLs."""
    try:
        lines = listing.read_text().splitlines()
    except OSError as exc:
        raise BatchError(f"cannot read --repos {listing}: {exc.strerror}") from exc
    units = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "://" in line or line.startswith("git@"):
            units.append((line, line))
            continue
        path = (listing.parent / line).expanduser().resolve()
        root = repo_root(path)
        units.append((str(root), str(root)))
    if not units:
        raise BatchError(f"--repos {listing} lists no repositories")
    return units
