"""``shoal export`` and ``shoal import``: move or back up what shoal recorded and learned."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from shoal.cli.output import fail


def export(
    what: str = typer.Argument("all", help="all, tasks, memory, sessions or skills."),
    fmt: str = typer.Option("json", "--format", "-f", help="json, jsonl or parquet (a folder)."),
    out: str | None = typer.Option(
        None, "--output", "-o", help="File (json, jsonl; '-': stdout) or folder (parquet)."
    ),
) -> None:
    """Export tasks, memory, chat sessions and skills (secrets in the environment redacted)."""
    from shoal import backup
    from shoal.paths import Home
    from shoal.store.dump import DumpError

    if what not in backup.WHAT:
        fail(f"nothing called {what!r} to export; choose {', '.join(backup.WHAT)}", code=2)
    if fmt not in backup.FORMATS:
        fail(f"--format {fmt!r}: use {', '.join(backup.FORMATS)}", code=2)
    try:
        done = backup.export(Home.resolve(), what, fmt, out)
    except (backup.BackupError, DumpError) as exc:
        fail(str(exc))
    rows = ", ".join(f"{n} {t}" for t, n in done.rows.items())
    where = "stdout" if done.path == "-" else done.path
    sys.stderr.write(f"exported {rows} to {where}\n")
    if done.redacted:
        sys.stderr.write(f"{done.redacted} value(s) held a secret of your environment: redacted\n")


def import_(
    path: Path = typer.Argument(
        ..., help="An export: a .json or .jsonl file, or a parquet folder."
    ),
    only: str | None = typer.Option(None, "--only", help="memory or skills (default: both)."),
) -> None:
    """Import the memory (learnings) and skills of an export into this SHOAL_HOME."""
    from shoal import backup
    from shoal.paths import Home

    if only not in (None, "memory", "skills"):
        fail(f"--only {only!r}: use memory or skills", code=2)
    try:
        done = backup.restore(Home.resolve(), backup.read(path), only)
    except backup.BackupError as exc:
        fail(str(exc))
    typer.echo(f"learnings: {done.learnings} imported, {done.learnings_skipped} already here")
    typer.echo(
        f"skills: {len(done.skills)} imported"
        + (f" ({', '.join(done.skills)})" if done.skills else "")
    )
    if done.skills_same:
        typer.echo(f"  already here as they are: {', '.join(done.skills_same)}")
    if done.skills_kept:
        typer.echo(f"  here with other content, kept as they are: {', '.join(done.skills_kept)}")
    if done.not_imported:
        typer.echo(
            f"records not imported (they stay in the export): {', '.join(done.not_imported)}"
        )
