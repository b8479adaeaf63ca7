"""The tools of a team member: messages to teammates and the lead, team memory, the task list.

Offered when the executor works for a team (``--team``) or on a team run's
subtask. Messages are ``team.message`` envelopes through the broker, so they are
recorded and reach the recipient's conversation on its next turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.tools.base import ToolArgs
from shoal.tools.registry import Tool, agent_tool

if TYPE_CHECKING:
    from shoal.actors.executor import Iteration


class SendMessageArgs(ToolArgs):
    to: str = ""
    """A teammate's name (e.g. executor@red-2), or "lead"."""
    text: str = ""
    """The message."""


class RememberArgs(ToolArgs):
    note: str = ""
    """What the team should know, in a sentence or two."""


class NoArgs(ToolArgs):
    pass


class ClaimTaskArgs(ToolArgs):
    id: str = ""
    """The id of a pending task in the team's list."""


def provide(loop: Iteration) -> list[Tool]:
    request = loop.request
    scope = request.team or request.parent
    if scope is None:
        return []
    tools = _Tools(loop, scope)
    return [
        agent_tool(
            "send_message",
            "Send a message to a teammate (by name, e.g. executor@red-2) or to the lead "
            '("lead"). It reaches them on their next turn.',
            SendMessageArgs,
            tools.send_message,
            subject=lambda args: args.to,
        ),
        agent_tool(
            "remember",
            "Write a short note to team memory; teammates' prompts recall relevant notes.",
            RememberArgs,
            tools.remember,
        ),
        agent_tool(
            "list_tasks",
            "The team's task list: id, title, status, owner.",
            NoArgs,
            tools.list_tasks,
        ),
        agent_tool(
            "claim_task",
            "Claim a pending task of the team's list; one claimant wins.",
            ClaimTaskArgs,
            tools.claim_task,
            subject=lambda args: args.id,
        ),
    ]


class _Tools:
    def __init__(self, loop: Iteration, scope: str) -> None:
        self.loop = loop
        self.ctx = loop.actor.ctx
        self.scope = scope

    def send_message(self, args: SendMessageArgs) -> tuple[str, bool]:
        from shoal.mailbox.envelope import ROLE_PREFIX
        from shoal.messages.teams import TeamMessage

        to, text = args.to.strip(), args.text.strip()
        if not to or not text:
            return "send_message needs a recipient (to) and a text", False
        if to == self.ctx.name:
            return "that is you; send the message to a teammate or the lead", False
        # The lead of the task's team (its pane) when the task runs for one, else shoal's.
        team = self.loop.request.team
        lead = f"lead@{team}" if team else "lead"
        recipient = ROLE_PREFIX + lead if to == "lead" else to
        source = "lead" if to == "lead" else "teammate"
        self.ctx.send(
            recipient,
            TeamMessage(
                text=text[:20_000],
                sender=self.ctx.name,
                source=source,
                subtask=self.loop.request.subtask,
            ),
            task_id=self.loop.task_id,
        )
        return f"sent to {to}", True

    def remember(self, args: RememberArgs) -> tuple[str, bool]:
        from shoal.mailbox.errors import MailboxError
        from shoal.messages.memory import MemoryRemember, MemoryRememberResult, NewLearning

        note = args.note.strip()
        if len(note) < 3:
            return "remember needs a note of a few words", False
        request = MemoryRemember(
            learnings=[NewLearning(kind="team_note", content=note[:2000], confidence=0.8)],
            source_task=self.loop.task_id,
            team=self.scope,
        )
        try:
            reply = self.ctx.ask(request, task_id=self.loop.task_id)
        except MailboxError as exc:
            return f"team memory is not reachable now ({exc}); try again later", False
        if isinstance(reply, MemoryRememberResult) and reply.reinforced:
            return "a teammate noted this already; it was reinforced", True
        return "noted in team memory", True

    def list_tasks(self, args: NoArgs) -> tuple[str, bool]:
        from shoal.messages.store import StoreQuery, StoreQueryResult

        reply = self.ctx.ask(
            StoreQuery(name="team.tasks", params={"list_id": self.scope}),
            task_id=self.loop.task_id,
        )
        if not isinstance(reply, StoreQueryResult) or not reply.rows:
            return "the team has no task list", True
        lines = [f"{r[0]}: {r[1]} [{r[2]}{', ' + r[3] if r[3] else ''}]" for r in reply.rows]
        return "\n".join(lines), True

    def claim_task(self, args: ClaimTaskArgs) -> tuple[str, bool]:
        from shoal.messages.teams import TeamTaskClaim, TeamTaskClaimResult

        task = args.id.strip()
        reply = self.ctx.ask(
            TeamTaskClaim(list_id=self.scope, id=task, owner=self.ctx.name),
            task_id=self.loop.task_id,
        )
        if isinstance(reply, TeamTaskClaimResult) and reply.won:
            return f"{task} is yours", True
        reason = reply.reason if isinstance(reply, TeamTaskClaimResult) else "the claim failed"
        return f"not claimed: {reason}", False
