"""The person at a member's pane: what they are asked, what they answer, what they type.

- An executor's calls that need approval (``shell`` in accept-edits mode, an ask
  rule...) are asked here: the question is a transcript line and the input line
  becomes ``allow shell? (y)es (n)o (a)lways``. When the team has a lead pane the
  question is also sent there (``team.ask``); the first answer, in either pane,
  decides, and the other pane is told (``team.answer``). With nobody attached to
  the team's session, or no answer in time, the call is refused and the refusal
  says why (:class:`NobodyToAsk`): never approved without a person.
- Lines typed into an executor's pane steer it (a ``team.message`` from the
  person); into the lead's pane, ``@MEMBER text`` messages a member and ``y``,
  ``n`` or ``a`` answer a forwarded question; panes that take no input say so in
  one line.
"""

from __future__ import annotations

import getpass
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from shoal.actors.base import inline
from shoal.actors.registry import base_role, team_of
from shoal.ids import new_id
from shoal.mailbox.envelope import Envelope
from shoal.messages.base import Payload
from shoal.messages.teams import TeamAnswer, TeamAsk, TeamMessage
from shoal.tmux.layout import short
from shoal.tools.permissions import NobodyToAsk, covered_by_always

if TYPE_CHECKING:
    from shoal.actors.base import Actor, ActorContext
    from shoal.tmux.screen import Screen
    from shoal.tools.permissions import PermissionRequest

ASK_TIMEOUT = 600.0
"""Seconds a call waits for an answer before it is refused (below the stall timeout);
``SHOAL_APPROVAL_TIMEOUT`` sets another."""
_YES, _NO, _ALWAYS = ("y", "yes"), ("n", "no"), ("a", "always")
PROMPT = "\u276f "  # a heavy right-pointing angle, the mark of a prompt
"""Starts the input line of a pane that takes typed lines."""
WATCH_ONLY = "watch only: type into an executor's or the lead's pane"
_ASKING = "? (y)es (n)o (a)lways"


def input_line(line: str) -> bool:
    """Whether a line of a pane's screen is its input line (a prompt, a question, a hint):
    a stored scrollback ends with one, which a replay leaves out."""
    return line.startswith((PROMPT, WATCH_ONLY[:20])) or _ASKING in line


@dataclass
class Question:
    ask_id: str
    tool: str
    text: str
    """The question in one line (tool and subject)."""
    member: str | None = None
    """For a question forwarded to the lead: the member asking."""
    lead: str | None = None
    """For a member's own question: the lead's pane it was forwarded to."""
    done: threading.Event = field(default_factory=threading.Event)
    allow: bool = False
    always: bool = False


class Terminal:
    """What a person's pane can tell about itself (through tmux; see :mod:`.pane`)."""

    def attached(self) -> bool:
        """Someone has the team's session on a screen."""
        return False

    def lead(self) -> str | None:
        """The team's lead, if it has a live pane in the session."""
        return None

    def members(self) -> list[str]:
        """The members with panes in the session."""
        return []


