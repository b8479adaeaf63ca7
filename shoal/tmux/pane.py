"""The program in a teammate's pane: ``python -m shoal.tmux.pane --fifo PATH``.

It is the member itself, not a viewer: the real actor runtime (its mailbox,
heartbeats and handlers) runs on the main thread exactly as in a local actor
process, so the supervisor, redelivery and acks treat it like any actor.
Around it:

- the pane's :class:`~shoal.tmux.screen.Screen`: the live transcript
  (:mod:`shoal.tmux.transcript`, on a thread of its own) above one input line;
- a thread reads what the person types (:class:`~shoal.tmux.person.Person`):
  steering for an executor (a ``team.message`` from the person, sent from the
  pane's own connection ``<member>.pane`` through the broker, so every line is
  recorded), answers to approval questions, ``@MEMBER`` messages from the lead's
  pane, and a one-line answer in panes that take no input;
- the person is the executor's asker: its calls that need approval ask here;
- a thread imports the heavy modules (litellm) after start-up, so the member is
  ready at once and its first model call does not pay the import.

After a restart the pane first replays the scrollback the launcher stored when
the member died, then says in one line why it was restarted, how often, and what
the orchestrator delivers to it again. Start-up data (the actor's spec, the
orchestrator's environment, keys included, and that restart) arrives through the
FIFO the launcher made, never on the command line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from shoal.tmux.person import Terminal

if TYPE_CHECKING:
    from shoal.paths import Home
    from shoal.tmux.person import Person
    from shoal.tmux.screen import Screen

# Variables that describe this pane's terminal: the pane's own values win.
_TERMINAL_VARS = frozenset(
    {"TMUX", "TMUX_PANE", "TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "COLORTERM"}
    | {"COLUMNS", "LINES", "SHLVL", "PWD", "OLDPWD", "_"}
)
_BOOT_WAIT = 60  # seconds; a launcher that never writes the FIFO must not leave us hanging
_WARM_DELAY = 0.3  # let the mailbox connect and beat before the imports compete for the GIL
_STATUS_WAIT = 3.0  # seconds a restarted member waits to learn what it gets again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoal-pane")
    parser.add_argument("--fifo", required=True)
    parser.add_argument("--name", default="", help="the member's name (for ps)")
    args = parser.parse_args(argv)

    signal.alarm(_BOOT_WAIT)
    boot = _read_boot(args.fifo)
    signal.alarm(0)
    os.environ.update({k: v for k, v in boot["env"].items() if k not in _TERMINAL_VARS})

    from shoal.actors import registry
    from shoal.actors.runtime import ActorRuntime
    from shoal.actors.spec import ActorSpec
    from shoal.paths import Home
    from shoal.tmux.person import Person, hosting, mode_of
    from shoal.tmux.screen import Screen
    from shoal.tmux.transcript import Transcript

    spec = ActorSpec.model_validate(boot["spec"])
    home = Home.resolve(spec.home)
    _log_to(home.actor_log(spec.name))
    screen = Screen()
    screen.start()
    loaded = registry.load(spec.role)
    person = Person(
        spec.name, spec.role, screen, TmuxTerminal(spec.name), mode_of(loaded, spec.role)
    )
    actor_cls = hosting(loaded, person)
    view = Transcript(spec.name, spec.role, home.events_endpoint, screen)
    runtime = ActorRuntime(spec, actor_cls, observer=view.observe)
    person.ctx = runtime.actor.ctx
    person.cancelled = lambda task_id: task_id in getattr(runtime.actor, "cancelled", ())
    _opening(screen, spec, boot, home)
    person.show_prompt()
    view.start()
    threading.Thread(target=_keys, args=(screen, person, home, spec.name), daemon=True).start()
    threading.Thread(target=_warm, args=(boot.get("preload") or [],), daemon=True).start()
    code = 1
    try:
        code = runtime.run()
    finally:
        view.close(last=f"[bold]{spec.name} stopped[/bold] (exit {code})")
        sys.stdout.flush()
    return code


def _opening(screen: Screen, spec: Any, boot: dict[str, Any], home: Home) -> None:
    """The pane's first lines: what it showed before a restart, why it restarted, who it is."""
    from rich.markup import escape

    restart = boot.get("restart")
    if restart and boot.get("replay"):
        screen.plain(_without_input_lines(boot["replay"]))
    if restart:
        screen.line(f"[bold yellow]↻ {escape(_restart_line(spec, restart, home))}[/bold yellow]")
    screen.line(f"[bold]{escape(spec.name)}[/bold] · {escape(spec.role)} · pid {os.getpid()}")
    screen.line(f"[dim]{time.strftime('%H:%M:%S')} waiting for work[/dim]")


