"""The loop options ``shoal run`` and ``shoal team run`` share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

Iterations = Annotated[
    int | None,
    typer.Option("--iterations", "-i", min=1, max=50, help="Most iterations (default 3)."),
]
Quality = Annotated[
    float | None,
    typer.Option(
        "--quality", min=0.0, max=1.0, help="Score that accepts the result (default 0.8)."
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="litellm model for every role (default: picked from the provider keys set); "
        "'?' picks one in a terminal.",
    ),
]
BudgetUsd = Annotated[float | None, typer.Option("--budget-usd", help="Stop at this cost.")]
BudgetTokens = Annotated[
    int | None, typer.Option("--budget-tokens", help="Stop at this many tokens.")
]
Timeout = Annotated[float | None, typer.Option("--timeout", help="Stop after this many seconds.")]
Cwd = Annotated[Path | None, typer.Option("--cwd", "-C", help="Repository to work in.")]
PermissionMode = Annotated[
    str | None,
    typer.Option("--permission-mode", help="default, plan (read-only), accept-edits, bypass."),
]
Team = Annotated[
    str | None,
    typer.Option("--team", help="Run on the members of this team (see `shoal team up`)."),
]
Agent = Annotated[
    str | None,
    typer.Option(
        "--agent",
        metavar="NAME",
        help="Act as this agent definition: its prompt, only its tools, its model "
        "(see `shoal agents list`).",
    ),
]
Allow = Annotated[
    list[str] | None,
    typer.Option(
        "--allow",
        metavar="RULE",
        help="Allow a tool call without asking: TOOL or TOOL:PATTERN (repeat).",
    ),
]
Deny = Annotated[
    list[str] | None,
    typer.Option(
        "--deny",
        metavar="RULE",
        help="Refuse a tool call: TOOL or TOOL:PATTERN (repeat); deny wins.",
    ),
]
Checks = Annotated[
    list[str] | None,
    typer.Option(
        "--check",
        metavar="CMD",
        help="Check the result with this command instead of the detected tests (repeat); "
        "run by sh in the repository, the project's venv first on PATH.",
    ),
]
NoChecks = Annotated[
    bool,
    typer.Option(
        "--no-checks",
        help="Run none of the project's checks: the judge alone scores (the result says so).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def flags(
    iterations: int | None,
    quality: float | None,
    model: str | None,
    budget_usd: float | None,
    budget_tokens: int | None,
    timeout: float | None,
    permission_mode: str | None,
    allow: list[str] | None,
    deny: list[str] | None,
    check: list[str] | None = None,
    no_checks: bool = False,
) -> dict[str, Any]:
    """The options as the loop's settings read them (None: unset, the configuration decides);
    ``-m ?`` asks for the model in the terminal first."""
    if model == "?":
        from shoal.cli.models import pick_model

        model = pick_model()
    return {
        "check": check,
        "no_checks": no_checks,
        "iterations": iterations,
        "quality": quality,
        "model": model,
        "budget_usd": budget_usd,
        "budget_tokens": budget_tokens,
        "timeout": timeout,
        "permission_mode": permission_mode,
        "allow": allow,
        "deny": deny,
    }