class Person:
    """The person at one member's pane (one per pane process; its threads share it)."""

    def __init__(
        self, name: str, role: str, screen: Screen, terminal: Terminal, mode: str = "watch"
    ) -> None:
        self.name = name
        self.role = role
        self.team = team_of(role) or ""
        self.screen = screen
        self.terminal = terminal
        self.mode = mode
        self.ctx: ActorContext | None = None  # the member's mailbox, once it runs
        self.typed: Callable[[str, Payload], object] | None = None  # the pane's connection
        self.cancelled: Callable[[str], bool] = lambda task_id: False
        self._lock = threading.Lock()
        self._questions: list[Question] = []
        self._always: dict[str, set[str]] = {}  # task id -> tools allowed for its rest
        self._person = _user()

    # --- the input line -------------------------------------------------------------

    def show_prompt(self) -> None:
        """The input line for what typing does now: answer the first open question, or
        the pane's own use of typed lines."""
        with self._lock:
            question = self._questions[0] if self._questions else None
        if question is not None:
            who = f"{_short(question.member)}: " if question.member else ""
            self.screen.prompt(f"{who}allow {question.tool}{_ASKING} {PROMPT}")
        elif self.mode == "steer":
            self.screen.prompt(PROMPT, f"type a line to steer {self.name}")
        elif self.mode == "lead":
            self.screen.prompt(PROMPT, "@MEMBER text messages a member; y/n/a answers")
        else:
            self.screen.prompt("", WATCH_ONLY)

    def on_line(self, text: str) -> None:
        """A line the person typed (from the key thread)."""
        with self._lock:
            question = self._questions[0] if self._questions else None
        if question is not None:
            self._answer(question, text)
        elif self.mode == "steer":
            self._send_typed(self.name, text)
        elif self.mode == "lead":
            self._message(text)
        else:
            self.screen.line(
                f"[yellow]{escape(self.name)} takes no typed lines[/yellow]: type into an "
                "executor's pane to steer it, or into the lead's (@MEMBER text)"
            )

    # --- asking (an executor's handler thread) ------------------------------------------

    def ask(self, request: PermissionRequest, task_id: str, subtask: str | None) -> bool:
        """Ask about one call; True allows it. Raises NobodyToAsk with the reason."""
        with self._lock:
            if covered_by_always(request, self._always.get(task_id, set())):
                return True
        if not self.terminal.attached():
            raise NobodyToAsk(self._unattended(request))
        what = request.summary or f"{request.tool} {request.subject}"
        lead = self.terminal.lead()
        question = Question(new_id(), request.tool, what, lead=lead)
        with self._lock:
            self._questions.append(question)
        label = f" ({subtask})" if subtask else ""
        self.screen.line(
            f"[bold yellow]? {escape(what)}[/bold yellow]{escape(label)} needs your approval: "
            "y, n or a (always, for this task)" + (f"; or answer in {lead}'s pane" if lead else "")
        )
        self.show_prompt()
        self.screen.bell()
        if lead is not None and self.ctx is not None:
            ask = TeamAsk(
                ask_id=question.ask_id,
                member=self.name,
                tool=request.tool,
                subject=request.subject[:300],
                summary=what[:300],
                task_id=task_id,
                subtask=subtask,
            )
            self.ctx.send(lead, ask, task_id=task_id)
        try:
            return self._wait(question, request, task_id, lead)
        finally:
            with self._lock:
                if question in self._questions:
                    self._questions.remove(question)
            self.show_prompt()

    def _wait(
        self, question: Question, request: PermissionRequest, task_id: str, lead: str | None
    ) -> bool:
        wait = _approval_timeout()
        deadline = time.monotonic() + wait
        while not question.done.wait(0.2):
            if self.cancelled(task_id):
                self._tell_lead(lead, question, allow=False, how="(the task was cancelled)")
                raise NobodyToAsk(
                    f"the task was cancelled while {request.tool} waited for approval"
                )
            if time.monotonic() > deadline:
                self._tell_lead(lead, question, allow=False, how="(no answer in time)")
                self.screen.line(f"[red]✗ no answer in {wait:g} s: refused[/red]")
                raise NobodyToAsk(
                    f"nobody answered within {wait:g} s whether {request.tool} may run "
                    "(asked in the member's pane); do not retry it, take another approach"
                )
        if question.allow and question.always:
            with self._lock:
                self._always.setdefault(task_id, set()).add(request.tool)
        return question.allow

    def _unattended(self, request: PermissionRequest) -> str:
        team = self.team or "NAME"
        return (
            f"{request.tool} needs approval and nobody is attached to the team's tmux session "
            f"to give it (asked in {self.name}'s pane); `shoal team attach {team}` to answer "
            f"such calls there, or rerun with --permission-mode bypass or an allow rule for "
            f"{request.tool}"
        )

    # --- answers ------------------------------------------------------------------------

    def _answer(self, question: Question, text: str) -> None:
        word = text.strip().lower()
        if word not in (*_YES, *_NO, *_ALWAYS):
            self.screen.line("[yellow]answer y (yes), n (no) or a (always, for this task)[/yellow]")
            return
        allow, always = word in (*_YES, *_ALWAYS), word in _ALWAYS
        with self._lock:
            if question not in self._questions:
                return  # answered meanwhile in the other pane
            self._questions.remove(question)
        question.allow, question.always = allow, always
        how = "allowed" + (" for the rest of the task" if always else "") if allow else "declined"
        mark = "[green]✓[/green]" if allow else "[red]✗[/red]"
        who = f"{question.member}'s " if question.member else ""
        self.screen.line(f"{mark} {escape(who + question.text)}: {how} by you")
        if question.member is not None and self.ctx is not None:  # forwarded: tell the member
            by = f"in {self.name}'s pane"
            answer = TeamAnswer(ask_id=question.ask_id, allow=allow, always=always, by=by)
            self.ctx.send(question.member, answer)
        else:
            self._tell_lead(question.lead, question, allow=allow, always=always)
        question.done.set()
        self.show_prompt()

    def _tell_lead(
        self,
        lead: str | None,
        question: Question,
        *,
        allow: bool,
        always: bool = False,
        how: str = "",
    ) -> None:
        """The question was settled here: the lead's pane stops asking it."""
        if lead is not None and self.ctx is not None:
            by = how or f"in {self.name}'s pane"
            answer = TeamAnswer(ask_id=question.ask_id, allow=allow, always=always, by=by)
            self.ctx.send(lead, answer)

    def asked(self, ask: TeamAsk) -> None:
        """A member's question, forwarded to this (the lead's) pane."""
        question = Question(ask.ask_id, ask.tool, ask.summary or ask.tool, member=ask.member)
        with self._lock:
            self._questions.append(question)
        label = f" ({ask.subtask})" if ask.subtask else ""
        self.screen.line(
            f"[bold yellow]? {escape(ask.member)}{escape(label)} asks: "
            f"{escape(question.text)}[/bold yellow] (y, n or a here, or in its pane)"
        )
        self.show_prompt()
        self.screen.bell()

    def answered(self, answer: TeamAnswer) -> None:
        """An answer from the other pane: to a question of ours, or one forwarded to us."""
        with self._lock:
            question = next((q for q in self._questions if q.ask_id == answer.ask_id), None)
            if question is not None:
                self._questions.remove(question)
        if question is None:
            return
        question.allow, question.always = answer.allow, answer.always
        verdict = "allowed" if answer.allow else "declined"
        who = f"{question.member}'s " if question.member else ""
        self.screen.line(f"· {escape(who + question.text)}: {verdict} {escape(answer.by)}")
        question.done.set()
        self.show_prompt()

    # --- typed messages -------------------------------------------------------------------

    def _message(self, text: str) -> None:
        """The lead's pane: ``@MEMBER text`` goes to that member."""
        target, _, body = text.partition(" ")
        if not target.startswith("@") or not body.strip():
            self.screen.line(
                "[yellow]start with @MEMBER to message a member[/yellow] (e.g. @executor-1 "
                "keep it small); y, n or a answer a question when one is asked"
            )
            return
        member = self._member(target[1:])
        if member is None:
            known = ", ".join(_short(m) for m in self.terminal.members()) or "none"
            self.screen.line(f"[red]no member {escape(target[1:])} in {self.team}[/red] ({known})")
            return
        self._send_typed(member, body.strip())
        self.screen.line(f"[magenta]→ {escape(member)}[/magenta]: {escape(body.strip())}")

    def _member(self, short: str) -> str | None:
        members = self.terminal.members()
        for member in members:
            if short in (member, _short(member)):
                return member
        return None

    def _send_typed(self, recipient: str, text: str) -> None:
        if self.typed is None:
            self.screen.line("[red]not connected yet; type the line again in a moment[/red]")
            return
        self.typed(recipient, TeamMessage(text=text[:20_000], sender=self._person, source="person"))


