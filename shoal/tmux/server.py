"""One tmux server, driven through the tmux CLI.

A server is named as tmux names them: ``-L NAME`` (a socket in tmux's own
directory), ``-S PATH``, or the user's default server. shoal only ever touches
its own sessions (``shoal-<team>``) and addresses panes by their ``%id``, so
the user's sessions, windows and pane sizes are never changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

SESSION_PREFIX = "shoal-"
# Pane and session options shoal sets on what it owns, so it can find them again.
MEMBER_OPTION = "@shoal_member"
HOME_OPTION = "@shoal_home"
RESTARTS_OPTION = "@shoal_restarts"

_PANE_FORMAT = "\t".join(
    [
        "#{pane_id}",
        "#{pane_pid}",
        "#{pane_dead}",
        "#{session_name}",
        "#{window_id}",
        "#{" + MEMBER_OPTION + "}",
        "#{" + HOME_OPTION + "}",
        "#{pane_dead_signal}",
        "#{pane_dead_status}",
        "#{" + RESTARTS_OPTION + "}",
    ]
)


class TmuxError(Exception):
    """A tmux command failed; the message is tmux's own first line."""


def session_name(team: str) -> str:
    return SESSION_PREFIX + team


def socket_from_env(env: Mapping[str, str] | None = None) -> str:
    """The server a command means: SHOAL_TMUX_SOCKET, else the one the caller is inside
    ($TMUX), else the user's default server (``""``)."""
    env = os.environ if env is None else env
    if env.get("SHOAL_TMUX_SOCKET"):
        return env["SHOAL_TMUX_SOCKET"]
    inside = env.get("TMUX", "")
    return inside.split(",", 1)[0] if inside else ""


def tmux_binary() -> str:
    path = shutil.which("tmux")
    if path is None:
        raise TmuxError("tmux is not installed; install it, or use --mode process")
    return path


@dataclass(frozen=True)
class PaneInfo:
    pane_id: str
    pid: int
    dead: bool
    session: str
    window_id: str
    member: str
    home: str
    dead_signal: int | None = None
    dead_status: int | None = None
    restarts: int = 0
    """How often shoal respawned the member in this pane."""

    def death(self) -> str:
        """How the pane's process ended, as tmux saw it: ``SIGKILL``, ``exit status 1``."""
        import signal

        if self.dead_signal:
            try:
                return signal.Signals(self.dead_signal).name
            except ValueError:
                return f"signal {self.dead_signal}"
        if self.dead_status is not None:
            return f"exit status {self.dead_status}"
        return "its process ended"


@dataclass(frozen=True)
class TmuxServer:
    socket: str = ""
    """``""``: the user's default server; a path (with ``/``): ``-S``; else a ``-L`` name."""

    @property
    def args(self) -> list[str]:
        if not self.socket:
            return []
        return ["-S", self.socket] if "/" in self.socket else ["-L", self.socket]

    def command(self, *argv: str) -> list[str]:
        return [tmux_binary(), *self.args, *argv]

    def run(self, *argv: str, timeout: float = 10.0) -> str:
        """Run tmux commands (separate several with ``";"``); their output, or TmuxError."""
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        try:
            result = subprocess.run(
                self.command(*argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise TmuxError(f"tmux {argv[0]} did not answer in {timeout:g}s") from exc
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise TmuxError(lines[0] if lines else f"tmux {argv[0]} failed")
        return result.stdout

    def running(self) -> bool:
        try:
            self.run("list-sessions", "-F", "#{session_name}")
        except TmuxError:
            return False
        return True

    def panes(self) -> list[PaneInfo]:
        """Every pane on the server (none when no server runs)."""
        try:
            out = self.run("list-panes", "-a", "-F", _PANE_FORMAT)
        except TmuxError:
            return []
        panes = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) != 10:
                continue
            pane_id, pid, dead, session, window, member, home, sig, status, restarts = parts
            panes.append(
                PaneInfo(
                    pane_id,
                    int(pid or 0),
                    dead == "1",
                    session,
                    window,
                    member,
                    home,
                    int(sig) if sig.isdigit() else None,
                    int(status) if status.lstrip("-").isdigit() else None,
                    int(restarts) if restarts.isdigit() else 0,
                )
            )
        return panes

    def has_session(self, name: str) -> bool:
        try:
            self.run("has-session", "-t", f"={name}")
        except TmuxError:
            return False
        return True

    def session_option(self, session: str, option: str) -> str | None:
        try:
            value = self.run("show-options", "-qv", "-t", f"={session}:", option).strip()
        except TmuxError:
            return None
        return value or None

    def capture(self, pane_id: str) -> str:
        """The pane's whole scrollback and screen; runs of blank screen rows become one."""
        text = self.run("capture-pane", "-p", "-J", "-S", "-", "-t", pane_id)
        return re.sub(r"\n{3,}", "\n\n", text.strip("\n")) + "\n"

    def socket_path(self) -> str:
        return self.run("display-message", "-p", "#{socket_path}").strip()
