"""``shoal config show|approve``: the settings a task gets here, and trusting a repository's own.

A repository's ``.shoal/config.toml`` only narrows your settings until you
approve it (see ``shoal.trust``); ``approve`` trusts its current content, and
any later change to the file needs approval again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli import loop_options as lo
from shoal.cli.output import fail, print_json

if TYPE_CHECKING:
    from shoal.config import Resolved

app = typer.Typer(
    help="The loop's settings here, and approving a repository's .shoal/config.toml.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command()
def show(cwd: lo.Cwd = None, json_out: lo.JsonOut = False) -> None:
    """The settings a task started here gets, where each comes from, and what was ignored."""
    from shoal import config
    from shoal.paths import Home

    home = Home.resolve()
    resolved = config.resolve(home, cwd or Path.cwd())
    data = _describe(resolved, home.config_file)
    notice = resolved.notice(Path.cwd())
    if notice:
        sys.stderr.write(notice + "\n")
    if json_out:
        print_json(data)
        return
    for name, item in data["settings"].items():
        if item["value"] is not None:
            typer.echo(f"{name:<20} {item['value']!s:<28} {_where(name, item['source'])}")
    for rule in data["rules"]:
        typer.echo(f"{rule['action']:<20} {rule['rule']!s:<28} {_where('', rule['source'])}")
    if data["project_file"]:
        state = "approved" if data["approved"] else "not approved"
        if data["changed"] and not data["approved"]:
            state = "changed since you approved it"
        typer.echo(f"project file: {data['project_file']} ({state})")


@app.command()
def approve(
    path: Path | None = typer.Argument(
        None, help="The repository, or its .shoal/config.toml (default: this directory)."
    ),
) -> None:
    """Trust this repository's .shoal/config.toml as it is now (a change needs approval again)."""
    from shoal import approvals, config
    from shoal.paths import Home

    target = Path(os.path.abspath(path or Path.cwd()))
    folder = target.parent.parent if target.is_file() else target
    file = config.project_file(folder)
    if target.is_file() and (target.name, target.parent.name) != ("config.toml", ".shoal"):
        fail(f"{target} is not a .shoal/config.toml; give the repository or that file", code=2)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        fail(f"{folder} has no .shoal/config.toml; there is nothing to approve")
    home = Home.resolve()
    resolved = config.resolve(home, folder)  # a file that does not load is not approved
    digest = approvals.content_hash(data)[:12]
    if resolved.project and resolved.project.approved:
        typer.echo(f"{file} is already approved as it is (sha256 {digest})")
        return
    approvals.approve_file(home, file, data)
    again = " again: it changed since" if resolved.project and resolved.project.changed else ""
    typer.echo(
        f"approved {file}{again} (sha256 {digest}); a later change to it needs approval again"
    )
    if resolved.ignored:
        typer.echo("now applies too: " + ", ".join(resolved.ignored))


def _describe(resolved: Resolved, user_file: Path) -> dict[str, Any]:
    project = resolved.project
    settings = {
        name: {"value": value, "source": resolved.sources.get(name, "default")}
        for name, value in resolved.config.model_dump(exclude={"allow", "deny", "ask"}).items()
    }
    return {
        "settings": settings,
        "rules": [{"action": a, "rule": r, "source": s} for a, r, s in resolved.rules],
        "user_file": str(user_file),
        "project_file": str(project.path) if project else None,
        "approved": project.approved if project else None,
        "changed": bool(project and project.changed),
        "ignored": resolved.ignored,
    }


def _where(name: str, source: str) -> str:
    if source == "environment" and name:
        return f"environment (SHOAL_{name.upper()})"
    return source
