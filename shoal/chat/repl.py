"""The chat loop: read a line, run it (a turn, a /command or a !command), show the result.

In a terminal the input is prompt_toolkit (history in ``$SHOAL_HOME/chat_history``,
Ctrl-R, multi-line, completion) and the output rich; without one, each line
of stdin is one input and the output is plain text, so a chat can be scripted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from shoal.chat import commands
from shoal.chat.client import ChatClient, ChatSettings
from shoal.chat.mentions import RepoFiles, attachments
from shoal.messages.chat import ChatTurnResult, SessionInfo
from shoal.messages.tasks import Usage

if TYPE_CHECKING:
    from rich.console import Console

    from shoal.paths import Home

PROMPT = "shoal> "


class Repl:
    def __init__(
        self, home: Home, client: ChatClient, *, interactive: bool, console: Console
    ) -> None:
        self.home = home
        self.client = client
        self.settings: ChatSettings = client.settings
        self.interactive = interactive
        self.console = console
        self.run_usage = Usage()
        self.files = RepoFiles(Path(self.settings.cwd))
        self._prompt: Any = None

    # --- reading ---------------------------------------------------------------

    def loop(self) -> int:
        interrupted = False  # the last input was a Ctrl-C at the prompt
        while True:
            try:
                try:
                    text = self._read()
                except KeyboardInterrupt:
                    if interrupted:
                        return 0
                    interrupted = True
                    self.console.print("[dim](Ctrl-C again, Ctrl-D or /exit to leave)[/dim]")
                    continue
                except EOFError:
                    return 0
                interrupted = False
                self.handle(text)
            except commands.ExitChat:
                return 0
            except KeyboardInterrupt:
                # Between two prompts the terminal is not raw and Ctrl-C is a signal: a
                # second one that lands there while the first is being answered still leaves.
                if interrupted:
                    return 0
                self.console.print("[yellow]interrupted[/yellow]")

    def _read(self) -> str:
        if not self.interactive:
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line.rstrip("\n")
        if self._prompt is None:
            self._prompt = self._prompt_session()
        return str(self._prompt.prompt(PROMPT))

    def _prompt_session(self) -> Any:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.filters import is_searching
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings

        from shoal.chat.completion import ChatCompleter

        keys = KeyBindings()
        # While Ctrl-R searches, its own keys apply (Enter takes the match, Ctrl-C ends it).
        typing = ~is_searching

        @keys.add("escape", "enter", filter=typing)
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        @keys.add("enter", filter=typing)
        def _enter(event: Any) -> None:
            buffer = event.current_buffer
            state = buffer.complete_state
            if state is not None and state.current_completion is not None:
                buffer.apply_completion(state.current_completion)
                return
            if buffer.document.text_before_cursor.endswith("\\"):
                buffer.delete_before_cursor(1)
                buffer.insert_text("\n")
                return
            buffer.validate_and_handle()

        @keys.add("c-c", filter=typing)
        def _interrupt(event: Any) -> None:
            # Ctrl-C clears typed text; only at an empty prompt does it count towards leaving.
            if event.current_buffer.text:
                event.current_buffer.reset()
            else:
                event.app.exit(exception=KeyboardInterrupt())

        history = self.home.root / "chat_history"
        if not history.exists():
            os.close(os.open(history, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(history, 0o600)
        helps = {name: text for name, (_, text) in commands.COMMANDS.items()}
        return PromptSession(
            history=FileHistory(str(history)),
            completer=ChatCompleter(helps, self.files),
            complete_while_typing=True,
            key_bindings=keys,
            multiline=True,
            prompt_continuation="… ",
            enable_history_search=False,
        )

    # --- running ---------------------------------------------------------------

    def handle(self, text: str) -> None:
        stripped = text.strip()
        if not stripped:
            return
        self._keep_orchestrator()
        if stripped.startswith("/") and not stripped.startswith("//"):
            name, _, arg = stripped.partition(" ")
            name = commands.ALIASES.get(name, name)
            entry = commands.COMMANDS.get(name)
            if entry is None:
                prompt = commands.template(self, name, arg.strip())
                if prompt is None:
                    self.console.print(f"unknown command {name}; /help lists them", markup=False)
                else:
                    self.turn(prompt)  # a prompt command: its filled template is the message
                return
            entry[0](self, arg.strip())
            return
        if stripped.startswith("!"):
            self.shell(stripped[1:].strip())
            return
        self.turn(text.replace("//", "/", 1) if stripped.startswith("//") else text)

    def _keep_orchestrator(self) -> None:
        """An orchestrator that exited while the chat sat idle is started again, session kept."""
        from shoal import daemon

        if daemon.running_pid(self.home) is not None:
            return
        self.console.print("[dim]the orchestrator had stopped; starting it again[/dim]")
        daemon.ensure(self.home)
        self.client.open(session_id=self.client.session_id)  # and the session's chat actor

    def turn(self, text: str) -> ChatTurnResult | None:
        from shoal.chat.view import PlainView, RichView

        found, missing = attachments(text, Path(self.settings.cwd))
        for mention in missing:
            self.console.print(f"[dim]@{escape(mention)}; not attached[/dim]", highlight=False)
        for a in found:
            self.console.print(
                f"[dim]attached {escape(a.path)} ({len(a.content):,} characters)[/dim]"
            )
        view: RichView | PlainView = (
            RichView(self.console) if self.interactive else PlainView(sys.stdout)
        )
        try:
            view.waiting()
            reply = self.client.turn(text, found, view)
            if reply is not None:
                self.run_usage = self.run_usage + reply.usage
            row = self.session_row()
            view.finish(reply, row["tokens"], row["cost_usd"])
        finally:
            view.close()
        return reply

    def shell(self, command: str) -> None:
        if not command:
            self.console.print("!cmd runs cmd in the repository, e.g. !git status")
            return
        try:
            result = subprocess.run(
                command,
                shell=True,
                cwd=self.settings.cwd,
                capture_output=True,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                timeout=600,
            )
        except subprocess.TimeoutExpired:
            self.console.print("[red]the command ran over 600 s and was stopped[/red]")
            return
        output = (result.stdout + result.stderr).rstrip("\n")
        if output:
            self.console.out(output, highlight=False)
        if result.returncode:
            self.console.print(f"[red]exit {result.returncode}[/red]")

    # --- sessions ----------------------------------------------------------------

    def open(self, **how: Any) -> SessionInfo:
        info = self.client.open(**how)
        self.announce(info)
        return info

    def announce(self, info: SessionInfo) -> None:
        name = f" “{info.name}”" if info.name else ""
        verb = "new session" if info.created else f"session resumed ({info.turns} turns)"
        self.console.print(
            f"[bold]shoal chat[/bold] · {verb}{name} [dim]{info.id}[/dim] · "
            f"{self.settings.model.model} · permissions {self.settings.permission_mode}"
        )
        for line in info.recent:
            who = "you" if line.role == "user" else "shoal"
            text = " ".join(line.content.split())
            self.console.print(f"[dim]{who}: {escape(text[:200])}[/dim]", highlight=False)
        if self.interactive and info.created:
            self.console.print("[dim]/help lists commands · @file attaches · !cmd runs[/dim]")

    def pick_session(self) -> str | None:
        """Ask which session to resume (a terminal picker); None if none is chosen."""
        rows = self.rows("sessions.list", {"limit": 15})
        if not rows:
            self.console.print("no sessions yet")
            return None
        return pick(rows, self.console)

    def rows(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        from shoal.client import query as read

        reply = read(self.home, name, params)
        return [dict(zip(reply.columns, row, strict=True)) for row in reply.rows]

    def session_row(self) -> dict[str, Any]:
        found = self.rows("session.get", {"session_id": self.client.session_id})
        return found[0] if found else {"tokens": 0, "cost_usd": 0.0, "turns": 0}

    def session_messages(self) -> list[dict[str, Any]]:
        return self.rows("session.messages", {"session_id": self.client.session_id})


def pick(rows: list[dict[str, Any]], console: Console) -> str | None:
    """Number the sessions, read a number; the chosen session's id."""
    for i, r in enumerate(rows, 1):
        line = f"{i:>2}. " + commands.session_line(r).strip()
        console.print(line, highlight=False, markup=False)
    while True:
        try:
            answer = console.input("resume which? (number, Enter for none) ").strip()
        except (EOFError, KeyboardInterrupt):
            return None
        if not answer:
            return None
        if answer.isdigit() and 1 <= int(answer) <= len(rows):
            return str(rows[int(answer) - 1]["id"])
        console.print(f"give a number from 1 to {len(rows)}")
