"""How a turn looks: streamed markdown and one line per tool call, then a token/cost footer.

:class:`RichView` is for a terminal: a spinner while the model works and nothing
has arrived yet, each stretch of answer text a live markdown block that grows as
the pieces arrive, and a tool call ends the block with one folded line, followed
by a glimpse of what it did (an edit's short diff, a command's output tail).
:class:`PlainView` writes the same as plain text, as it arrives (pipes, scripts,
logs), without the spinner.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from shoal.messages.chat import ChatAsk, ChatDelta, ChatTool, ChatTurnResult

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.status import Status


def tool_line(event: ChatTool) -> str:
    mark = "✓" if event.ok else ("denied" if event.denied else "✗")
    line = f"{event.name} {event.detail}".rstrip() + f"  {mark}"
    if not event.ok and event.error:
        line += f": {event.error}"
    if event.denied:
        line += "  (/permissions bypass allows it)"
    return line


def preview_lines(event: ChatTool) -> list[tuple[str, str]]:
    """The lines under a tool call, each with its style: a diff's ``+``/``-`` lines green
    and red, a command's output dim."""
    return [
        (f"    │ {line}", {"+": "green", "-": "red"}.get(line[:1], "dim"))
        for line in event.preview.splitlines()
    ]


def footer(reply: ChatTurnResult, session_tokens: int, session_cost: float) -> str:
    u = reply.usage
    parts = [
        f"{u.prompt_tokens:,} in · {u.completion_tokens:,} out",
        f"${u.cost_usd:.4f}",
    ]
    if reply.context_window:
        share = 100 * reply.context_tokens / reply.context_window
        parts.append(f"context {share:.0f}% of {_k(reply.context_window)}")
    parts.append(f"session {session_tokens:,} tokens ${session_cost:.4f}")
    if reply.compacted:
        parts.append("older turns compacted")
    return " · ".join(parts)


def _k(tokens: int) -> str:
    return f"{tokens // 1000}k" if tokens >= 1000 else str(tokens)


class RichView:
    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._spinner: Status | None = None
        self._text = ""
        self._step: int | None = None
        self.streamed = False

    def waiting(self) -> None:
        """The model is working and nothing has come yet: a spinner until something does."""
        if self._live is None and self._spinner is None:
            self._spinner = self.console.status("[dim]thinking…[/dim]", spinner="dots")
            self._spinner.start()

    def _stop_waiting(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None

    def delta(self, event: ChatDelta) -> None:
        from rich.live import Live
        from rich.markdown import Markdown

        self._stop_waiting()
        if self._live is not None and event.step != self._step:
            self._end_block()
        if self._live is None:
            self._text, self._step = "", event.step
            self._live = Live(
                console=self.console, refresh_per_second=10, vertical_overflow="ellipsis"
            )
            self._live.start()
        self._text += event.text
        self.streamed = True
        self._live.update(Markdown(self._text), refresh=True)

    def tool(self, event: ChatTool) -> None:
        from rich.text import Text

        self._end_block()
        style = "green" if event.ok else "red"
        self.console.print(Text("  ⏺ ", style=style) + Text(tool_line(event), style="dim"))
        for line, line_style in preview_lines(event):
            self.console.print(Text(line, style=line_style, overflow="ellipsis", no_wrap=True))
        self.waiting()  # the model takes the result and goes on

    def note(self, text: str) -> None:
        self._end_block()
        self.console.print(f"[yellow]{_escape(text)}[/yellow]")

    def ask(self, event: ChatAsk) -> tuple[bool, bool]:
        self._end_block()
        what = event.summary or f"{event.tool} {event.subject}"
        self.console.print(f"[bold yellow]?[/bold yellow] {_escape(what)}")
        while True:
            try:
                answer = self.console.input("  allow? (y)es, (n)o, (a)lways this session: ")
            except (EOFError, KeyboardInterrupt):
                return False, False
            answer = answer.strip().lower()
            if answer in ("y", "yes", "n", "no", "", "a", "always"):
                return answer in ("y", "yes", "a", "always"), answer in ("a", "always")

    def finish(
        self, reply: ChatTurnResult | None, session_tokens: int, session_cost: float
    ) -> None:
        from rich.markdown import Markdown

        self._end_block()
        if reply is None:
            return
        if reply.text and not self.streamed:
            self.console.print(Markdown(reply.text))
        if reply.error:
            self.console.print(f"[red]error: {_escape(reply.error)}[/red]")
        if reply.cancelled:
            self.console.print("[yellow]interrupted[/yellow]")
        self.console.print(f"[dim]─ {footer(reply, session_tokens, session_cost)}[/dim]")

    def _end_block(self) -> None:
        self._stop_waiting()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def close(self) -> None:
        self._end_block()


class PlainView:
    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self._step: int | None = None
        self._open = False
        self.streamed = False

    def delta(self, event: ChatDelta) -> None:
        if self._open and event.step != self._step:
            self._newline()
        self._step, self._open, self.streamed = event.step, True, True
        self.out.write(event.text)
        self.out.flush()

    def waiting(self) -> None:
        return None  # no spinner in a pipe or a log

    def tool(self, event: ChatTool) -> None:
        self._newline()
        self.out.write(f"  > {tool_line(event)}\n")
        for line, _ in preview_lines(event):
            self.out.write(line.replace("│", "|") + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self._newline()
        self.out.write(f"shoal: {text}\n")
        self.out.flush()

    def ask(self, event: ChatAsk) -> tuple[bool, bool]:
        return False, False  # nobody to ask (turns say so: can_ask is off without a terminal)

    def finish(
        self, reply: ChatTurnResult | None, session_tokens: int, session_cost: float
    ) -> None:
        self._newline()
        if reply is None:
            return
        if reply.text and not self.streamed:
            self.out.write(reply.text.rstrip() + "\n")
        if reply.error:
            self.out.write(f"error: {reply.error}\n")
        if reply.cancelled:
            self.out.write("interrupted\n")
        self.out.write(f"-- {footer(reply, session_tokens, session_cost)}\n")
        self.out.flush()

    def _newline(self) -> None:
        if self._open:
            self.out.write("\n")
            self._open = False

    def close(self) -> None:
        self._newline()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
