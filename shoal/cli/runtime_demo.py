"""``shoal orchestrator demo``: the actor runtime at work, with no model and no key.

It starts the orchestrator (unless one runs), puts two supervised echo actors
under it, routes a thousand request/replies through the broker, kills one
actor to show it come back, prints the status and what DuckDB recorded, and
leaves things as it found them.
"""

from __future__ import annotations

import os
import signal
import time

import typer

from shoal.cli.output import console


def runtime_demo(
    messages: int = typer.Option(1000, "--messages", "-n", min=1, max=1_000_000),
) -> None:
    """Run the actor runtime end to end (orchestrator, echo actors, restart, records)."""
    from shoal import daemon
    from shoal.client import Client
    from shoal.messages.actors import ActorRetire, ActorSpawn, EchoReply, EchoRequest
    from shoal.paths import Home

    out = console()
    home = Home.resolve()
    pid, started = daemon.start(home)
    out.print(
        f"[bold]orchestrator[/bold] {'started' if started else 'already running'} "
        f"(pid {pid}, home {home.root})"
    )
    client = Client(home)
    names = client.request(ActorSpawn(role="echo", count=2)).names  # type: ignore[attr-defined]
    out.print(f"[bold]actors[/bold] spawned {', '.join(names)} (echo role, supervised)")
    try:
        with client.channel() as channel:
            channel.request(EchoRequest(text="warm-up"), to=names[0], timeout=60)
            channel.request(EchoRequest(text="warm-up"), to=names[1], timeout=60)
            t0 = time.perf_counter()
            for i in range(messages):
                channel.request(EchoRequest(text="hello", seq=i), to=names[i % 2], timeout=10)
            elapsed = time.perf_counter() - t0
            out.print(
                f"[bold]mailbox[/bold] {messages} request/replies in {elapsed:.2f}s "
                f"({elapsed / messages * 1e6:.0f} µs each), every one recorded"
            )
            victim = next(a for a in client.status().actors if a.name == names[0])
            os.kill(victim.pid, signal.SIGKILL)
            out.print(
                f"[bold]supervisor[/bold] killed {victim.name} (pid {victim.pid}) with SIGKILL"
            )
            reply = channel.request(EchoRequest(text="are you back?"), to=names[0], timeout=30)
            assert isinstance(reply, EchoReply)
            back = next(a for a in client.status().actors if a.name == names[0])
            out.print(
                f"[bold]supervisor[/bold] {back.name} restarted as pid {back.pid} "
                f"(restarts {back.restarts}); it answered {reply.text!r}"
            )
        from shoal.cli.orchestrator import _print_status

        _print_status(client.status())
    finally:
        for name in names:
            client.request(ActorRetire(name=name))
        if started:
            daemon.stop(home)
            out.print(f"[bold]orchestrator[/bold] stopped; records flushed to {home.database}")
    from shoal.client import query as read

    summary = read(home, "messages.summary")
    kinds = ", ".join(f"{row[0]} {row[1]}" for row in summary.rows[:4])
    out.print(f"[bold]duckdb[/bold] messages by kind: {kinds}")
    out.print("see them with: shoal messages --limit 10")
