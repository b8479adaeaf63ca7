"""Rewinding a chat session: its turns with their file changes, and going back to before one.

Each turn that changed files keeps, with its user message in the transcript,
the snapshot of the work tree before its first change and the paths it
changed (``shoal.actors.turn_files``). Going back to before turn N sets each
path that turn N or a later one changed to its state before the first of them
that changed it (through ``shoal.workspace.rewind``, refusing over changes made
since unless forced), and appends a ``rewind`` marker to the transcript: the
conversation goes on from turn N-1, while the transcript keeps everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal.actors import conversation

if TYPE_CHECKING:
    from shoal.messages.chat import SessionMessage
    from shoal.messages.store import StoreQueryResult
    from shoal.workspace.rewind import Rewound


@dataclass(frozen=True)
class TurnInfo:
    turn: int
    text: str
    """What the person said (without attached files)."""
    changes: dict[str, Any] | None
    """``before``, ``after`` and ``paths``: the files the turn changed, if any."""

    @property
    def paths(self) -> list[str]:
        return list((self.changes or {}).get("paths", []))


def turns(live: StoreQueryResult) -> list[TurnInfo]:
    """The turns of the live conversation (rows of ``session.live``), oldest first."""
    hist = conversation.history(conversation.records(live))
    found = []
    for group in conversation.turns(hist.live):
        first = next((r for r in group if r.role == "user"), None)
        if first is None:
            continue
        text = str(first.meta.get("text") or first.content or "")
        found.append(TurnInfo(first.turn, " ".join(text.split()), first.meta.get("changes")))
    return found


def rewind_files(
    cwd: str, session_id: str, infos: list[TurnInfo], turn: int, *, force: bool
) -> Rewound:
    """Put back the files turn ``turn`` and the later ones changed."""
    from shoal.workspace import snapshots
    from shoal.workspace.rewind import Rewound, move

    targets: dict[str, str] = {}
    for info in sorted(infos, key=lambda i: i.turn):
        if info.turn >= turn and info.changes:
            for path in info.paths:
                targets.setdefault(path, info.changes["before"])
    if not targets:
        return Rewound()
    name = f"chat-{session_id}"
    known = list(snapshots.list_snapshots(cwd, name).values())
    return move(cwd, targets, known, force=force, keep_as=f"{name}.kept", whose="the chat")


def marker(turn: int) -> SessionMessage:
    """The transcript row that takes the conversation back to before ``turn``."""
    from shoal.messages.chat import SessionMessage

    return SessionMessage(role="rewind", meta={"turn": turn})


def check_turn(infos: list[TurnInfo], turn: int) -> str | None:
    """Why ``turn`` cannot be rewound to (None: it can)."""
    listed = [i.turn for i in infos]
    if turn in listed:
        return None
    if not listed:
        return "the conversation has no turns to rewind"
    shown = ", ".join(map(str, listed))
    return f"turn {turn} is not in the conversation (its turns: {shown}; compacted ones are gone)"


def summary(done: Rewound) -> str:
    """One line on what a rewind did to the files."""
    parts = []
    if done.written:
        parts.append("restored " + ", ".join(done.written))
    if done.removed:
        parts.append("removed " + ", ".join(done.removed))
    if done.overwritten:
        parts.append(f"your versions of {', '.join(done.overwritten)} are in {done.saved}")
    return "; ".join(parts) or "no file to change"
