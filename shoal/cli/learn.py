"""``shoal learn``: review the skills the pattern-miner proposed; ``--mine`` mines now.

Proposals are SKILL.md folders under ``$SHOAL_HOME/skills/proposed/``; approving
and dismissing go through ``shoal.skills.proposals`` (as the HTTP API's do). In a
terminal, bare ``shoal learn`` walks through them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from shoal.cli.output import console, fail, print_json
from shoal.messages.base import to_dict

app = typer.Typer(
    help="Review skills mined from your task history.",
    rich_markup_mode=None,
    invoke_without_command=True,
)


def _skills() -> Path:
    from shoal.paths import Home

    return Home.resolve().root / "skills"


def _proposals() -> list[tuple[str, str]]:
    from shoal.skills.proposals import listed

    return listed(_skills())


@app.callback()
def learn(
    ctx: typer.Context,
    mine_now: bool = typer.Option(False, "--mine", help="Mine the task history now."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Review proposed skills (a picker in a terminal; a list otherwise)."""
    if mine_now:
        result = _mine()
        if json_out:
            print_json(to_dict(result))
        else:
            typer.echo(
                f"{len(result.patterns)} patterns; new proposals: "
                f"{', '.join(result.proposals) or 'none'}"
            )
        return
    if ctx.invoked_subcommand is not None:
        return
    if json_out or not sys.stdin.isatty():
        list_(json_out=json_out)
        return
    _pick()


def _mine() -> Any:
    from shoal.client import Client
    from shoal.config import load
    from shoal.messages.actors import ActorSpawn
    from shoal.messages.memory import MineRequest, MineResult
    from shoal.paths import Home

    home = Home.resolve()
    client = Client(home)
    client.start(same_settings=False)
    if not any(a.role == "pattern-miner" and a.state != "stopped" for a in client.status().actors):
        client.request(ActorSpawn(role="pattern-miner"))
    models = load(home, Path.cwd()).models()
    result = client.request(
        MineRequest(model=models.get("small")), timeout=300, to="role:pattern-miner"
    )
    assert isinstance(result, MineResult)
    return result


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print JSON lines.")) -> None:
    """Proposed skills waiting for a decision."""
    proposals = _proposals()
    if json_out:
        for name, description in proposals:
            print_json({"name": name, "description": description})
        return
    if not proposals:
        typer.echo("no proposed skills (shoal learn --mine looks for some)")
    for name, description in proposals:
        typer.echo(f"{name}  {description}")


@app.command()
def show(name: str = typer.Argument(..., help="Proposal name.")) -> None:
    """Print a proposed SKILL.md."""
    path = _skills() / "proposed" / name / "SKILL.md"
    if not path.is_file():
        fail(f"no proposed skill {name!r}; `shoal learn list` shows them")
    sys.stdout.write(path.read_text())


@app.command()
def approve(name: str = typer.Argument(..., help="Proposal name.")) -> None:
    """Install a proposed skill for every later task."""
    from shoal.skills import proposals

    target = _decide(proposals.approve, name)
    typer.echo(f"approved {name}: installed in {target}")


@app.command()
def dismiss(name: str = typer.Argument(..., help="Proposal name.")) -> None:
    """Drop a proposed skill; it is not proposed again."""
    from shoal.skills import proposals

    _decide(proposals.dismiss, name)
    typer.echo(f"dismissed {name}")


def _decide(decision: Callable[[Path, str], Path], name: str) -> Path:
    from shoal.skills.proposals import ProposalError

    try:
        return decision(_skills(), name)
    except ProposalError as exc:
        fail(str(exc))


def _pick() -> None:
    from rich.prompt import Prompt

    out = console()
    proposals = _proposals()
    if not proposals:
        out.print("no proposed skills (shoal learn --mine looks for some)")
        return
    for name, description in proposals:
        out.print(f"\n[bold]{name}[/bold]: {description}")
        out.print((_skills() / "proposed" / name / "SKILL.md").read_text())
        choice = Prompt.ask("approve, dismiss or skip", choices=["a", "d", "s"], default="s")
        if choice == "a":
            approve(name)
        elif choice == "d":
            dismiss(name)
