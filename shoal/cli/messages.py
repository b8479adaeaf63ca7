"""``shoal messages``: the recorded message log (read-only)."""

from __future__ import annotations

import typer

from shoal.cli.output import console, print_json


def messages(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000),
    kind: str | None = typer.Option(None, "--kind", help="Only this kind, e.g. echo.request."),
    task: str | None = typer.Option(None, "--task", help="Only this task id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Show recently recorded messages (asks the orchestrator, or reads the file if none runs)."""
    from rich.table import Table

    from shoal.client import query as read
    from shoal.paths import Home

    reply = read(Home.resolve(), "messages.recent", {"limit": limit, "kind": kind, "task_id": task})
    if json_out:
        for row in reply.rows:
            print_json(dict(zip(reply.columns, row, strict=True)))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("sent_at", "kind", "sender", "recipient", "attempt", "id"):
        table.add_column(column)
    index = {c: i for i, c in enumerate(reply.columns)}
    for row in reversed(reply.rows):
        table.add_row(
            *(
                str(row[index[c]] or "-")
                for c in ("sent_at", "kind", "sender", "recipient", "attempt", "id")
            )
        )
    console().print(table if reply.rows else "no messages recorded")
