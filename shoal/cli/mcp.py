"""``shoal mcp add|list|remove|approve|serve``: MCP servers for the executor, and shoal as one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli.output import console, fail, print_json

if TYPE_CHECKING:
    from shoal.mcp.config import Scope

app = typer.Typer(
    help="MCP servers whose tools the executor can use, and `shoal mcp serve`.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_SCOPES = ("user", "project")


def _scope(value: str | None) -> Scope | None:
    if value is not None and value not in _SCOPES:
        fail(f"--scope {value!r} must be user or project", code=2)
    return value  # type: ignore[return-value]


def _pairs(values: list[str], sep: str, option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, found, rest = value.partition(sep)
        if not found or not key.strip():
            fail(f"{option} {value!r} must look like KEY{sep}VALUE", code=2)
        pairs[key.strip()] = rest.strip() if sep == ":" else rest
    return pairs


@app.command()
def add(
    name: str = typer.Argument(..., help="Server name; its tools appear as NAME__tool."),
    command: list[str] = typer.Argument(None, help="stdio: the command and its arguments."),
    scope: str = typer.Option("user", "--scope", "-s", help="user (all projects) or project."),
    transport: str = typer.Option("stdio", "--transport", "-t", help="stdio or http."),
    url: str | None = typer.Option(None, "--url", help="http: the server's URL."),
    env: list[str] = typer.Option([], "--env", "-e", help="stdio: K=V for the server (repeat)."),
    header: list[str] = typer.Option([], "--header", "-H", help="http: 'K: V' (repeat)."),
    allow: list[str] = typer.Option(
        [], "--allow", help="A tool (or '*') the agent may call without asking (repeat)."
    ),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="Seconds per tool call."),
) -> None:
    """Add (or replace) a server: `NAME -- CMD ARGS...`, or `NAME --transport http --url URL`.

    Use ${VAR} in values to read secrets from the environment when the server starts.
    """
    from pydantic import ValidationError

    from shoal.mcp import config
    from shoal.paths import Home

    where = _scope(scope) or "user"
    if transport not in ("stdio", "http"):
        fail(f"--transport {transport!r} must be stdio or http", code=2)
    data: dict[str, Any] = {"type": transport, "allow": allow, "timeout": timeout}
    if transport == "stdio":
        if not command:
            fail("a stdio server needs its command after --: shoal mcp add NAME -- CMD ARGS", 2)
        if url or header:
            fail("--url and --header are for --transport http", code=2)
        data.update(command=command[0], args=command[1:], env=_pairs(env, "=", "--env"))
    else:
        if command or env:
            fail("an http server takes --url (and --header), not a command or --env", code=2)
        data.update(url=url, headers=_pairs(header, ":", "--header"))
    try:
        config.check_name(name)
        server = config.ServerConfig.model_validate(data)
        path = config.add(Home.resolve(), Path.cwd(), name, server, where)
    except config.McpConfigError as exc:
        fail(str(exc), code=2)
    except ValidationError as exc:
        fail(exc.errors()[0]["msg"].removeprefix("Value error, "), code=2)
    note = " (approved for this project)" if where == "project" else ""
    console().print(f"added {name} to {path}{note}: {server.describe()}")


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print JSON lines.")) -> None:
    """The servers this directory's tasks can use, and which need approval."""
    from shoal.mcp import config
    from shoal.paths import Home

    found = config.discover(Home.resolve(), Path.cwd())
    rows = [
        {
            "name": s.name,
            "scope": s.scope,
            "status": s.status,
            "transport": s.server.type,
            "target": s.server.describe(),
            "allow": s.server.allow,
            "source": str(s.source),
            "plugin": s.plugin,
        }
        for s in found.servers
    ]
    for problem in found.problems:
        sys.stderr.write(f"shoal: warning: {problem}\n")
    if json_out:
        for row in rows:
            print_json(row)
        return
    if not rows:
        console().print("no MCP servers; add one with `shoal mcp add NAME -- CMD ARGS`")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "scope", "status", "transport", "target"):
        table.add_column(column)
    for row in rows:
        scope = row["scope"] + (f" (plugin {row['plugin']})" if row["plugin"] else "")
        table.add_row(row["name"], scope, row["status"], row["transport"], row["target"])
    console().print(table)
    if any(s.status == "needs approval" for s in found.servers):
        console().print("approve a project server with `shoal mcp approve NAME`")


@app.command()
def remove(
    name: str = typer.Argument(..., help="The server to remove."),
    scope: str | None = typer.Option(None, "--scope", "-s", help="user or project."),
) -> None:
    """Remove a server from its configuration file."""
    from shoal.mcp import config
    from shoal.paths import Home

    try:
        path = config.remove(Home.resolve(), Path.cwd(), name, _scope(scope))
    except config.McpConfigError as exc:
        fail(str(exc))
    console().print(f"removed {name} from {path}")


@app.command()
def approve(name: str = typer.Argument(..., help="The project server to approve.")) -> None:
    """Let a project's server start (this exact definition; a changed one needs approval again)."""
    from shoal.mcp import config
    from shoal.paths import Home

    home = Home.resolve()
    found = config.discover(home, Path.cwd())
    server = next((s for s in found.servers if s.name == name), None)
    if server is None:
        fail(f"no MCP server {name!r} here; `shoal mcp list` shows them")
    if server.scope == "user":
        console().print(f"{name} is a user server; it needs no approval")
        return
    if not server.approved:
        config.approve(home, found.project, name, server.server)
    console().print(
        f"approved {name} for {found.project}: {server.server.describe()} (from {server.source})"
    )


@app.command()
def serve(
    cwd: Path | None = typer.Option(None, "--cwd", "-C", help="Directory the tools work in."),
) -> None:
    """Run shoal as an MCP server over stdio: read-only tools in this directory, and run_task."""
    from shoal.cli.mcp_serve import serve as run_server

    root = (cwd or Path.cwd()).resolve()
    if not root.is_dir():
        fail(f"--cwd {root} is not a directory", code=2)
    run_server(root)