def _without_input_lines(text: str) -> str:
    """The old screen's scrollback without its input line (a prompt, a question, a hint)."""
    from shoal.tmux.person import input_line

    return "\n".join(line for line in text.split("\n") if not input_line(line))


def _restart_line(spec: Any, restart: dict[str, Any], home: Home) -> str:
    """Why the member restarted, the how-manyth time, and what it is given again."""
    again = _redelivered(spec, home)
    what = "nothing to take up again" if again == [] else "redelivered: " + ", ".join(again or [])
    if again is None:
        what = "what is redelivered shows below as it arrives"
    return (
        f"{spec.name} restarted after {restart.get('cause') or 'its process ended'} "
        f"(restart {restart.get('count', 1)}); {what}"
    )


def _redelivered(spec: Any, home: Home) -> list[str] | None:
    """What the orchestrator holds for this member (delivered before, not acked): it hands
    it to this instance once it beats. None if the orchestrator did not say in time."""
    from shoal.actors.registry import team_of
    from shoal.mailbox.client import MailboxClient
    from shoal.mailbox.envelope import ORCHESTRATOR
    from shoal.messages.teams import TeamStatus, TeamStatusResult

    team = team_of(spec.role)
    if team is None:
        return None
    try:
        with MailboxClient(home.mailbox_endpoint, f"{spec.name}.boot") as client:
            reply = client.request(
                ORCHESTRATOR, TeamStatus(name=team), timeout=_STATUS_WAIT
            ).parse_payload()
    except Exception as exc:  # the line says it does not know; the messages still come
        logging.getLogger(__name__).warning("asking what is redelivered failed: %s", exc)
        return None
    if not isinstance(reply, TeamStatusResult):
        return None
    for info in reply.teams:
        for member in info.members:
            if member.name == spec.name:
                return member.redeliver
    return []


class TmuxTerminal(Terminal):
    """The pane's view of its team's tmux session (the server it runs on: ``$TMUX``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pane = os.environ.get("TMUX_PANE", "")

    def _server(self) -> Any:
        from shoal.tmux.server import TmuxServer

        socket = os.environ.get("TMUX", "").split(",", 1)[0]
        return TmuxServer(socket) if socket else None

    def attached(self) -> bool:
        server = self._server()
        if server is None or not self.pane:
            return False
        try:
            out = server.run("display-message", "-p", "-t", self.pane, "#{session_attached}")
        except Exception:
            return False
        return out.strip().isdigit() and int(out.strip()) > 0

    def _panes(self) -> list[tuple[bool, str]]:
        server = self._server()
        if server is None or not self.pane:
            return []
        fmt = "#{pane_dead}\t#{@shoal_member}"
        try:
            out = server.run("list-panes", "-s", "-t", self.pane, "-F", fmt)
        except Exception:
            return []
        return [(d == "1", m) for d, _, m in (line.partition("\t") for line in out.splitlines())]

    def lead(self) -> str | None:
        from shoal.actors.registry import base_role

        for dead, member in self._panes():
            if member and not dead and member != self.name and base_role(member) == "lead":
                return member
        return None

    def members(self) -> list[str]:
        return [member for _, member in self._panes() if member]


def _read_boot(path: str) -> dict[str, Any]:
    fd = os.open(path, os.O_RDONLY)  # blocks until the launcher opens it for writing
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return json.loads(b"".join(chunks))


def _log_to(path: os.PathLike[str]) -> None:
    """Logs to the member's log file: the pane's screen is for its transcript."""
    handler = logging.FileHandler(path)
    os.chmod(path, 0o600)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _keys(screen: Screen, person: Person, home: Home, name: str) -> None:
    """What the person types, with the pane's own connection for the messages it sends.

    The member shows a steering message in its transcript when it arrives (``✉``),
    which is the proof it got there.
    """
    from shoal.mailbox.client import MailboxClient

    with MailboxClient(home.mailbox_endpoint, f"{name}.pane") as client:
        person.typed = client.send
        screen.read_lines(person.on_line)


def _warm(modules: list[str]) -> None:
    time.sleep(_WARM_DELAY)
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a module that fails to import is imported (and fails) later
            logging.getLogger(__name__).warning("preloading %s failed: %s", module, exc)


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)
