"""``shoal plugin``: add, list, remove, enable, disable and approve plugins."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli.output import fail, print_json

if TYPE_CHECKING:
    from shoal.plugins.store import Plugin, Scope

app = typer.Typer(
    help="Plugins: skills, agents, commands, MCP servers and hooks in one folder "
    "(Claude Code's layout).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
ScopeOption = typer.Option(None, "--scope", "-s", help="user or project.")


def _scope(value: str | None) -> Scope | None:
    if value not in (None, "user", "project"):
        fail(f"--scope {value!r} must be user or project", code=2)
    return value  # type: ignore[return-value]


def _home_cwd() -> tuple[Any, Path]:
    from shoal.paths import Home

    return Home.resolve(), Path.cwd()


@app.command()
def add(
    source: str = typer.Argument(..., help="A plugin folder, or a git URL."),
    scope: str = typer.Option("user", "--scope", "-s", help="user (all projects) or project."),
) -> None:
    """Install a plugin (copied in place; adding the same name again updates it)."""
    from shoal.plugins.manifest import PluginError
    from shoal.plugins.store import add as install

    home, cwd = _home_cwd()
    try:
        plugin, replaced = install(home, cwd, source, _scope(scope) or "user")
    except (PluginError, OSError) as exc:
        fail(str(exc))
    verb = "updated" if replaced else "added"
    typer.echo(f"{verb} plugin {plugin.name} ({plugin.scope}) in {plugin.root}")
    typer.echo("  " + _summary(parts(plugin)))


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print JSON lines.")) -> None:
    """The plugins of this directory: scope, status and what each brings."""
    from shoal.plugins.store import installed

    home, cwd = _home_cwd()
    found = installed(home, cwd)
    for problem in found.problems:
        sys.stderr.write(f"shoal: warning: {problem}\n")
    rows = [_row(p) for p in found.plugins]
    if json_out:
        for row in rows:
            print_json(row)
        return
    if not rows:
        typer.echo("no plugins; add one with `shoal plugin add PATH|URL`")
        return
    for row in rows:
        version = f" {row['version']}" if row["version"] else ""
        typer.echo(
            f"{row['name']}{version}  {row['scope']}  {row['status']}  {row['source'] or ''}"
        )
        typer.echo("  " + _summary(row["parts"]))
        unsupported = [h["event"] for h in row["parts"]["hooks"] if not h["supported"]]
        if unsupported:
            typer.echo(f"  hooks not run (events shoal does not have): {', '.join(unsupported)}")
    if any(r["status"] == "needs approval" for r in rows):
        typer.echo("approve a project's plugin with `shoal plugin approve NAME`")


@app.command()
def remove(name: str, scope: str | None = ScopeOption) -> None:
    """Uninstall a plugin: its skills, agents, commands, servers and hooks go with it."""
    from shoal.plugins.manifest import PluginError
    from shoal.plugins.store import remove as uninstall

    home, cwd = _home_cwd()
    try:
        which, where = uninstall(home, cwd, name, _scope(scope))
    except PluginError as exc:
        fail(str(exc))
    typer.echo(f"removed plugin {name} ({which}) from {where}")


@app.command()
def enable(name: str, scope: str | None = ScopeOption) -> None:
    """Use an installed plugin again."""
    _switch(name, scope, True)


@app.command()
def disable(name: str, scope: str | None = ScopeOption) -> None:
    """Stop using a plugin without uninstalling it."""
    _switch(name, scope, False)


def _switch(name: str, scope: str | None, on: bool) -> None:
    from shoal.plugins.manifest import PluginError
    from shoal.plugins.store import set_enabled

    home, cwd = _home_cwd()
    try:
        plugin = set_enabled(home, cwd, name, _scope(scope), on)
    except PluginError as exc:
        fail(str(exc))
    typer.echo(f"plugin {plugin.name} ({plugin.scope}): {plugin.status}")


@app.command()
def approve(name: str) -> None:
    """Trust a project's plugin as it is now (any change needs approval again)."""
    from shoal.plugins.manifest import PluginError
    from shoal.plugins.store import approve as trust

    home, cwd = _home_cwd()
    try:
        plugin = trust(home, cwd, name)
    except PluginError as exc:
        fail(str(exc))
    typer.echo(
        f"approved plugin {plugin.name} in {plugin.root}; a later change needs approval again"
    )


# --- what a plugin brings ------------------------------------------------------------------


def _row(plugin: Plugin) -> dict[str, Any]:
    return {
        "name": plugin.name,
        "scope": plugin.scope,
        "status": plugin.status,
        "version": plugin.manifest.version,
        "description": plugin.manifest.description,
        "source": plugin.source,
        "path": str(plugin.root),
        "parts": parts(plugin),
    }


def parts(plugin: Plugin) -> dict[str, Any]:
    """Names of its skills, agents, commands, MCP servers; its hooks and whether each runs."""
    from shoal.plugins import hooks
    from shoal.plugins.manifest import PluginError
    from shoal.skills.commands import parse

    found: dict[str, Any] = {"errors": []}
    try:
        found["skills"] = sorted(
            e.name
            for d in plugin.skill_dirs()
            if d.is_dir()
            for e in d.iterdir()
            if (e / "SKILL.md").is_file()
        )
        found["agents"] = sorted(_agent_name(f) for d in plugin.agent_paths() for f in _md(d))
        found["commands"] = sorted(parse(f).name for d in plugin.command_paths() for f in _md(d))
        found["mcp_servers"] = sorted(plugin.mcp_servers()[1])
        found["hooks"] = [
            {"event": h.event, "matcher": h.matcher, "supported": h.supported}
            for h in hooks.read(plugin)
        ]
    except (PluginError, OSError, ValueError) as exc:
        found["errors"].append(str(exc))
    for key in ("skills", "agents", "commands", "mcp_servers", "hooks"):
        found.setdefault(key, [])
    return found


def _md(where: Path) -> list[Path]:
    if where.is_file():
        return [where]
    return sorted(where.rglob("*.md")) if where.is_dir() else []


def _agent_name(path: Path) -> str:
    from shoal.skills.frontmatter import FrontmatterError, split_frontmatter

    try:
        meta, _ = split_frontmatter(path.read_text(encoding="utf-8"))
    except (FrontmatterError, OSError, UnicodeDecodeError):
        return path.stem
    return str(meta.get("name") or path.stem)


def _summary(found: dict[str, Any]) -> str:
    shown = []
    for key, label in (
        ("skills", "skills"),
        ("agents", "agents"),
        ("commands", "commands"),
        ("mcp_servers", "MCP servers"),
    ):
        if found[key]:
            names = ", ".join(("/" if key == "commands" else "") + n for n in found[key])
            shown.append(f"{label}: {names}")
    if found["hooks"]:
        events = sorted({h["event"] for h in found["hooks"]})
        shown.append(f"hooks: {', '.join(events)}")
    shown += [f"error: {e}" for e in found["errors"]]
    return "; ".join(shown) or "nothing (no skills, agents, commands, servers or hooks)"
