"""The supervisor: starts actor processes through launchers and keeps them alive.

An actor that exits, that misses heartbeats for ``heartbeat_timeout``, or that
stays busy without sending anything for ``stall_timeout`` (the last two are
flagged *stalled*), is killed (its whole process group) and started again under
the same name after an exponential backoff with jitter; the broker then
redelivers its unacked messages to the new instance. The roster is saved to
``run/actors.json`` so an orchestrator restarted after a crash adopts the
actors still running.
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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from shoal.actors import registry
from shoal.launchers import ActorHandle, ActorSpec, Launcher, PidHandle, pid_alive
from shoal.messages.actors import ActorExited, ActorStarted, ActorStatus
from shoal.messages.base import Payload
from shoal.store.actor_events import EventRow

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
    spawned_at: float = 0.0  # wall clock of the spawn (a team member's usage counts from it)
    busy_since: float | None = None  # wall clock, from the beats
    held: int = 0  # messages it holds unacked (queued, handled or kept), from the beats
    progress_at: float | None = None  # wall clock of the last message it sent, from the beats
    stalled_at: float | None = None  # wall clock; flagged until it sends something again
    stalls: int = 0
    stop_wait: float = _STOP_WAIT  # seconds a stopping actor may finish its handler, then SIGKILL
    releasing: bool = False  # stopped; its launcher is still cleaning up (closing its pane)

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
        self._released: list[Member] = []  # stopped, not yet handed to their launcher
        self._names: frozenset[str] = frozenset()
        self._by_role: dict[str, tuple[str, ...]] = {}  # role -> actors that take work
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    # --- called from other threads -----------------------------------------

    def start(self) -> None:
        self._thread.start()

    def spawn(
        self,
        role: str,
        count: int = 1,
        name: str | None = None,
        launcher: str | None = None,
    ) -> list[str]:
        """Start ``count`` actors of ``role``; by default with the configured backend."""
        registry.check(role)
        launcher = launcher or self.settings.backend
        if launcher not in self.launchers:
            raise LookupError(f"unknown launcher {launcher!r}; known: {', '.join(self.launchers)}")
        if name is not None and count != 1:
            raise ValueError("a name can only be given when spawning one actor")
        if self.stopping:
            return []  # never launched now, it would only hold up the stop until its timeout
        with self._lock:
            if name is not None and self._live(name):
                raise ValueError(f"an actor named {name!r} already exists")
            names = [name] if name else self._free_names(role, count)
            now = time.monotonic()
            for n in names:
                self._members[n] = Member(
                    n,
                    role,
                    launcher,
                    state="restarting",
                    next_start=now,
                    since=now,
                    spawned_at=time.time(),
                )
            self._changed()
        return names

    def retire(self, name: str, grace: float | None = None, force: bool = False) -> None:
        """Stop an actor for good: SIGTERM, and SIGKILL after ``grace`` seconds (or at once)."""
        with self._lock:
            member = self._members.get(name)
            if member is None:
                raise LookupError(f"no actor named {name!r}")
            if grace is not None:
                member.stop_wait = grace
            if force:
                member.stop_wait = 0.0
                if member.handle is not None:
                    member.handle.signal(signal.SIGKILL)
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

    def taking_work(self, role: str) -> tuple[str, ...]:
        """Actors of ``role`` that take new work (read without the lock: the broker's path)."""
        return self._by_role.get(role, ())

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

    def retire_idle(self, roles: tuple[str, ...]) -> list[str]:
        """Stop the ready, idle actors of ``roles`` that run as local processes (nothing
        queued or held, no handler running); the names stopped."""
        with self._lock:
            idle = [
                m
                for m in self._members.values()
                if m.role in roles and m.launcher == "local" and m.state == "ready"
                and m.busy_since is None and not m.held
            ]  # fmt: skip
            for member in idle:
                self._event(member, "retired", "idle")
                self._stop_member(member)
        return [m.name for m in idle]

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
            member.busy_since, member.progress_at = beat.busy_since, beat.progress_at
            member.held = beat.held_total or len(beat.held)
            if member.stalled_at is not None and self._unstalled(member, beat):
                member.stalled_at = None
            if new_instance or member.state != "ready":
                if member.state == "adopting":
                    self._event(member, "adopted", f"pid {beat.pid}")
                member.pid, member.instance = beat.pid, beat.instance
                member.state, member.since = "ready", member.last_beat

    def _unstalled(self, m: Member, beat: Beat) -> bool:
        """Moving again: it sent something since, or it came back with nothing to do."""
        assert m.stalled_at is not None
        if (beat.progress_at or 0.0) > m.stalled_at:
            return True
        idle = beat.busy_since is None and not beat.held_total
        return idle and time.time() - m.stalled_at > self.settings.heartbeat_timeout

    def snapshot(self) -> list[ActorStatus]:
        with self._lock:
            return [m.status() for m in self._members.values()]

    def members(self, predicate: Callable[[Member], bool]) -> list[tuple[Member, bool]]:
        """Copies of the members ``predicate`` selects, each with whether its process is alive."""
        with self._lock:
            return [
                (replace(m), m.handle is not None and m.handle.alive())
                for m in self._members.values()
                if predicate(m)
            ]

    def pinned(self) -> bool:
        """True while a team is up: its members wait for work, so the orchestrator stays."""
        with self._lock:
            return any(
                registry.team_of(m.role) and m.state != "stopped" for m in self._members.values()
            )

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
                    entry["name"],
                    entry["role"],
                    entry.get("launcher", "local"),
                    since=now,
                    spawned_at=entry.get("spawned_at") or time.time(),
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
                self._release_stopped()
            except Exception:  # keep supervising whatever one pass ran into
                log.exception("supervisor pass failed")
            if self.stopping and self.all_stopped() and not self._released:
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
                    elif now - m.since > m.stop_wait:
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
            self._stalled(m)
            self._restart(m, now, f"no heartbeat for {now - m.last_beat:.1f}s")
        elif m.state == "ready" and self._busy_without_progress(m):
            self._stalled(m)
            self._restart(m, now, f"busy with no progress for {self.settings.stall_timeout:g}s")
        elif m.state == "starting" and now - m.since > timeout + _STARTUP_GRACE:
            self._restart(m, now, "never became ready")
        elif m.state == "adopting" and now - m.since > _ADOPT_WAIT:
            # It runs but does not speak to us: not ours any more (or hung). Leave it be.
            m.handle = None
            self._restart(m, now, "adoption timed out")

    def _busy_without_progress(self, m: Member) -> bool:
        stall = self.settings.stall_timeout
        if not stall or m.busy_since is None:
            return False
        return time.time() - max(m.busy_since, m.progress_at or 0.0) > stall

    def _stalled(self, m: Member) -> None:
        m.stalled_at, m.stalls = time.time(), m.stalls + 1
        self._event(m, "stalled", "")

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
        m.busy_since = m.progress_at = None

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
        m.releasing = True
        self._released.append(m)

    def _release_stopped(self) -> None:
        """Tell launchers that keep something per actor (a tmux pane) that it is gone for good.

        Outside the lock: a launcher may take a while (tmux captures the pane's scrollback).
        """
        with self._lock:
            released, self._released = self._released, []
        for m in released:
            hook = getattr(self.launchers.get(m.launcher), "released", None)
            try:
                if hook is not None:
                    hook(m.name, m.role)
            except Exception:
                log.exception("releasing %s from the %s launcher failed", m.name, m.launcher)
            with self._lock:
                m.releasing = False

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
        by_role: dict[str, list[str]] = {}
        for m in live:
            if m.state != "stopping":
                by_role.setdefault(m.role, []).append(m.name)
        self._by_role = {role: tuple(names) for role, names in by_role.items()}
        roster = [
            {
                "name": m.name,
                "role": m.role,
                "launcher": m.launcher,
                "pid": m.pid,
                "spawned_at": m.spawned_at,
            }
            for m in live
        ]
        tmp = self.home.roster_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(roster))
        os.replace(tmp, self.home.roster_file)
