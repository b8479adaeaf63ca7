"""``shoal memory list|search|forget``: what shoal has learned from past tasks."""

from __future__ import annotations

from typing import Any

import typer

from shoal.cli.output import console, fail, print_json

app = typer.Typer(
    help="What shoal learned from past tasks, recalled into later prompts.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _print(columns: list[str], rows: list[list[Any]], json_out: bool) -> None:
    if json_out:
        for row in rows:
            print_json(dict(zip(columns, row, strict=True)))
        return
    if not rows:
        console().print("no learnings")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    shown = [c for c in ("id", "kind", "confidence", "score", "uses", "content") if c in columns]
    for column in shown:
        table.add_column(column)
    index = {c: i for i, c in enumerate(columns)}
    for row in rows:
        cells = [row[index[c]] for c in shown]
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in cells))
    console().print(table)


@app.command("list")
def list_(
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    json_out: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Learnings, most recently used first."""
    from shoal.client import query as read
    from shoal.paths import Home

    reply = read(Home.resolve(), "memory.list", {"limit": limit})
    _print(reply.columns, reply.rows, json_out)


@app.command()
def search(
    query: str = typer.Argument(..., help="Text to find similar learnings for."),
    k: int = typer.Option(10, "-k", min=1, max=1000, help="How many."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Learnings most similar to QUERY (scored by similarity times decayed confidence)."""
    from shoal.client import Client
    from shoal.messages.memory import MemorySearch
    from shoal.paths import Home

    home = Home.resolve()
    payload = MemorySearch(text=query, k=k)
    client = Client(home)
    reply = client.request(payload) if client.running() else _search_file(home, payload)
    _print(reply.columns, reply.rows, json_out)


def _search_file(home: Any, payload: Any) -> Any:
    from shoal.memory.embedder import embedder_from_env
    from shoal.memory.store import search_rows
    from shoal.messages.store import StoreQueryResult
    from shoal.store.database import open_reader

    if not home.database.exists():
        return StoreQueryResult(columns=[], rows=[])
    con = open_reader(home.database)
    try:
        return search_rows(con, embedder_from_env(), payload)
    finally:
        con.close()


@app.command()
def forget(
    learning_id: str = typer.Argument(..., help="Id (or unique prefix) of a learning."),
) -> None:
    """Stop recalling a learning."""
    from shoal.client import Client
    from shoal.mailbox.errors import RemoteError
    from shoal.messages.memory import MemoryForget
    from shoal.paths import Home

    client = Client(Home.resolve())
    client.start(same_settings=False)
    try:
        client.request(MemoryForget(id=learning_id))
    except RemoteError as exc:
        fail(exc.message)
    typer.echo(f"forgot {learning_id}")
