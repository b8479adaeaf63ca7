"""A member's live transcript in its pane.

The actor runtime hands every message the member takes and sends to
:meth:`Transcript.observe` (on its mailbox loop, so that only queues it); a
thread draws them on the pane's :class:`~shoal.tmux.screen.Screen` as lines
(:mod:`.lines`): the work it is given, each tool call (a refusal with its reason,
an edit's short diff, a command's output tail), what the model said, its replies,
steering messages, and from the event bus the phase of the tasks it works on,
a team run's milestones and how those tasks ended. Every line about a task names
it by a label: the team run's subtask when it is one. The pane's title says what
the member is doing (tmux shows it in the pane's border).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from shoal.tmux import lines

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.tmux.screen import Screen

_STOP = object()
TOPICS = ["task.progress", "team.progress", "task.done"]
# Messages that give the member work: its title says so until the reply goes out.
_WORK = ("exec.request", "plan.request", "eval.request", "workspace.restore", "team.run")
_LABELS_KEPT = 2_000


class Transcript:
    def __init__(self, name: str, role: str, events_endpoint: str, screen: Screen) -> None:
        self.name = name
        self.role = role
        self.events_endpoint = events_endpoint
        self.screen = screen
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._labels: dict[str, str] = {}  # task id -> how lines name it
        self._doing: dict[str, str] = {}  # id of a work message -> what the title says
        self._thread = threading.Thread(target=self._run, name="transcript", daemon=True)

    # --- any thread ------------------------------------------------------------

    def start(self) -> None:
        self.screen.title(f"{self.name} · idle")
        self._thread.start()

    def observe(self, direction: str, env: Envelope) -> None:
        """From the mailbox loop: never blocks."""
        self._queue.put((direction, env))

    def note(self, markup: str) -> None:
        self._queue.put(("note", markup))

    def close(self, last: str | None = None, timeout: float = 2.0) -> None:
        """Draw what is queued, then stop; ``last`` is the final line.

        It is drawn only after the thread stopped, so no task progress event that
        arrives meanwhile can follow it (the pane's last line says the member ended).
        """
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self.screen.close(None if last is None else self._stamp(last))

    # --- the drawing thread ----------------------------------------------------------

    def _run(self) -> None:
        from shoal.mailbox.events import Subscriber

        with Subscriber(self.events_endpoint, TOPICS) as events:
            while True:
                try:
                    item = self._queue.get(timeout=0.05)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    return
                if item is not None:
                    self._draw(*item)
                event = events.recv(timeout=0)
                while event is not None:
                    if event.task_id in self._labels:
                        self._event(event)
                    event = events.recv(timeout=0)

    def _line(self, markup: str) -> None:
        self.screen.line(self._stamp(markup))

    @staticmethod
    def _stamp(markup: str) -> str:
        return f"[dim]{time.strftime('%H:%M:%S')}[/dim] {markup}"

    def _draw(self, direction: str, item: Any) -> None:
        if direction == "note":
            self._line(item)
            return
        try:
            if direction == "in":
                shown = lines.incoming(item, self._label_in(item))
                self._working(item)
            else:
                shown = lines.outgoing(item, self._label(item.task_id))
                self._answered(item)
        except Exception as exc:  # a message we cannot show must not stop the transcript
            shown = [f"[dim]{escape(item.kind)} ({type(exc).__name__})[/dim]"]
        for markup in shown:
            self._line(markup)

    def _event(self, env: Envelope) -> None:
        try:
            label = self._label(env.task_id)
            if env.kind == "task.progress":
                shown = lines.progress(env, label)
            elif env.kind == "team.progress":
                shown = lines.team_progress(env.payload)
            else:
                shown = lines.done(env.payload, label)
        except Exception as exc:
            shown = [f"[dim]{escape(env.kind)} ({type(exc).__name__})[/dim]"]
        for markup in shown:
            self._line(markup)

    # --- labels and the title -----------------------------------------------------------

    def _label_in(self, env: Envelope) -> str:
        """The label of an incoming message's task, learnt from it when it says more."""
        task = env.task_id
        if not task:
            return ""
        p = env.payload
        subtask = p.get("subtask") if isinstance(p.get("subtask"), str) else None
        if env.kind not in _WORK and env.kind != "team.prepare":
            return self._label(task)  # only work makes a task this member's to follow
        if env.kind in ("team.prepare", "team.run"):
            self._labels[task] = f"team run {task[:10]}"
        elif subtask:
            self._labels[task] = f"{escape(subtask)} (task {task[:10]})"
        elif task not in self._labels:
            self._labels[task] = f"task {task[:10]}"
        if len(self._labels) > _LABELS_KEPT:
            self._labels.pop(next(iter(self._labels)))
        return self._labels[task]

    def _label(self, task_id: str | None) -> str:
        if not task_id:
            return ""
        return self._labels.get(task_id) or f"task {task_id[:10]}"

    def _working(self, env: Envelope) -> None:
        if env.kind not in _WORK:
            return
        p = env.payload
        what = p.get("subtask") or (env.task_id or "")[:10]
        doing = {
            "exec.request": f"{what} · iteration {p.get('iteration')}",
            "plan.request": f"planning {what}",
            "eval.request": f"evaluating {what}",
            "workspace.restore": f"restoring {what}",
            "team.run": f"team run {what}",
        }[env.kind]
        self._doing[env.id] = doing
        self.screen.title(f"{self.name} · {doing}")

    def _answered(self, env: Envelope) -> None:
        if env.reply_to is None or self._doing.pop(env.reply_to, None) is None:
            return
        still = list(self._doing.values())
        self.screen.title(f"{self.name} · {still[-1] if still else 'idle'}")
