"""Teams' members: bringing them up and down, and what each one is doing.

A team is the set of supervised actors whose role is ``ROLE@TEAM`` (named
``ROLE@TEAM-N``). ``team.up`` spawns them through the ``tmux`` launcher (each
in its own pane) or the ``local`` one (headless); a team with any of the loop's
roles gets a lead first (``lead@TEAM-1``, the first and largest pane): it runs
the team's team runs, shows their milestones and the messages to the lead, and
takes approval questions its members forward. ``team.down`` retires them:
each finishes the message it is handling or is killed after the grace, and
the tmux launcher stores each pane's scrollback and closes it. The team lives
in the orchestrator, so it outlasts the CLI command that brought it up.

This is the teams service: ``team.up`` and ``team.down`` run on the broker's thread;
``team.status`` takes what the broker and the supervisor know there, then asks tmux
and DuckDB on a worker thread.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal.actors import registry
from shoal.mailbox.envelope import Envelope
from shoal.messages.actors import OrchestratorOk
from shoal.messages.teams import (
    TeamDown,
    TeamInfo,
    TeamMemberSpec,
    TeamMemberStatus,
    TeamStatus,
    TeamStatusResult,
    TeamUp,
    TeamUpResult,
)

if TYPE_CHECKING:
    from shoal.launchers.tmux import TmuxLauncher
    from shoal.orchestrator.delivery import Deliveries
    from shoal.orchestrator.scheduler import Scheduler
    from shoal.orchestrator.services.workers import Workers
    from shoal.orchestrator.supervisor import Member, Supervisor
    from shoal.paths import Home

# Kinds whose unacked presence at a member is the member's current work.
_WORK = ("exec.request", "plan.request", "eval.request", "workspace.restore", "team.run")
# Roles whose team gets a lead of its own (a team of other roles has no runs to lead).
_LED = ("planner", "executor", "evaluator")
_LAUNCHER = {"tmux": "tmux", "process": "local"}
_MODE = {"tmux": "tmux", "local": "process"}


@dataclass
class Seen:
    """One member as the broker thread sees it (everything but tmux and DuckDB)."""

    member: Member
    alive: bool
    task_id: str | None
    subtask: str | None
    phase: str | None
    redeliver: list[str]


class TeamMembers:
    handles = (TeamUp, TeamDown, TeamStatus)

    def __init__(
        self,
        home: Home,
        supervisor: Supervisor,
        scheduler: Scheduler,
        deliveries: Deliveries,
        workers: Workers,
    ) -> None:
        self.home = home
        self.supervisor = supervisor
        self.scheduler = scheduler
        self.deliveries = deliveries
        self.workers = workers

    @property
    def tmux(self) -> TmuxLauncher:
        launcher = self.supervisor.launchers.get("tmux")
        if launcher is None:
            raise LookupError("this orchestrator has no tmux launcher")
        return launcher  # type: ignore[return-value]

    # --- on the broker thread ------------------------------------------------------

    def on_team_up(self, env: Envelope, payload: TeamUp) -> TeamUpResult:
        return self.up(payload)

    def on_team_down(self, env: Envelope, payload: TeamDown) -> OrchestratorOk:
        return self.down(payload)

    def on_team_status(self, env: Envelope, payload: TeamStatus) -> None:
        seen = self.seen(payload.name)  # here: the broker's and supervisor's state
        self.workers.run(env, lambda cur: self.status(cur, seen))

    def up(self, payload: TeamUp) -> TeamUpResult:
        from shoal.tmux.server import TmuxError

        name = payload.name
        present = self._present(name)
        if present:
            raise ValueError(
                f"team {name} is already up ({len(present)} members); "
                f"`shoal team down {name}` first"
            )
        for spec in payload.members:
            if "@" in spec.role or ("." in spec.role and ":" not in spec.role):
                raise ValueError(f"give members as plain roles, not {spec.role!r}")
            registry.check(spec.role)
            if spec.agent is not None and spec.role != "executor":
                raise ValueError(f"an agent definition runs as an executor, not a {spec.role}")
        session = None
        if payload.mode == "tmux":
            try:
                session = self.tmux.open_team(name, payload.tmux_socket, payload.layout)
            except TmuxError as exc:
                raise ValueError(str(exc)) from exc
        names: list[str] = []
        for spec in _with_lead(payload.members):
            role = spec.role
            if spec.agent is not None:  # executor.NAME@TEAM reads its definition on start
                from shoal.skills.agents import save_member

                save_member(self.home.run, name, spec.agent)
                role = f"{spec.role}.{spec.agent.name}"
            names += self.supervisor.spawn(
                f"{role}@{name}", spec.count, launcher=_LAUNCHER[payload.mode]
            )
        return TeamUpResult(
            name=name,
            mode=payload.mode,
            members=names,
            session=session,
            tmux_socket=payload.tmux_socket if payload.mode == "tmux" else None,
        )

    def down(self, payload: TeamDown) -> OrchestratorOk:
        present = [m for m, _ in self._present(payload.name) if m.state != "stopped"]
        if not present:
            raise LookupError(f"no team named {payload.name!r} is up")
        for m in present:
            self.supervisor.retire(m.name, grace=payload.grace, force=payload.force)
        how = "killing" if payload.force else "stopping"
        return OrchestratorOk(detail=f"{how} {len(present)} member(s) of {payload.name}")

    def seen(self, name: str | None) -> dict[str, list[Seen]]:
        """The members of one team (or of every team), by team, with their current work."""
        teams: dict[str, list[Seen]] = {}
        for member, alive in self.supervisor.members(
            lambda m: _team_of(m) is not None and (m.state != "stopped" or m.releasing)
        ):
            team = _team_of(member)
            assert team is not None
            if name is not None and team != name:
                continue
            task_id = subtask = phase = None
            held = self.deliveries.for_target(member.name)
            for item in held:
                if item.env.kind in _WORK:
                    task_id = item.env.task_id
                    subtask = _subtask(item.env.payload)
                    run = self.scheduler.tasks.get(task_id or "")
                    phase = run.phase if run is not None else None
                    break
            again = [_describe(item.env) for item in held if item.delivered]
            seen = Seen(member, alive, task_id, subtask, phase, again)
            teams.setdefault(team, []).append(seen)
        if name is not None and name not in teams:
            raise LookupError(f"no team named {name!r} is up")
        return teams

    # --- on a worker thread (tmux and DuckDB take time) -----------------------------

    def status(self, cur: Any, teams: dict[str, list[Seen]]) -> TeamStatusResult:
        from shoal.store.queries import run_query

        infos = []
        for team, seen in sorted(teams.items()):
            mode = _MODE.get(seen[0].member.launcher, seen[0].member.launcher)
            since = _iso(min(s.member.spawned_at for s in seen) - 1.0)
            usage = {
                row[0]: (int(row[1] or 0), float(row[2] or 0.0))
                for row in run_query(cur, "team.usage", {"team": team, "since": since}).rows
            }
            socket = self.tmux.socket_of(team) if mode == "tmux" else None
            members = [self._status(s, usage.get(s.member.name, (0, 0.0))) for s in seen]
            infos.append(
                TeamInfo(
                    name=team,
                    mode=mode,
                    session=f"shoal-{team}" if mode == "tmux" else None,
                    tmux_socket=socket,
                    members=sorted(members, key=lambda m: m.name),
                    started_at=since,
                )
            )
        return TeamStatusResult(teams=infos)

    def _status(self, s: Seen, usage: tuple[int, float]) -> TeamMemberStatus:
        m = s.member
        pane = None
        if m.launcher == "tmux" and not (m.state == "stopped" and not m.releasing):
            try:
                pane = self.tmux.pane_of(m.name, m.role)
            except Exception:  # tmux gone: the member shows without its pane
                pane = None
        status = m.status()
        return TeamMemberStatus(
            name=m.name,
            role=m.role,
            pane_id=pane,
            pid=m.pid,
            alive=s.alive,
            state=m.state,
            busy=m.busy_since is not None,
            restarts=m.restarts,
            stalled=m.stalled_at is not None,
            stalls=m.stalls,
            task_id=s.task_id,
            subtask=s.subtask,
            phase=s.phase,
            last_heartbeat=status.last_heartbeat,
            tokens=usage[0],
            cost_usd=usage[1],
            redeliver=s.redeliver,
        )

    def _present(self, name: str) -> list[tuple[Member, bool]]:
        return self.supervisor.members(
            lambda m: _team_of(m) == name and (m.state != "stopped" or m.releasing)
        )


def _with_lead(members: list[TeamMemberSpec]) -> list[TeamMemberSpec]:
    """The members asked for, after a lead if they have a loop role and no lead."""
    roles = {spec.role for spec in members}
    if "lead" in roles or not roles & set(_LED):
        return members
    return [TeamMemberSpec(role="lead", count=1), *members]


def _describe(env: Envelope) -> str:
    """A message in a few words: ``exec.request 06H2RI9FAU/fix-add iteration 2``."""
    p = env.payload
    if env.kind == "team.message":
        return f"team.message from {p.get('sender', '?')}"
    what = (env.task_id or "")[:10]
    subtask = _subtask(p)
    what += f"/{subtask}" if subtask else ""
    iteration = f" iteration {p['iteration']}" if isinstance(p.get("iteration"), int) else ""
    return f"{env.kind} {what}".rstrip() + iteration


def _team_of(m: Member) -> str | None:
    return registry.team_of(m.role)


def _subtask(payload: dict[str, Any]) -> str | None:
    """A team run's subtask id, if the request carries one."""
    sub = payload.get("subtask") or payload.get("subtask_id")
    if isinstance(sub, dict):
        sub = sub.get("id")
    return sub if isinstance(sub, str) else None


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None).isoformat()
