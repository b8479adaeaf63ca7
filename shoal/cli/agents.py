"""``shoal agents list|show``: the agent definitions this directory would use.

Definitions come from ``$SHOAL_HOME/agents``, then the directory's
``.shoal/agents`` and ``.claude/agents`` (later replacing earlier by name). A
file that cannot be loaded is one warning line on stderr; the rest still load.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli.output import console, fail, print_json

if TYPE_CHECKING:
    from shoal.messages.teams import TeamMemberSpec
    from shoal.skills.agents import AgentCatalog, AgentDefinition

app = typer.Typer(
    help="Agent definitions: Markdown with YAML front matter (.shoal/agents, .claude/agents, "
    "$SHOAL_HOME/agents).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

Cwd = typer.Option(None, "--cwd", "-C", help="The directory whose agents to list.")


def catalog(cwd: Path | None = None) -> AgentCatalog:
    from shoal.paths import Home
    from shoal.skills.agents import discover

    return discover(Home.resolve().root / "agents", cwd or Path.cwd())


def _warn(found: AgentCatalog) -> None:
    for warning in found.warnings:
        sys.stderr.write(f"shoal: warning: {warning}\n")


def _summary(agent: AgentDefinition) -> dict[str, Any]:
    return {
        "name": agent.name,
        "description": agent.description,
        "tools": agent.tools,
        "model": agent.model,
        "permission_mode": agent.permission_mode,
        "scope": agent.scope,
        "source": agent.source,
    }


@app.command("list")
def agents_list(
    cwd: Path | None = Cwd,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List the agents defined here, and where each comes from."""
    from shoal.skills.agents import describe

    found = catalog(cwd)
    _warn(found)
    agents = sorted(found.agents.values(), key=lambda a: a.name)
    if json_out:
        print_json({"agents": [_summary(a) for a in agents], "warnings": found.warnings})
        return
    if not agents:
        console().print("no agents defined (write .shoal/agents/NAME.md or .claude/agents/NAME.md)")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "scope", "tools", "description"):
        table.add_column(column, overflow="fold")
    for a in agents:
        about = a.description if len(a.description) <= 60 else a.description[:59] + "…"
        table.add_row(a.name, a.scope, describe(a.tools), about)
    console().print(table)


@app.command("show")
def agents_show(
    name: str = typer.Argument(..., help="The agent's name."),
    cwd: Path | None = Cwd,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show one agent: its fields and its system prompt."""
    from shoal.skills.agents import AgentError, describe

    found = catalog(cwd)
    _warn(found)
    try:
        agent = found.get(name)
    except AgentError as exc:
        fail(str(exc))
    if json_out:
        print_json({**_summary(agent), "prompt": agent.prompt, "notes": agent.notes})
        return
    out = sys.stdout
    for key, value in (
        ("name", agent.name),
        ("description", agent.description),
        ("tools", describe(agent.tools)),
        ("model", agent.model or "the task's (inherit)"),
        ("permission mode", agent.permission_mode or "the task's"),
        ("source", f"{agent.source} ({agent.scope})"),
        *(("note", note) for note in agent.notes),
    ):
        out.write(f"{key}: {value}\n")
    out.write(f"\n{agent.prompt}\n")


def agent_members(text: str) -> tuple[str, list[TeamMemberSpec]]:
    """Split ``--members``: the ``NAME@agent[*N]`` parts as executors acting as the agent
    defined here (fails in one line for an unknown one), and the rest of the text."""
    from shoal.messages.teams import TeamMemberSpec
    from shoal.skills.agents import AgentError

    rest, specs = [], []
    found: AgentCatalog | None = None
    for part in filter(None, (p.strip() for p in text.split(","))):
        who, _, count = part.partition("*")
        name, at, kind = who.strip().partition("@")
        if not at or kind.strip() != "agent":
            rest.append(part)
            continue
        found = found or catalog()
        try:
            agent = found.get(name.strip())
        except AgentError as exc:
            fail(str(exc), code=2)
        n = int(count) if count.strip().isdigit() else 1 if not count.strip() else 0
        if not 1 <= n <= 64:
            fail(f"count in {part!r} must be a number from 1 to 64", code=2)
        specs.append(TeamMemberSpec(role="executor", count=n, agent=agent.spec()))
    return ",".join(rest), specs