def hosting(actor_cls: type[Actor], person: Person) -> type[Actor]:
    """``actor_cls`` with what a person at its pane brings: answers to approval questions
    (``team.ask``, ``team.answer``) and, for an executor, the person as its asker."""

    def on_team_ask(self: Any, msg: Envelope, payload: TeamAsk) -> None:
        person.asked(payload)

    def on_team_answer(self: Any, msg: Envelope, payload: TeamAnswer) -> None:
        person.answered(payload)

    attrs: dict[str, Any] = {
        "on_team_ask": inline(on_team_ask),
        "on_team_answer": inline(on_team_answer),
    }
    if hasattr(actor_cls, "asker"):
        attrs["asker"] = staticmethod(person.ask)
    return type(actor_cls.__name__, (actor_cls,), attrs)


def _approval_timeout() -> float:
    try:
        return max(1.0, float(os.environ.get("SHOAL_APPROVAL_TIMEOUT", ASK_TIMEOUT)))
    except ValueError:
        return ASK_TIMEOUT


def mode_of(actor_cls: type[Actor], role: str) -> str:
    """What typing into the member's pane does: ``lead`` (messages, answers), ``steer``
    (a member that reads messages on its next turn) or ``watch`` (nothing)."""
    if base_role(role) == "lead":
        return "lead"
    return "steer" if hasattr(actor_cls, "on_team_message") else "watch"


def _short(member: str | None) -> str:
    return short(member) if member else ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "person"
