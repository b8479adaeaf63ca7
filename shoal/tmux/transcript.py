"""A member's live transcript in its pane, rendered with rich.

The actor runtime hands every message the member takes and sends to
:meth:`Transcript.observe` (on its mailbox loop, so that only queues it); a
thread renders them as lines: the work it is given, each tool call, what the
model said, its replies, steering messages, and the phase of the tasks it
works on (``task.progress`` from the event bus). Lines, not a full-screen
view: the pane's scrollback is the transcript that is stored when it ends.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from shoal.mailbox.envelope import Envelope

_STOP = object()


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Transcript:
    def __init__(self, name: str, role: str, events_endpoint: str, console: Console) -> None:
        self.name = name
        self.role = role
        self.events_endpoint = events_endpoint
        self.console = console
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._tasks: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="transcript", daemon=True)

    # --- any thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def observe(self, direction: str, env: Envelope) -> None:
        """From the mailbox loop: never blocks."""
        self._queue.put((direction, env))

    def note(self, markup: str) -> None:
        self._queue.put(("note", markup))

    def close(self, last: str | None = None, timeout: float = 2.0) -> None:
        """Render what is queued, then stop; ``last`` is the final line.

        It is drawn only after the thread stopped, so no task progress event that
        arrives meanwhile can follow it (the pane's last line says the member ended).
        """
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if last is not None:
            self._line(last)

    # --- the rendering thread ----------------------------------------------------

    def _run(self) -> None:
        from shoal.mailbox.events import Subscriber

        with Subscriber(self.events_endpoint, ["task.progress"]) as events:
            while True:
                try:
                    item = self._queue.get(timeout=0.05)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    return
                if item is not None:
                    self._render(*item)
                event = events.recv(timeout=0)
                while event is not None:
                    if event.task_id in self._tasks:
                        self._progress(event)
                    event = events.recv(timeout=0)

    def _line(self, markup: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.console.print(f"[dim]{stamp}[/dim] {markup}")

    def _render(self, direction: str, item: Any) -> None:
        if direction == "note":
            self._line(item)
            return
        try:
            if direction == "in":
                self._incoming(item)
            else:
                self._outgoing(item)
        except Exception as exc:  # a message we cannot show must not stop the transcript
            self._line(f"[dim]{item.kind} ({type(exc).__name__})[/dim]")

    def _incoming(self, env: Envelope) -> None:
        from rich.markup import escape

        p = env.payload
        if env.task_id:
            self._tasks.add(env.task_id)
        task = f"task {env.task_id[:10]}" if env.task_id else ""
        if env.kind == "exec.request":
            self._line(
                f"[bold cyan]▶ {task} iteration {p.get('iteration')}[/bold cyan]: "
                f"{escape(_short(p.get('description', ''), 300))}"
            )
            for finding in p.get("findings") or []:
                self._line(
                    f"  [yellow]finding[/yellow] [{finding.get('severity')}] "
                    f"{escape(_short(finding.get('title', ''), 160))}"
                )
        elif env.kind == "plan.request":
            self._line(
                f"[bold cyan]▶ plan {task}[/bold cyan]: "
                f"{escape(_short(p.get('description', ''), 300))}"
            )
        elif env.kind == "eval.request":
            self._line(f"[bold cyan]▶ evaluate {task} iteration {p.get('iteration')}[/bold cyan]")
        elif env.kind == "team.message":
            self._line(
                f"[bold magenta]✉ {escape(p.get('sender', '?'))} ({p.get('source')})[/bold magenta]"
                f": {escape(_short(p.get('text', ''), 500))}"
            )
        elif env.kind == "task.cancel":
            self._line(f"[red]■ {task} cancelled[/red]")
        elif env.kind == "workspace.restore":
            self._line(f"[cyan]▶ {task}: restoring the best iteration[/cyan]")
        else:
            self._line(f"[dim]▶ {escape(env.kind)} from {escape(env.sender)}[/dim]")

    def _outgoing(self, env: Envelope) -> None:
        from rich.markup import escape

        p = env.payload
        if env.kind == "exec.event":
            if p.get("type") == "tool_call":
                mark = "[green]✓[/green]" if p.get("ok", True) else "[red]✗[/red]"
                self._line(
                    f"  [bold]{escape(p.get('name', ''))}[/bold] "
                    f"{escape(_short(p.get('detail', ''), 160))} {mark}"
                )
            elif p.get("type") == "text":
                self._line(f"  [italic]{escape(_short(p.get('detail', ''), 600))}[/italic]")
        elif env.kind == "exec.result":
            usage = p.get("usage") or {}
            tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
            error = f" [red]error: {escape(p['error'])}[/red]" if p.get("error") else ""
            self._line(
                f"[bold green]◀ iteration {p.get('iteration')} done[/bold green]: "
                f"{escape(_short(p.get('summary', ''), 300))} · {p.get('turns')} turns · "
                f"{tokens} tokens · ${usage.get('cost_usd', 0.0):.4f}{error}"
            )
        elif env.kind == "plan.result":
            steps = (p.get("plan") or {}).get("steps") or []
            self._line(f"[bold green]◀ plan[/bold green]: {len(steps)} step(s)")
            for step in steps:
                self._line(f"  - {escape(_short(step.get('title', ''), 160))}")
        elif env.kind == "eval.result":
            self._line(f"[bold green]◀ score {p.get('score', 0):.2f}[/bold green]")
        elif env.kind == "workspace.restore.result":
            files = ", ".join(p.get("files_changed") or []) or "no files"
            self._line(f"[green]◀ restored[/green]: {escape(files)}")
        elif env.kind == "mailbox.error":
            self._line(f"[red]✗ {escape(p.get('code', ''))}: {escape(p.get('message', ''))}[/red]")
        else:
            self._line(f"[dim]◀ {escape(env.kind)} to {escape(env.recipient)}[/dim]")

    def _progress(self, env: Envelope) -> None:
        p = env.payload
        score = "" if p.get("score") is None else f" · score {p['score']:.2f}"
        self._line(
            f"[dim]· task {(env.task_id or '')[:10]} {p.get('phase')}"
            f" (iteration {p.get('iteration')}){score} · {p.get('tokens')} tokens"
            f" · ${p.get('cost_usd', 0.0):.4f}[/dim]"
        )
