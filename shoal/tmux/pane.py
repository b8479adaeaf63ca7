"""The program in a teammate's pane: ``python -m shoal.tmux.pane --fifo PATH``.

It is the member itself, not a viewer: the real actor runtime (its mailbox,
heartbeats and handlers) runs on the main thread exactly as in a local actor
process, so the supervisor, redelivery and acks treat it like any actor.
Around it:

- a thread renders the member's live transcript (:mod:`shoal.tmux.transcript`);
- a thread reads the lines a person types into the pane and sends each to the
  member as a ``team.message`` (source ``person``) from its own connection
  (``<member>.pane``), through the broker, so every line is recorded;
- a thread imports the heavy modules (litellm) after start-up, so the member is
  ready at once and its first model call does not pay the import.

Start-up data (the actor's spec and the orchestrator's environment, keys
included) arrives through the FIFO the launcher made, never on the command line.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

# Variables that describe this pane's terminal: the pane's own values win.
_TERMINAL_VARS = frozenset(
    {"TMUX", "TMUX_PANE", "TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "COLORTERM"}
    | {"COLUMNS", "LINES", "SHLVL", "PWD", "OLDPWD", "_"}
)
_BOOT_WAIT = 60  # seconds; a launcher that never writes the FIFO must not leave us hanging
_WARM_DELAY = 0.3  # let the mailbox connect and beat before the imports compete for the GIL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoal-pane")
    parser.add_argument("--fifo", required=True)
    parser.add_argument("--name", default="", help="the member's name (for ps)")
    args = parser.parse_args(argv)

    signal.alarm(_BOOT_WAIT)
    boot = _read_boot(args.fifo)
    signal.alarm(0)
    os.environ.update({k: v for k, v in boot["env"].items() if k not in _TERMINAL_VARS})

    from rich.console import Console

    from shoal.actors import registry
    from shoal.actors.runtime import ActorRuntime
    from shoal.actors.spec import ActorSpec
    from shoal.paths import Home
    from shoal.tmux.transcript import Transcript

    spec = ActorSpec.model_validate(boot["spec"])
    home = Home.resolve(spec.home)
    _log_to(home.actor_log(spec.name))
    console = Console(highlight=False, soft_wrap=True)
    actor_cls = registry.load(spec.role)
    view = Transcript(spec.name, spec.role, home.events_endpoint, console)
    runtime = ActorRuntime(spec, actor_cls, observer=view.observe)
    console.rule(f"[bold]{spec.name}[/bold] · {spec.role} · pid {os.getpid()}")
    view.start()
    if hasattr(actor_cls, "on_team_message"):
        view.note(f"[dim]Type a line and press Enter: {spec.name} reads it on its next turn.[/dim]")
        threading.Thread(target=_read_input, args=(home, spec.name), daemon=True).start()
    threading.Thread(target=_warm, args=(boot.get("preload") or [],), daemon=True).start()
    code = 1
    try:
        code = runtime.run()
    finally:
        view.close(last=f"[bold]{spec.name} stopped[/bold] (exit {code})")
        sys.stdout.flush()
    return code


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


def _read_input(home: Any, name: str) -> None:
    """Each line typed into the pane becomes a ``team.message`` from a person to the member.

    The member shows it in the transcript when it arrives (``✉``), which is the proof
    it got there.
    """
    from shoal.mailbox.client import MailboxClient
    from shoal.messages.teams import TeamMessage

    person = _person()
    tty = sys.stdin.isatty()
    with MailboxClient(home.mailbox_endpoint, f"{name}.pane") as client:
        while True:
            raw = sys.stdin.readline()
            if not raw:  # Ctrl-D on a terminal: keep listening; a closed stdin: stop
                if not tty:
                    return
                time.sleep(0.2)
                continue
            text = raw.strip()
            if text:
                client.send(name, TeamMessage(text=text[:20_000], sender=person, source="person"))


def _person() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "person"


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
