"""What the team-pane tests share: a private tmux server, its panes' screens, a watcher.

Every tmux command goes to the test's own server (``tmux -L shoal-test-...``); only
that server is ever killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import daemon
from shoal.paths import Home
from tests.conftest import shoal, wait_for


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.argv = ["tmux", "-L", socket]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.argv, *args], capture_output=True, text=True).stdout

    def screen(self, target: str, history: bool = True) -> str:
        """What a pane shows (with its scrollback), wrapped lines joined."""
        extra = ["-S", "-"] if history else []
        return self("capture-pane", "-p", "-J", *extra, "-t", target)

    def wait(self, target: str, text: str, timeout: float = 60, after: int = 0) -> str:
        """The pane's screen once ``text`` shows on it more than ``after`` times."""
        shown = ""

        def seen() -> bool:
            nonlocal shown
            shown = self.screen(target)
            return shown.count(text) > after

        try:
            wait_for(seen, timeout=timeout, interval=0.1, what=repr(text))
        except AssertionError:
            raise AssertionError(f"{text!r} not in {target}:\n{shown}") from None
        return shown

    def type(self, target: str, text: str) -> None:
        self("send-keys", "-t", target, "-l", text)
        self("send-keys", "-t", target, "Enter")

    def clients(self) -> list[str]:
        return self("list-clients", "-F", "#{client_session}").split()

    def watch(self, session: str, width: int = 200, height: int = 50, name: str = "viewer") -> str:
        """A terminal of ``width`` x ``height`` attached to ``session`` (a client in a pane
        of a session of its own on the same server); the pane that shows it."""
        attach = f"TMUX= tmux -L {self.socket} attach -t ={session}"
        self("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), attach)
        self("set-option", "-t", f"={name}:", "status", "off")
        wait_for(lambda: session in self.clients(), timeout=20, what=f"a client on {session}")
        return f"={name}:"

    def member_panes(self, session: str) -> dict[str, str]:
        fmt = "#{@shoal_member} #{pane_id}"
        out = self("list-panes", "-s", "-t", f"={session}:", "-F", fmt)
        return dict(line.split() for line in out.splitlines() if line.strip())


@pytest.fixture
def tmux(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tmux]:
    """A private tmux server for the test (SHOAL_TMUX_SOCKET); only it is ever killed."""
    socket = f"shoal-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("SHOAL_TMUX_SOCKET", socket)
    yield Tmux(socket)
    daemon.stop(home, timeout=15)  # members first: a killed pane would be respawned
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def team_status(name: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(shoal("team", "status", name, "--json", check=True, env=env).stdout)


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``shoal *command`` in the background, its output kept for ``communicate``."""
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )


def shoal_command(home: Home, *args: str) -> str:
    """A shell command line running ``shoal *args`` as the tests' shoal (for a pane)."""
    return (
        f"SHOAL_HOME={home.root} PYTHONPATH={os.environ['PYTHONPATH']} "
        f"{sys.executable} -m shoal {' '.join(args)}"
    )


def no_leftovers(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())
