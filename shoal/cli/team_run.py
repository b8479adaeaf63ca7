"""``shoal team run "task" --size N``: the plan's subtasks on N executors, in git worktrees."""

from __future__ import annotations

from pathlib import Path

import typer


def team_run(
    task: str = typer.Argument(..., help="What to do, in plain words."),
    size: int = typer.Option(2, "--size", "-n", min=1, max=32, help="Executors at once."),
    keep: bool = typer.Option(False, "--keep", help="Keep the worktrees and branches."),
    team: str | None = typer.Option(
        None, "--team", help="Run on the members of this team (see `shoal team up`)."
    ),
    iterations: int | None = typer.Option(
        None, "--iterations", "-i", min=1, max=50, help="Most iterations per subtask and overall."
    ),
    quality: float | None = typer.Option(
        None, "--quality", min=0.0, max=1.0, help="Score that accepts a result (default 0.8)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="litellm model for every role."),
    budget_usd: float | None = typer.Option(None, "--budget-usd", help="Stop at this cost."),
    budget_tokens: int | None = typer.Option(
        None, "--budget-tokens", help="Stop at this many tokens."
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="Stop after this many seconds."),
    cwd: Path | None = typer.Option(None, "--cwd", "-C", help="Repository to work in."),
    permission_mode: str | None = typer.Option(
        None, "--permission-mode", help="default, plan (read-only), accept-edits, bypass."
    ),
    allow: list[str] | None = typer.Option(
        None,
        "--allow",
        metavar="RULE",
        help="Allow a tool call without asking: TOOL or TOOL:PATTERN (repeat).",
    ),
    deny: list[str] | None = typer.Option(
        None,
        "--deny",
        metavar="RULE",
        help="Refuse a tool call: TOOL or TOOL:PATTERN (repeat); deny wins.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Plan, run the subtasks in parallel worktrees, merge them, evaluate the merged result."""
    from shoal.cli.run import prepare, report, submit_and_follow

    flags = {
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
    home, submit = prepare(task, cwd, flags, team=team)
    submit.options = submit.options.model_copy(update={"team_size": size, "keep_worktrees": keep})
    done = submit_and_follow(home, submit, quiet=quiet or json_out)
    report(done, json_out=json_out, print_only=False)
    raise typer.Exit(0 if done.status == "accepted" else 1)
