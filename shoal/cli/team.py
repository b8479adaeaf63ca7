"""``shoal team up|attach|status|down|transcripts``: teams of members in tmux panes or headless.

The team lives in the orchestrator (these commands only ask it), so it stays up
after the command that brought it up exits.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from shoal.cli.output import console, fail, print_json
from shoal.messages.base import to_dict

if TYPE_CHECKING:
    from shoal.messages.teams import TeamInfo, TeamMemberStatus, TeamStatusResult
    from shoal.paths import Home

app = typer.Typer(
    help="Teams: members in tmux panes (watch and steer them) or headless processes.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_READY_WAIT = 60.0


def _home() -> Home:
    from shoal.paths import Home

    return Home.resolve()


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        fail(f"{name!r} is not a team name (1-32 letters, digits, - and _)", code=2)
    return name


def _ask(home: Home, payload: Any, timeout: float = 15.0) -> Any:
    from shoal.client import Client
    from shoal.mailbox.errors import RemoteError

    try:
        return Client(home).request(payload, timeout)
    except RemoteError as exc:
        fail(exc.message)


def _status(home: Home, name: str | None) -> TeamStatusResult | None:
    """The teams (or None when no orchestrator runs)."""
    from shoal.client import Client
    from shoal.messages.teams import TeamStatus

    if not Client(home).running():
        return None
    return _ask(home, TeamStatus(name=name))


def _no_team(name: str) -> NoReturn:
    fail(f"no team named {name!r} is up; start one with `shoal team up {name} --members ...`")


@app.command()
def up(
    name: str = typer.Argument(..., help="Team name: letters, digits, - and _."),
    members: str = typer.Option(
        ..., "--members", "-m", help='Roles, e.g. "planner,executor*3,evaluator,reviewer@agent".'
    ),
    mode: str = typer.Option("tmux", "--mode", help="tmux (a pane each) or process (headless)."),
    layout: str = typer.Option(
        "main-vertical",
        "--layout",
        help="main-vertical (the lead large on the left), tiled, or windows (one per member).",
    ),
    wait: float = typer.Option(
        _READY_WAIT, "--wait", min=0, help="Seconds to wait for the members to be ready."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Bring a team's members up, each in its own tmux pane (or headless).

    A team with planners, executors or evaluators gets a lead too: the first, largest
    pane, where team runs show their milestones and members' approval questions go."""
    from shoal.client import Client
    from shoal.messages.teams import TeamMemberSpec, TeamUp
    from shoal.tmux.server import socket_from_env

    parsed, agents = _check_up(name, members, mode, layout)
    home = _home()
    Client(home).start()
    reply = _ask(
        home,
        TeamUp(
            name=name,
            members=[TeamMemberSpec(role=role, count=n) for role, n in parsed] + agents,
            mode=mode,  # type: ignore[arg-type]
            tmux_socket=socket_from_env() if mode == "tmux" else "",
            layout=layout,  # type: ignore[arg-type]
        ),
        timeout=30.0,
    )
    team = _wait_ready(home, name, wait)
    if json_out:
        print_json(to_dict(team) if team else to_dict(reply))
    else:
        if team is not None:
            _print_team(team)
        where = f" in tmux session {reply.session}" if reply.session else ""
        typer.echo(f"team {name} is up{where}: {', '.join(reply.members)}")
        if reply.session:
            typer.echo(f"watch and steer it: shoal team attach {name}")
    if team is None or not all(m.state == "ready" for m in team.members):
        sys.stderr.write(
            f"shoal: warning: not every member of {name} was ready after {wait:g}s; "
            f"see `shoal team status {name}`\n"
        )


def _check_up(
    name: str, members: str, mode: str, layout: str
) -> tuple[list[tuple[str, int]], list[Any]]:
    """``team up``'s arguments, checked (a usage error names what is wrong): the members
    by role, and the defined agents' executors (``NAME@agent``)."""
    from shoal.actors.registry import parse_members
    from shoal.cli.agents import agent_members

    _check_name(name)
    if mode not in ("tmux", "process"):
        fail(f"--mode {mode!r}: use tmux or process", code=2)
    if layout not in ("main-vertical", "tiled", "windows"):
        fail(f"--layout {layout!r}: use main-vertical, tiled or windows", code=2)
    members, agents = agent_members(members)
    try:
        parsed = parse_members(members)
    except (LookupError, ValueError) as exc:
        fail(str(exc).strip("'\""), code=2)
    if not parsed and not agents:
        fail('--members is empty; e.g. --members "planner,executor*2,evaluator"', code=2)
    if any("@" in role for role, _ in parsed):
        fail("give members as plain roles (executor), not ROLE@TEAM", code=2)
    if mode == "tmux" and shutil.which("tmux") is None:
        fail("tmux is not installed; install it, or use --mode process")
    return parsed, agents


def _wait_ready(home: Home, name: str, wait: float) -> TeamInfo | None:
    deadline = time.monotonic() + wait
    team = None
    while True:
        reply = _status(home, name)
        team = reply.teams[0] if reply and reply.teams else None
        if team and all(m.state == "ready" for m in team.members):
            return team
        if time.monotonic() >= deadline:
            return team
        time.sleep(0.2)


