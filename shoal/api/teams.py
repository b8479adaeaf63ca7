"""Teams for the API: their members as views, and a member's transcript as plain text.

A member's transcript is rendered from the messages the orchestrator recorded to and
from it (its events included) with the lines its tmux pane draws (``shoal.tmux.lines``),
so a headless member (``--mode process``) has one too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.actors.registry import actor_role
from shoal.api.models import TeamDetailView, TeamMemberView
from shoal.mailbox.envelope import Envelope

if TYPE_CHECKING:
    from shoal.messages.teams import TeamInfo, TeamMemberStatus

MAX_TRANSCRIPT = 64 * 1024
"""Characters of a transcript sent at most (the newest)."""
MESSAGES = 500
"""Recorded messages a transcript is made of at most (the newest)."""
STEERABLE = ("executor",)
"""Roles that read a steering line (``team.message``) on their next model turn (the lead
only shows messages to it; the others have no conversation to add it to)."""


def steerable(role: str) -> bool:
    return actor_role(role) in STEERABLE


def team_view(team: TeamInfo) -> TeamDetailView:
    return TeamDetailView(
        name=team.name,
        mode=team.mode,
        session=team.session,
        members=[member_view(m) for m in team.members],
    )


def member_view(m: TeamMemberStatus) -> TeamMemberView:
    return TeamMemberView(
        name=m.name,
        role=m.role,
        state=m.state,
        busy=m.busy,
        alive=m.alive,
        restarts=m.restarts,
        stalled=m.stalled,
        task_id=m.task_id,
        subtask=m.subtask,
        phase=m.phase,
        last_heartbeat=m.last_heartbeat,
        tokens=m.tokens,
        cost_usd=m.cost_usd,
        steerable=steerable(m.role),
    )


def find_member(team: TeamInfo, member: str) -> TeamMemberStatus | None:
    """By its name (``executor@red-2``) or without the team (``executor-2``)."""
    for m in team.members:
        if member in (m.name, m.name.replace(f"@{team.name}", "", 1)):
            return m
    return None


def transcript(member: str, bodies: list[str]) -> tuple[str, bool]:
    """The text of the recorded envelopes ``bodies`` (newest first) and whether it was cut."""
    import time

    from rich.text import Text

    out: list[str] = []
    for body in reversed(bodies):
        try:
            env = Envelope.decode(body.encode())
            label = f"task {env.task_id[:10]}" if env.task_id else ""
            shown = _lines(env, member, label)
        except Exception:  # a message we cannot show must not hide the others
            continue
        stamp = time.strftime("%H:%M:%S", time.localtime(env.sent_at))
        out += [f"{stamp} {Text.from_markup(markup).plain}" for markup in shown]
    text = "\n".join(out)
    cut = len(text) > MAX_TRANSCRIPT or len(bodies) >= MESSAGES
    return text[-MAX_TRANSCRIPT:], cut


def _lines(env: Envelope, member: str, label: str) -> list[str]:
    """The pane's lines (rich markup) for one recorded message to, from or about ``member``."""
    from shoal.tmux import lines

    if env.sender == member:
        return lines.outgoing(env, label)
    if env.recipient != "*":
        return lines.incoming(env, label)
    if env.kind == "task.progress":  # the bus events its pane follows for its tasks
        return lines.progress(env, label)
    if env.kind == "team.progress":
        return lines.team_progress(env.payload)
    return lines.done(env.payload, label)
