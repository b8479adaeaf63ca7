"""Rewind: put the files a task (or chat turns) changed back to an earlier snapshot.

A task's snapshots (``refs/shoal/<task>/<n>``, 0 before it ran) hold the whole
work tree at its start, then on each iteration only the paths its own tool
calls changed. Those paths are the task's; rewinding to iteration N sets each
of them to its state in snapshot N (written, or removed where N lacks it).
Nothing else is touched: not another file, not HEAD, a branch, the index or
the stash, so files you made (untracked or not) stay.

Before anything is written, each of the paths must be in a state one of the
snapshots holds (the task left it so, or an earlier rewind did): then nothing
is lost that a snapshot does not keep, and a second rewind can go forward
again. A path changed since is refused, naming it, unless ``force``: then its
current version is first kept in a snapshot of its own
(``refs/shoal/<task>.kept/<k>``) and overwritten.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shoal.workspace import snapshots
from shoal.workspace.git import WorkspaceError, toplevel

State = tuple[str, str] | None


class RewindRefused(WorkspaceError):
    """Some paths changed after the task (or turn) left them; nothing was written."""

    def __init__(self, paths: list[str], whose: str) -> None:
        self.paths = paths
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        super().__init__(
            f"{shown} changed since {whose} left {'it' if len(paths) == 1 else 'them'}; "
            "nothing was rewound (--force keeps your version in a snapshot ref and rewinds)"
        )


@dataclass
class Rewound:
    """What a rewind did to the work tree."""

    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    """Already as the snapshot has them."""
    overwritten: list[str] = field(default_factory=list)
    """Changed since (``force``): their versions are in ``saved``."""
    saved: str | None = None
    """The ref keeping the overwritten versions."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def task_paths(repo: str | Path, snaps: dict[int, str]) -> list[str]:
    """The paths a task changed: those any iteration's snapshot has unlike the base."""
    base = snaps[0]
    found: set[str] = set()
    for n, sha in snaps.items():
        if n:
            found.update(snapshots.changed_files(repo, base, sha))
    return sorted(found)


def rewind_task(
    repo: str | Path, task_id: str, iteration: int = 0, *, force: bool = False
) -> Rewound:
    """Set the task's paths to their state in its snapshot ``iteration`` (0: before it ran)."""
    root = toplevel(repo)
    snaps = snapshots.list_snapshots(root, task_id)
    if 0 not in snaps:
        raise WorkspaceError(
            f"task {task_id} has no snapshots in {root}: their refs were deleted, or it never "
            "started an iteration"
        )
    if iteration not in snaps:
        have = ", ".join(str(n) for n in snaps)
        raise WorkspaceError(
            f"task {task_id} has no iteration {iteration}; its snapshots are {have} (0: before it)"
        )
    paths = task_paths(root, snaps)
    targets = {p: snaps[iteration] for p in paths}
    return move(
        root,
        targets,
        list(snaps.values()),
        force=force,
        keep_as=f"{task_id}.kept",
        whose=f"task {task_id}",
    )


def move(
    repo: str | Path,
    targets: dict[str, str],
    known: list[str],
    *,
    force: bool,
    keep_as: str,
    whose: str,
) -> Rewound:
    """Set each path of ``targets`` to its state in the snapshot it maps to, if every path is
    in a state one of the ``known`` snapshots holds (else RewindRefused, unless ``force``)."""
    root = toplevel(repo)
    paths = sorted(targets)
    if not paths:
        return Rewound()
    now: dict[str, State] = dict(snapshots.work_tree_states(root, paths))
    held = {sha: snapshots.path_states(root, sha, paths) for sha in {*known, *targets.values()}}
    changed = [p for p in paths if all(now.get(p) != held[s].get(p) for s in known)]
    if changed and not force:
        raise RewindRefused(changed, whose)
    done = Rewound(overwritten=changed)
    if changed:
        done.saved = _keep(root, keep_as, changed, targets[changed[0]])
    todo: dict[str, list[str]] = {}
    for p in paths:
        if now.get(p) == held[targets[p]].get(p):
            done.unchanged.append(p)
        else:
            todo.setdefault(targets[p], []).append(p)
    for sha, group in todo.items():
        written, removed = snapshots.put(root, sha, group)
        done.written += written
        done.removed += removed
    done.written.sort()
    done.removed.sort()
    return done


def _keep(root: Path, keep_as: str, paths: list[str], prior: str) -> str:
    """Snapshot the current versions of ``paths`` (about to be overwritten); the ref's name."""
    taken = snapshots.list_snapshots(root, keep_as)
    n = max(taken) + 1 if taken else 0
    snapshots.snapshot_paths(root, keep_as, n, prior, paths)
    return f"{snapshots.REF_PREFIX}/{keep_as}/{n}"
