"""Team members in tmux panes: the ``tmux`` launcher.

Each member runs in a pane of its team's own session ``shoal-<team>``, arranged
as the team's layout says (:mod:`shoal.tmux.layout`: the lead large and first),
on the tmux server the team was brought up on. The pane's process *is* the actor
(``python -m shoal.tmux.pane``), so the handle's pid is the pane's pid and the
supervisor treats it like any other actor process. Panes keep ``remain-on-exit
on``: a member whose process died is started again in the same pane (same
``%id``) with ``respawn-pane -k``, after its scrollback so far is stored; the new
process gets that scrollback back to show again, with how the old one died and
how often the member was restarted. A member stopped for good has its scrollback
stored and its pane closed, and the session ends with its last pane.

The pane gets the orchestrator's environment, as a local actor would inherit
it, through a FIFO under ``run/`` (mode 0600) rather than on the tmux command
line: provider keys never show in a process list or in tmux's own state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shoal.actors.registry import team_of
from shoal.launchers import ActorSpec, PidHandle
from shoal.paths import Home
from shoal.tmux import layout
from shoal.tmux.server import (
    HOME_OPTION,
    MEMBER_OPTION,
    RESTARTS_OPTION,
    PaneInfo,
    TmuxServer,
    session_name,
    tmux_binary,
)

log = logging.getLogger(__name__)

_FEED_WAIT = 30.0  # seconds a new pane has to pick up its start-up data
_DEATH_WAIT = 0.3  # seconds tmux may take to see a killed pane's process end, and how
_HINT = "click a pane to type into it · shoal team down #{s/^shoal-//:session_name} "
# Members started without a team (``shoal orchestrator spawn`` with this launcher).
_NO_TEAM = "actors"


@dataclass(frozen=True)
class TranscriptRow:
    """A pane's scrollback, captured when the pane ended (stopped or restarted)."""

    team: str
    member: str
    role: str
    pane_id: str
    reason: str
    text: str
    captured_at: dt.datetime


class PaneHandle(PidHandle):
    """The process in a pane: not our child (tmux's), watched through a pidfd."""

    def __init__(self, pid: int, pane_id: str) -> None:
        super().__init__(pid)
        self.pane_id = pane_id


