"""``shoal orchestrator start|stop|status|spawn|retire``."""

from __future__ import annotations

import time

import typer

from shoal.cli.output import console, fail, print_json
from shoal.messages.base import to_dict

app = typer.Typer(
    help="Start, stop and inspect the orchestrator of this SHOAL_HOME.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _home():
    from shoal.paths import Home

    return Home.resolve()


@app.command()
def start(
    actors: str = typer.Option("", "--actors", "-a", help='Actors to run, e.g. "echo*2".'),
    idle_timeout: float | None = typer.Option(
        None, "--idle-timeout", help="Exit after this many idle seconds (0: never)."
    ),
) -> None:
    """Start the orchestrator (or report the one already running)."""
    from shoal import daemon
    from shoal.actors.registry import parse_members
    from shoal.client import Client
    from shoal.messages.actors import ActorSpawn

    try:
        members = parse_members(actors)
    except (LookupError, ValueError) as exc:
        fail(str(exc).strip("'\""), code=2)
    home = _home()
    env = {"SHOAL_IDLE_TIMEOUT": str(idle_timeout)} if idle_timeout is not None else None
    pid, started = daemon.start(home, env=env)
    word = "started" if started else "already running"
    typer.echo(f"orchestrator {word} (pid {pid}, home {home.root})")
    for role, count in members:
        reply = Client(home).request(ActorSpawn(role=role, count=count))
        typer.echo(f"spawned {', '.join(reply.names)}")


@app.command()
def stop() -> None:
    """Stop the orchestrator: actors stop, records are flushed."""
    from shoal import daemon

    home = _home()
    pid = daemon.stop(home)
    typer.echo("orchestrator not running" if pid is None else f"orchestrator stopped (pid {pid})")


@app.command()
def status(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show the orchestrator, its actors and its message counters."""
    from shoal import daemon
    from shoal.client import Client

    home = _home()
    if daemon.running_pid(home) is None:
        if json_out:
            print_json(
                {
                    "pid": None,
                    "home": str(home.root),
                    "running": False,
                    "actors": [],
                    "messages": None,
                }
            )
        else:
            typer.echo(f"orchestrator not running (home {home.root})")
        raise typer.Exit(3)
    reply = Client(home).status()
    if json_out:
        data = to_dict(reply)
        print_json(
            {
                "pid": data["pid"],
                "home": data["home"],
                "running": True,
                "started_at": data["started_at"],
                "actors": data["actors"],
                "messages": data["messages"],
            }
        )
        return
    _print_status(reply)


def _print_status(reply) -> None:
    from rich.table import Table

    out = console()
    up = time.time() - reply.started_at
    out.print(f"orchestrator pid {reply.pid}, up {up:.0f}s, home {reply.home}")
    table = Table(box=None, pad_edge=False)
    for column in ("actor", "role", "pid", "state", "restarts", "last heartbeat"):
        table.add_column(column)
    for actor in reply.actors:
        table.add_row(
            actor.name,
            actor.role,
            str(actor.pid or "-"),
            actor.state,
            str(actor.restarts),
            actor.last_heartbeat or "-",
        )
    if reply.actors:
        out.print(table)
    else:
        out.print("no actors")
    m = reply.messages
    out.print(
        f"messages: {m.routed} routed, {m.recorded} recorded ({m.unrecorded} polled reads not), "
        f"{m.dropped} dropped, "
        f"{m.undeliverable} undeliverable, {m.redelivered} redelivered, {m.pending} pending"
    )


@app.command()
def spawn(
    role: str = typer.Argument(..., help="Actor role, e.g. echo."),
    count: int = typer.Option(1, "--count", "-n", min=1, max=64),
    name: str | None = typer.Option(None, "--name", help="Name for a single actor."),
) -> None:
    """Start actors of ROLE under supervision (auto-starts the orchestrator)."""
    from shoal.actors.registry import check
    from shoal.client import Client
    from shoal.messages.actors import ActorSpawn

    try:
        check(role)
    except LookupError as exc:
        fail(str(exc).strip("'\""), code=2)
    client = Client(_home())
    client.start(same_settings=False)
    reply = client.request(ActorSpawn(role=role, count=count, name=name))
    typer.echo(f"spawned {', '.join(reply.names)}")


@app.command()
def retire(name: str = typer.Argument(..., help="Actor name.")) -> None:
    """Stop one actor gracefully; it is not restarted."""
    from shoal.client import Client
    from shoal.messages.actors import ActorRetire

    client = Client(_home())
    if not client.running():
        fail("orchestrator not running; nothing to retire")
    client.request(ActorRetire(name=name))
    typer.echo(f"retiring {name}")
