"""The repository an executor edits: running git safely and per-iteration snapshots.

- ``shoal.workspace.git``: git with no prompts, no hooks and a fixed identity.
- ``shoal.workspace.snapshots``: keep every iteration's files, restore the best,
  without touching the user's HEAD, branch, index or stash.
"""

from shoal.workspace.git import WorkspaceError
from shoal.workspace.snapshots import (
    base_snapshot,
    changed_files,
    diff,
    drop,
    list_snapshots,
    restore,
    snapshot,
)

__all__ = [
    "WorkspaceError",
    "base_snapshot",
    "changed_files",
    "diff",
    "drop",
    "list_snapshots",
    "restore",
    "snapshot",
]
