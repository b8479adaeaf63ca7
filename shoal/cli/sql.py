"""``shoal sql``: your own read-only SQL over shoal's records, the views' schema, and a
Parquet export of the views.

The checking and running are in shoal/store/usersql.py; this module parses the
command line and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from shoal.cli.output import fail, print_json


def sql(
    statement: str | None = typer.Argument(
        None, help="One SELECT over the views (tasks, iterations, ...; see --schema)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per row."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV with a header line."),
    schema: bool = typer.Option(False, "--schema", help="Print the views and their columns."),
    export: Path | None = typer.Option(
        None, "--export", metavar="DIR", help="Write every view as DIR/<view>.parquet."
    ),
    limit: int = typer.Option(
        10_000, "--limit", min=1, max=1_000_000, help="Rows printed at most (default 10000)."
    ),
    timeout: float = typer.Option(
        60.0, "--timeout", min=0.1, max=3600, help="Stop the query after this many seconds."
    ),
) -> None:
    """Read-only SQL over shoal's records (statements that write are refused)."""
    asked = [statement is not None, schema, export is not None]
    if sum(asked) != 1:
        fail("give one SELECT, or --schema, or --export DIR", code=2)
    if json_out and csv_out:
        fail("--json or --csv, not both", code=2)
    if schema:
        _schema(json_out)
    elif export is not None:
        _export(export, json_out)
    else:
        assert statement is not None
        _query(statement, json_out=json_out, csv_out=csv_out, limit=limit, timeout=timeout)


def _query(statement: str, *, json_out: bool, csv_out: bool, limit: int, timeout: float) -> None:
    from shoal.client import sql as query
    from shoal.paths import Home
    from shoal.store.usersql import SqlError

    try:
        result = query(Home.resolve(), statement, limit=limit, timeout=timeout)
    except SqlError as exc:
        fail(str(exc))
    if json_out:
        for row in result.rows:
            print_json(dict(zip(result.columns, row, strict=True)))
    elif csv_out:
        _csv(result.columns, result.rows)
    elif sys.stdout.isatty():
        _table(result.columns, result.rows)
    else:
        _tsv(result.columns, result.rows)
    if result.truncated:
        sys.stderr.write(
            f"shoal: only the first {limit} rows; add a LIMIT, raise --limit, or use --export\n"
        )


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list | dict):
        import json

        return json.dumps(value)
    return str(value)


def _csv(columns: list[str], rows: list[list[Any]]) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])


def _tsv(columns: list[str], rows: list[list[Any]]) -> None:
    """Tab-separated lines when piped (tabs and newlines in values become spaces)."""
    out = ["\t".join(columns)]
    for row in rows:
        out.append("\t".join(" ".join(_cell(v).split()) for v in row))
    sys.stdout.write("\n".join(out) + "\n")


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(escape(column), overflow="fold")
    for row in rows:
        table.add_row(*(Text(_cell(v), style="dim" if v is None else "") for v in row))
    console = Console(highlight=False)
    console.print(table)
    console.print(f"[dim]{len(rows)} row{'s' if len(rows) != 1 else ''}[/dim]")


def _schema(json_out: bool) -> None:
    from shoal.client import query as read
    from shoal.paths import Home
    from shoal.store.queries import QueryError
    from shoal.store.views import SCHEMA, VIEWS

    try:
        reply = read(Home.resolve(), "views.columns")
        types = {(view, column): kind for view, column, kind in reply.rows}
    except QueryError as exc:  # no database yet: the documented columns, types unknown
        if "no database yet" not in str(exc):
            raise
        types = {}
    described = {
        view: {
            "description": about,
            "columns": [
                {"name": name, "type": types.get((view, name), "?"), "description": text}
                for name, text in columns.items()
            ],
        }
        for view, (about, columns) in VIEWS.items()
    }
    if json_out:
        print_json(described)
        return
    lines = [
        f"Views (schema {SCHEMA}, first on the search path: FROM tasks reads {SCHEMA}.tasks).",
        "Their names and columns are a stable interface; times are UTC.",
    ]
    for view, about in described.items():
        lines.append(f"\n{view}: {about['description']}")
        width = max(len(c["name"]) for c in about["columns"])
        type_width = max(len(c["type"]) for c in about["columns"])
        for c in about["columns"]:
            lines.append(
                f"  {c['name'].ljust(width)}  {c['type'].ljust(type_width)}  {c['description']}"
            )
    sys.stdout.write("\n".join(lines) + "\n")


def _export(directory: Path, json_out: bool) -> None:
    from shoal.client import export_views
    from shoal.paths import Home
    from shoal.store.usersql import SqlError

    try:
        files = export_views(Home.resolve(), directory)
    except SqlError as exc:
        fail(str(exc))
    where = directory.expanduser().absolute()
    if json_out:
        print_json({"directory": str(where), "files": files})
        return
    for view, rows in files.items():
        sys.stdout.write(f"{where / (view + '.parquet')}\t{rows} rows\n")