@app.command()
def attach(name: str = typer.Argument(..., help="Team name.")) -> None:
    """Watch a team in tmux: attach to its session (or switch to it when inside tmux)."""
    from shoal.tmux.server import TmuxError, TmuxServer, session_name, tmux_binary

    _check_name(name)
    reply = _status(_home(), name)
    if reply is None or not reply.teams:
        _no_team(name)
    team = reply.teams[0]
    if team.mode != "tmux" or team.session is None:
        fail(f"team {name} runs headless (--mode process): it has no panes to attach to")
    server = TmuxServer(team.tmux_socket or "")
    attach_cmd = " ".join(["tmux", *server.args, "attach", "-t", team.session])
    try:
        socket_path = server.socket_path()
    except TmuxError as exc:
        fail(f"team {name}'s tmux server does not answer: {exc}")
    inside = os.environ.get("TMUX", "")
    if inside and inside.split(",", 1)[0] == socket_path:
        os.execv(tmux_binary(), server.command("switch-client", "-t", team.session))
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail(f"attaching needs a terminal: run `shoal team attach {name}` or `{attach_cmd}` in one")
    if inside:
        fail(
            f"team {name} is on another tmux server than the one you are in; "
            f"detach first, or run `TMUX= {attach_cmd}`"
        )
    os.execv(tmux_binary(), server.command("attach-session", "-t", session_name(name)))


@app.command()
def status(
    name: str | None = typer.Argument(None, help="One team (default: every team that is up)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Each member: pane, pid, alive, state, restarts, current task, heartbeat, tokens, cost."""
    if name is not None:
        _check_name(name)
    reply = _status(_home(), name)
    if name is not None and (reply is None or not reply.teams):
        _no_team(name)
    teams = reply.teams if reply else []
    if json_out:
        if name is not None:
            print_json(to_dict(teams[0]))
        else:
            print_json({"teams": [to_dict(t) for t in teams]})
        return
    if not teams:
        typer.echo("no teams are up")
        return
    for team in teams:
        _print_team(team)


def _print_team(team: TeamInfo) -> None:
    """A row per member; on a narrow terminal the pane, pid and heartbeat go first, never
    the member's name, what it does, or its tokens and cost."""
    from rich.table import Table

    out = console()
    wide = out.width >= 110
    where = f", tmux session {team.session}" if team.session else ""
    out.print(f"team {team.name} ({team.mode}{where})")
    table = Table(box=None, pad_edge=False)
    longest = max((len(m.name) for m in team.members), default=6)
    table.add_column("member", overflow="fold", min_width=min(longest, 24))
    for column in ("pane", "pid", "alive") if wide else ():
        table.add_column(column, no_wrap=True)
    states = [_state(m) for m in team.members]
    table.add_column("state", no_wrap=True, min_width=max(map(len, states), default=5))
    table.add_column("restarts", no_wrap=True, min_width=8)
    table.add_column("task", overflow="fold")
    for column in ("heartbeat",) if wide else ():
        table.add_column(column, no_wrap=True)
    table.add_column("tokens", no_wrap=True, justify="right")
    table.add_column("cost", no_wrap=True, justify="right")
    for m, state in zip(team.members, states, strict=True):
        task = "-"
        if m.task_id:
            task = m.task_id[:10] + (f"/{m.subtask}" if m.subtask else "")
            task += f" {m.phase}" if m.phase else ""
        where_cells = [m.pane_id or "-", str(m.pid or "-"), "yes" if m.alive else "no"]
        beat = [(m.last_heartbeat or "-")[11:19] or "-"]
        table.add_row(
            m.name,
            *(where_cells if wide else []),
            state,
            str(m.restarts),
            task,
            *(beat if wide else []),
            str(m.tokens),
            f"${m.cost_usd:.4f}",
        )
    out.print(table)


def _state(m: TeamMemberStatus) -> str:
    state = m.state + (" busy" if m.busy else " idle" if m.state == "ready" else "")
    return state + (" STALLED" if m.stalled else "")


@app.command()
def down(
    name: str = typer.Argument(..., help="Team name."),
    force: bool = typer.Option(False, "--force", help="Kill the members at once."),
    grace: float = typer.Option(
        30.0, "--grace", min=0, max=3600, help="Seconds a member may finish its current message."
    ),
) -> None:
    """Stop a team: members finish their current message (or are killed after the grace),
    each pane's scrollback is stored, and the panes close."""
    from shoal.messages.teams import TeamDown

    _check_name(name)
    home = _home()
    if _status(home, name) is None:
        _no_team(name)
    reply = _ask(home, TeamDown(name=name, force=force, grace=grace))
    typer.echo(reply.detail)
    deadline = time.monotonic() + (0 if force else grace) + 15.0
    while time.monotonic() < deadline:
        if _gone(home, name):
            typer.echo(f"team {name} is down")
            return
        time.sleep(0.1)
    fail(f"team {name} did not stop in time; see `shoal team status {name}`")


def _gone(home: Home, name: str) -> bool:
    from shoal.client import Client
    from shoal.mailbox.errors import RemoteError
    from shoal.messages.teams import TeamStatus

    try:
        Client(home).request(TeamStatus(name=name))
    except RemoteError:
        return True  # no such team any more
    return False


@app.command()
def transcripts(
    name: str = typer.Argument(..., help="Team name."),
    member: str | None = typer.Option(None, "--member", help="Only this member's panes."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, max=10_000),
    json_out: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Show the scrollback stored when the team's panes ended (newest first)."""
    from shoal.client import query as read
    from shoal.store.queries import QueryError

    _check_name(name)
    try:
        reply = read(_home(), "team.transcripts", {"team": name, "member": member, "limit": limit})
    except QueryError as exc:
        if "no database yet" not in str(exc):
            raise
        reply = None
    rows = [dict(zip(reply.columns, row, strict=True)) for row in reply.rows] if reply else []
    if json_out:
        for row in rows:
            print_json(row)
        return
    if not rows:
        typer.echo(f"no stored transcripts for team {name}")
        return
    for row in rows:
        typer.echo(
            f"=== {row['member']} pane {row['pane_id']} ({row['reason']}, "
            f"{row['captured_at']}, {row['lines']} lines)"
        )
        typer.echo(row["text"].rstrip())
