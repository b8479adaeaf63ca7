"""The supervisor: starts actor processes through launchers and keeps them alive.

An actor that exits, or that misses heartbeats for ``heartbeat_timeout``, is
killed (its whole process group) and started again under the same name after
an exponential backoff with jitter; the broker then redelivers its unacked
messages to the new instance. The roster is saved to ``run/actors.json`` so
an orchestrator restarted after a crash adopts the actors still running.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal.actors import registry
from shoal.launchers import ActorHandle, ActorSpec, Launcher, PidHandle, pid_alive
from shoal.mailbox.envelope import ActorExited, ActorStarted, ActorStatus, Payload
from shoal.orchestrator.recorder import EventRow

if TYPE_CHECKING:
    from shoal.mailbox.wire import Beat
    from shoal.orchestrator.recorder import Recorder
    from shoal.paths import Home
    from shoal.settings import OrchestratorSettings

log = logging.getLogger(__name__)

_TICK = 0.05
_HEALTHY_AFTER = 30.0  # seconds up before the backoff resets
_STARTUP_GRACE = 20.0  # extra seconds for a first beat (the forkserver may still be importing)
_ADOPT_WAIT = 5.0
_STOP_WAIT = 5.0


@dataclass
class Member:
    """One supervised actor, across all its restarts."""

    name: str
    role: str
    launcher: str
    state: str = "starting"  # starting, ready, restarting, adopting, stopping, stopped
    handle: ActorHandle | None = None
    pid: int | None = None
    instance: str | None = None
    restarts: int = 0
    failures: int = 0
    last_heartbeat: float | None = None  # wall clock, for status
    last_beat: float = 0.0  # monotonic
    since: float = 0.0  # monotonic time of the last state change
    next_start: float = 0.0

    def status(self) -> ActorStatus:
        beat = self.last_heartbeat
        return ActorStatus(
            name=self.name,
            role=self.role,
            pid=self.pid,
            state=self.state,
            restarts=self.restarts,
            last_heartbeat=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(beat))
            + f".{int(beat % 1 * 1000):03d}Z"
            if beat
            else None,
            launcher=self.launcher,
        )


class Supervisor:
    def __init__(
        self,
        home: Home,
        settings: OrchestratorSettings,
        launchers: dict[str, Launcher],
        recorder: Recorder,
        publish: Callable[[Payload], None],
    ) -> None:
        self.home = home
        self.settings = settings
        self.launchers = launchers
        self.recorder = recorder
        self.publish = publish
        self.stopping = False
        self._members: dict[str, Member] = {}
        self._names: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    # --- called from other threads -----------------------------------------

    def start(self) -> None:
        self._thread.start()

    def spawn(
        self, role: str, count: int = 1, name: str | None = None, launcher: str | None = None
    ) -> list[str]:
        """Start ``count`` actors of ``role``; by default with the configured backend."""
        registry.check(role)
        launcher = launcher or self.settings.backend
        if launcher not in self.launchers:
            raise LookupError(f"unknown launcher {launcher!r}; known: {', '.join(self.launchers)}")
        if name is not None and count != 1:
            raise ValueError("a name can only be given when spawning one actor")
        with self._lock:
            if name is not None and self._live(name):
                raise ValueError(f"an actor named {name!r} already exists")
            names = [name] if name else self._free_names(role, count)
            now = time.monotonic()
            for n in names:
                self._members[n] = Member(
                    n, role, launcher, state="restarting", next_start=now, since=now
                )
            self._changed()
        return names

    def retire(self, name: str) -> None:
        with self._lock:
            member = self._members.get(name)
            if member is None:
                raise LookupError(f"no actor named {name!r}")
            self._stop_member(member)

    def stop_all(self) -> None:
        with self._lock:
            self.stopping = True
            for member in self._members.values():
                self._stop_member(member)

    def all_stopped(self) -> bool:
        with self._lock:
            return all(m.state == "stopped" for m in self._members.values())

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)

    def is_actor(self, name: str) -> bool:
        return name in self._names

    def is_stopping(self, name: str) -> bool:
        with self._lock:
            member = self._members.get(name)
            return member is not None and member.state == "stopping"

    def knows(self, name: str) -> bool:
        """True for any actor this supervisor ever ran, stopped or not."""
        with self._lock:
            return name in self._members

    def names_of(self, role: str) -> list[str]:
        with self._lock:
            return [
                m.name for m in self._members.values() if m.role == role and m.state != "stopped"
            ]

    def on_beat(self, name: str, beat: Beat, new_instance: bool) -> None:
        with self._lock:
            member = self._members.get(name)
            if member is None or member.state in ("stopped", "stopping"):
                return
            member.last_beat = time.monotonic()
            member.last_heartbeat = time.time()
            if new_instance or member.state != "ready":
                if member.state == "adopting":
                    self._event(member, "adopted", f"pid {beat.pid}")
                member.pid, member.instance = beat.pid, beat.instance
                member.state, member.since = "ready", member.last_beat

    def snapshot(self) -> list[ActorStatus]:
        with self._lock:
            return [m.status() for m in self._members.values()]

    def adopt(self) -> None:
        """Take over the actors a crashed orchestrator left running (from the roster file)."""
        try:
            roster = json.loads(self.home.roster_file.read_text())
        except (OSError, ValueError):
            return
        now = time.monotonic()
        with self._lock:
            for entry in roster:
                pid = entry.get("pid")
                member = Member(
                    entry["name"], entry["role"], entry.get("launcher", "local"), since=now
                )
                if pid and pid_alive(pid):
                    member.state, member.pid, member.handle = "adopting", pid, PidHandle(pid)
                else:
                    member.state, member.next_start = "restarting", now
                self._members[member.name] = member
            self._changed()

    # --- the supervision loop ----------------------------------------------------

    def _run(self) -> None:
        for launcher in self.launchers.values():
            warm = getattr(launcher, "warm", None)
            if warm is not None:
                warm()
        while True:
            try:
                for member in self._check(time.monotonic()):
                    self._launch(member)
            except Exception:  # keep supervising whatever one pass ran into
                log.exception("supervisor pass failed")
            if self.stopping and self.all_stopped():
                self._stopped.set()
            time.sleep(_TICK)

    def _check(self, now: float) -> list[Member]:
        to_launch = []
        with self._lock:
            for m in self._members.values():
                if m.state in ("starting", "ready", "adopting"):
                    self._check_alive(m, now)
                elif m.state == "stopping":
                    if m.handle is None or not m.handle.alive():
                        self._set_stopped(m)
                    elif now - m.since > _STOP_WAIT:
                        m.handle.signal(signal.SIGKILL)
                if m.state == "restarting" and now >= m.next_start and not self.stopping:
                    m.state, m.since = "launching", now
                    to_launch.append(m)
                if m.state == "ready" and m.failures and now - m.since > _HEALTHY_AFTER:
                    m.failures = 0
        return to_launch

    def _check_alive(self, m: Member, now: float) -> None:
        timeout = self.settings.heartbeat_timeout
        if m.handle is not None and not m.handle.alive():
            self._restart(m, now, "exited")
        elif m.state == "ready" and now - m.last_beat > timeout:
            self._restart(m, now, f"no heartbeat for {now - m.last_beat:.1f}s")
        elif m.state == "starting" and now - m.since > timeout + _STARTUP_GRACE:
            self._restart(m, now, "never became ready")
        elif m.state == "adopting" and now - m.since > _ADOPT_WAIT:
            # It runs but does not speak to us: not ours any more (or hung). Leave it be.
            m.handle = None
            self._restart(m, now, "adoption timed out")

    def _restart(self, m: Member, now: float, reason: str) -> None:
        if m.handle is not None:
            m.handle.signal(signal.SIGKILL)
        log.warning("actor %s (pid %s): %s; restarting", m.name, m.pid, reason)
        self._event(m, "exited", reason)
        self.publish(ActorExited(name=m.name, role=m.role, pid=m.pid, reason=reason))
        delay = min(self.settings.restart_backoff_max, 0.1 * 2**m.failures)
        m.failures += 1
        m.state, m.since, m.next_start = "restarting", now, now + delay * random.uniform(0.5, 1.0)
        m.handle, m.pid = None, None

    def _launch(self, m: Member) -> None:
        spec = ActorSpec(
            name=m.name,
            role=m.role,
            home=str(self.home.root),
            launcher=m.launcher,
            heartbeat_interval=self.settings.heartbeat_interval,
            orphan_timeout=self.settings.orphan_timeout,
        )
        try:
            handle = self.launchers[m.launcher].launch(spec)
        except Exception as exc:
            log.exception("launching %s failed", m.name)
            with self._lock:
                self._restart(m, time.monotonic(), f"launch failed: {exc}")
            return
        with self._lock:
            first = m.instance is None and m.restarts == 0 and not m.failures
            if not first:
                m.restarts += 1
            m.handle, m.pid = handle, handle.pid
            m.state, m.since = "starting", time.monotonic()
            if self.stopping:
                self._stop_member(m)
            self._event(m, "started", f"pid {handle.pid}")
            self._changed()
        self.publish(ActorStarted(name=m.name, role=m.role, pid=handle.pid, restarts=m.restarts))

    def _stop_member(self, m: Member) -> None:
        if m.state in ("stopping", "stopped"):
            return
        if m.handle is not None and m.handle.alive():
            m.handle.signal(signal.SIGTERM)
            m.state, m.since = "stopping", time.monotonic()
            self._changed()
        else:
            self._set_stopped(m)

    def _set_stopped(self, m: Member) -> None:
        m.state, m.handle, m.pid = "stopped", None, None
        self._event(m, "stopped", "")
        self._changed()

    # --- bookkeeping -------------------------------------------------------------

    def _free_names(self, role: str, count: int) -> list[str]:
        names, i = [], 1
        while len(names) < count:
            if not self._live(f"{role}-{i}"):
                names.append(f"{role}-{i}")
            i += 1
        return names

    def _live(self, name: str) -> bool:
        member = self._members.get(name)
        return member is not None and member.state != "stopped"

    def _event(self, m: Member, event: str, detail: str) -> None:
        self.recorder.event(EventRow(time.time(), m.name, m.role, m.pid, event, detail))

    def _changed(self) -> None:
        """Publish the set of actor names and save the roster (lock held)."""
        live = [m for m in self._members.values() if m.state != "stopped"]
        # A stopping actor takes no new work: its unacked messages are refused.
        self._names = frozenset(m.name for m in live if m.state != "stopping")
        roster = [
            {"name": m.name, "role": m.role, "launcher": m.launcher, "pid": m.pid} for m in live
        ]
        tmp = self.home.roster_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(roster))
        os.replace(tmp, self.home.roster_file)
