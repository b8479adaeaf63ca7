"""The files an agent's tool calls change, watched call by call (an iteration, a chat turn).

:func:`watch_for` is the Toolbox's watch: a file tool's path is the call's, and a
command's changes are found by probing the work tree around it (see
``shoal.workspace.changes``). :class:`TurnFiles` adds what a chat turn needs to be
rewound: a snapshot of the work tree before the turn's first change
(``refs/shoal/chat-<session>/<n>``) and one after it holding only the paths the
turn changed (``<n+1>``); the transcript keeps both with the turn.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.tools.permissions import PermissionRequest
    from shoal.workspace.changes import TaskChanges

log = logging.getLogger(__name__)


def watch_for(
    changes: TaskChanges, request: PermissionRequest
) -> contextlib.AbstractContextManager[None]:
    """Around one allowed call: what it changes in the work tree is recorded in ``changes``."""
    from shoal.tools.permissions import ToolKind

    if request.kind in (ToolKind.READ, ToolKind.AGENT, ToolKind.NETWORK):
        return contextlib.nullcontext()
    if request.kind in (ToolKind.EDIT, ToolKind.CONFIG) and request.aliases:
        return changes.writing(request.aliases[0])
    return changes.probing()  # a command, a git write, an MCP tool: anything


class TurnFiles:
    """One chat turn's file changes, with the snapshots to rewind them."""

    def __init__(self, cwd: str, session_id: str) -> None:
        self.cwd = cwd
        self.name = f"chat-{session_id}"
        self.before: str | None = None
        self.n = 0
        self.changes: TaskChanges | None = None
        self.off = False
        """Not a git work tree (or git failed): the turn's files cannot be rewound."""

    def watch(self, request: PermissionRequest) -> contextlib.AbstractContextManager[None]:
        from shoal.tools.permissions import ToolKind

        if self.off or request.kind in (ToolKind.READ, ToolKind.AGENT):
            return contextlib.nullcontext()
        if self.changes is None and not self._start():
            return contextlib.nullcontext()
        assert self.changes is not None
        return watch_for(self.changes, request)

    def _start(self) -> bool:
        """Snapshot the work tree before the turn's first change; False where that cannot be."""
        from shoal.workspace import snapshots
        from shoal.workspace.changes import TaskChanges
        from shoal.workspace.git import WorkspaceError

        try:
            taken = snapshots.list_snapshots(self.cwd, self.name)
            self.n = max(taken) + 1 if taken else 0
            self.before = snapshots.snapshot(self.cwd, self.name, self.n)
            self.changes = TaskChanges(self.cwd, self.name, self.n)
        except WorkspaceError as exc:
            log.info("the chat's files are not kept for rewinding in %s: %s", self.cwd, exc)
            self.off = True
        return not self.off

    def finish(self) -> dict[str, Any] | None:
        """``{"before", "after", "paths"}`` of the turn (None if it changed nothing)."""
        from shoal.workspace import changes as records
        from shoal.workspace import snapshots
        from shoal.workspace.git import WorkspaceError

        if self.changes is None or self.before is None:
            return None
        paths = sorted(self.changes.paths)
        self.changes.close()
        try:
            records.forget(self.cwd, f"{self.name}")
            if not paths:
                return None
            after = snapshots.snapshot_paths(self.cwd, self.name, self.n + 1, self.before, paths)
        except WorkspaceError as exc:
            log.warning("the turn's changes could not be kept for rewinding: %s", exc)
            return None
        return {"before": self.before, "after": after, "paths": paths}