class TmuxLauncher:
    name = "tmux"

    def __init__(
        self, home: Home, preload: list[str], store: Callable[[TranscriptRow], None]
    ) -> None:
        self.home = home
        self.preload = preload
        self.store = store
        self._lock = threading.Lock()
        self._sockets: dict[str, str] = {}  # team -> its tmux server
        self._layouts: dict[str, str] = {}  # team -> its layout
        self._load()
        self._panes: dict[str, str] = {}  # member -> pane id (a cache; tmux is the truth)

    # --- teams (called on the broker thread) ----------------------------------

    def open_team(self, team: str, socket: str, layout_name: str = layout.LAYOUTS[0]) -> str:
        """Claim the session of ``team`` on the server ``socket``; its name, or ValueError."""
        tmux_binary()
        server = TmuxServer(socket)
        session = session_name(team)
        if server.has_session(session):
            owner = server.session_option(session, HOME_OPTION)
            if owner != str(self.home.root):
                raise ValueError(
                    f"tmux session {session} already exists and is not this SHOAL_HOME's; "
                    "choose another team name or close that session"
                )
        with self._lock:
            self._sockets[team] = socket
            self._layouts[team] = layout_name
            self._save()
        return session

    def layout_of(self, team: str) -> str:
        with self._lock:
            return self._layouts.get(team, layout.LAYOUTS[0])

    def socket_of(self, team: str) -> str:
        with self._lock:
            return self._sockets.get(team, os.environ.get("SHOAL_TMUX_SOCKET", ""))

    def pane_of(self, name: str, role: str) -> str | None:
        with self._lock:
            cached = self._panes.get(name)
        if cached is not None:
            return cached
        pane = self._find(self._server(role), name)
        return pane.pane_id if pane else None

    # --- the launcher interface (called on the supervisor thread) -------------

    def launch(self, spec: ActorSpec) -> PaneHandle:
        server = self._server(spec.role)
        fifo = self.home.run / f"pane-{secrets.token_hex(8)}.fifo"
        os.mkfifo(fifo, 0o600)
        command = [
            sys.executable,
            "-m",
            "shoal.tmux.pane",
            "--fifo",
            str(fifo),
            "--name",
            spec.name,
        ]
        boot = {"spec": spec.model_dump(), "env": dict(os.environ), "preload": self.preload}
        try:
            pane = self._find(server, spec.name)
            if pane is not None:
                pane_id, pid = self._respawn(server, spec, pane, command, boot)
            else:
                pane_id, pid = self._new_pane(server, spec, command)
        except BaseException:
            fifo.unlink(missing_ok=True)
            raise
        # Only now may the pane go on: its options (remain-on-exit) are set.
        _feed(fifo, json.dumps(boot).encode())
        with self._lock:
            self._panes[spec.name] = pane_id
        return PaneHandle(pid, pane_id)

    def released(self, name: str, role: str) -> None:
        """The member is stopped for good: keep its scrollback, close its pane."""
        server = self._server(role)
        pane = self._find(server, name)
        with self._lock:
            self._panes.pop(name, None)
        if pane is None:
            return
        self._keep(server, pane, role, "stopped")
        if not [
            p for p in server.panes() if p.session == pane.session and p.pane_id != pane.pane_id
        ]:
            layout.return_clients(server, pane.session)  # the session ends with this pane
        server.run("kill-pane", "-t", pane.pane_id)
        rest = [p for p in server.panes() if p.session == pane.session]
        if rest and all(p.dead and not p.member for p in rest):  # a failed start's leftovers
            with contextlib.suppress(Exception):
                server.run("kill-session", "-t", f"={pane.session}")

    def close(self) -> None:
        """The orchestrator is stopping and its members are stopped: nothing to adopt later."""
        for path in [*self.home.run.glob("pane-*.fifo"), self._state_file]:
            path.unlink(missing_ok=True)

    # --- panes -------------------------------------------------------------------

    def _respawn(
        self,
        server: TmuxServer,
        spec: ActorSpec,
        pane: PaneInfo,
        command: list[str],
        boot: dict[str, object],
    ) -> tuple[str, int]:
        """The same pane, a new process; it is given the old one's scrollback to show again."""
        cause = self._dead(server, pane)  # a moment for tmux to see the death and say how
        boot["replay"] = self._keep(server, pane, spec.role, "restarted")
        boot["restart"] = {"cause": cause, "count": pane.restarts + 1}
        out = server.run(
            "set-option",
            "-p",
            "-t",
            pane.pane_id,
            RESTARTS_OPTION,
            str(pane.restarts + 1),
            ";",
            "clear-history",
            "-t",
            pane.pane_id,
            ";",
            "respawn-pane",
            "-k",
            "-t",
            pane.pane_id,
            *self._spawn_args(),
            *command,
            ";",
            "display-message",
            "-p",
            "-t",
            pane.pane_id,
            "#{pane_pid}",
        )
        return pane.pane_id, int(out.split()[-1])

    def _new_pane(self, server: TmuxServer, spec: ActorSpec, command: list[str]) -> tuple[str, int]:
        team = team_of(spec.role) or _NO_TEAM
        session = session_name(team)
        kind = self.layout_of(team)
        made = "-P", "-F", "#{pane_id}\t#{pane_pid}\t#{window_id}"
        options: list[str] = []
        if not server.has_session(session):
            size = ("-x", "200", "-y", "50")
            out = server.run(
                "new-session", "-d", "-s", session, "-n", team, *size,
                *self._spawn_args(), *made, *command,
            )  # fmt: skip
            options = layout.session_options(session, str(self.home.root), _HINT)
            fresh = True
        else:
            out = self._add_to_session(server, session, team, made, command)
            fresh = False
        pane_id, pid, window = out.strip().split("\t")
        try:
            if fresh or self._alone(server, window):
                options += layout.window_options(window, kind)
            server.run(
                *options,
                *("set-option", "-p", "-t", pane_id, "remain-on-exit", "on", ";"),
                *("set-option", "-p", "-t", pane_id, MEMBER_OPTION, spec.name, ";"),
                *("set-option", "-p", "-t", pane_id, HOME_OPTION, str(self.home.root), ";"),
                *("select-pane", "-t", pane_id, "-T", spec.name),
            )
            layout.arrange(server, session, kind, team)
        except Exception:
            # A pane we cannot find again must not linger (it waits on its FIFO).
            with contextlib.suppress(Exception):
                server.run("kill-pane", "-t", pane_id)
            raise
        return pane_id, int(pid)

    @staticmethod
    def _alone(server: TmuxServer, window: str) -> bool:
        """The window holds one pane: it was just made for this member."""
        return sum(1 for p in server.panes() if p.window_id == window) == 1

    def _add_to_session(
        self, server: TmuxServer, session: str, team: str, made: tuple[str, ...], command: list[str]
    ) -> str:
        """A new pane in the session's last window with room, else in a new window.

        The split is of the window's last pane, so the layout reads in the order the
        members were started (a split of the window's active pane would put each new
        pane right after the first one).
        """
        last = layout.room(server, session, self.layout_of(team))
        if last is not None:
            try:
                return server.run(
                    "split-window", "-d", "-t", last, *self._spawn_args(), *made, *command
                )
            except Exception as exc:  # "no space for new pane": a window of its own then
                log.info("split in %s refused (%s); opening a window", session, exc)
        return server.run(
            "new-window", "-d", "-t", f"={session}:", "-n", team,
            *self._spawn_args(), *made, *command,
        )  # fmt: skip

    def _spawn_args(self) -> list[str]:
        """What the pane's interpreter needs before it can read its FIFO (nothing secret)."""
        env = {"SHOAL_HOME": str(self.home.root)}
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        args = ["-c", str(self.home.root)]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        return args

    def _dead(self, server: TmuxServer, pane: PaneInfo) -> str:
        """How the pane's process ended: ``SIGKILL``, ``exit status 1``.

        tmux says so once it has reaped the process; it marks the pane dead when the
        terminal closes, which can come first, and tmux 3.3 was seen to leave a respawned
        pane's process a zombie for over a second. A zombie's own exit code is in /proc.
        """
        deadline = time.monotonic() + _DEATH_WAIT
        while not _told(pane) and time.monotonic() < deadline:
            if pane.dead and (zombie := _zombie_exit(pane.pid)) is not None:
                return zombie
            time.sleep(0.01)
            now = next((p for p in server.panes() if p.pane_id == pane.pane_id), None)
            if now is None:
                break
            pane = now
        return pane.death()

    def _find(self, server: TmuxServer, name: str) -> PaneInfo | None:
        """The member's pane: by the cached id, else by the options we set on it."""
        with self._lock:
            cached = self._panes.get(name)
        home = str(self.home.root)
        panes = server.panes()
        for pane in panes:
            if pane.pane_id == cached and pane.member == name and pane.home == home:
                return pane
        return next((p for p in panes if p.member == name and p.home == home), None)

    def _keep(self, server: TmuxServer, pane: PaneInfo, role: str, reason: str) -> str:
        """Store the pane's scrollback (a ``pane_transcripts`` row); the text stored."""
        try:
            text = server.capture(pane.pane_id)
        except Exception as exc:
            log.warning("could not capture pane %s of %s: %s", pane.pane_id, pane.member, exc)
            return ""
        if text.strip():
            self.store(
                TranscriptRow(
                    team=team_of(role) or _NO_TEAM,
                    member=pane.member,
                    role=role,
                    pane_id=pane.pane_id,
                    reason=reason,
                    text=text,
                    captured_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                )
            )
        return text

    def _server(self, role: str) -> TmuxServer:
        return TmuxServer(self.socket_of(team_of(role) or _NO_TEAM))

    # --- which server each team is on, across orchestrator restarts --------------

    @property
    def _state_file(self) -> Path:
        return self.home.run / "tmux-teams.json"

    def _load(self) -> None:
        """``{team: {"socket": ..., "layout": ...}}`` (an older file maps team -> socket)."""
        try:
            data = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return
        for team, value in data.items() if isinstance(data, dict) else ():
            entry = value if isinstance(value, dict) else {"socket": value}
            self._sockets[str(team)] = str(entry.get("socket", ""))
            if entry.get("layout") in layout.LAYOUTS:
                self._layouts[str(team)] = str(entry["layout"])

    def _save(self) -> None:
        data = {
            team: {"socket": socket, "layout": self._layouts.get(team, layout.LAYOUTS[0])}
            for team, socket in self._sockets.items()
        }
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._state_file)


def _told(pane: PaneInfo) -> bool:
    return pane.dead and (pane.dead_signal is not None or pane.dead_status is not None)


def _zombie_exit(pid: int) -> str | None:
    """How an exited, not yet reaped process ended (``exit_code``, field 52 of its stat)."""
    import signal

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != "Z" or len(fields) < 50 or not fields[49].isdigit():
        return None
    code = int(fields[49])
    if code & 0x7F:
        try:
            return signal.Signals(code & 0x7F).name
        except ValueError:
            return f"signal {code & 0x7F}"
    return f"exit status {code >> 8}"


def _feed(fifo: os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to the pane once it opens its FIFO (on a thread), then remove the FIFO."""

    def run() -> None:
        deadline = time.monotonic() + _FEED_WAIT
        try:
            while time.monotonic() < deadline:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                        raise
                    time.sleep(0.005)
                    continue
                try:
                    os.set_blocking(fd, True)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                return
            log.warning("pane never read %s", fifo)
        except OSError as exc:
            log.warning("feeding %s failed: %s", fifo, exc)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(fifo)

    threading.Thread(target=run, name="pane-feed", daemon=True).start()
