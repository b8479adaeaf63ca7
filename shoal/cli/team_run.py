"""``shoal team run "task" --size N``: the plan's subtasks on N executors, in git worktrees."""

from __future__ import annotations

import typer

from shoal.cli import loop_options as lo
from shoal.messages.base import replace


def team_run(
    task: str = typer.Argument(..., help="What to do, in plain words."),
    size: int = typer.Option(2, "--size", "-n", min=1, max=32, help="Executors at once."),
    keep: bool = typer.Option(False, "--keep", help="Keep the worktrees and branches."),
    team: lo.Team = None,
    iterations: lo.Iterations = None,
    quality: lo.Quality = None,
    model: lo.Model = None,
    budget_usd: lo.BudgetUsd = None,
    budget_tokens: lo.BudgetTokens = None,
    timeout: lo.Timeout = None,
    cwd: lo.Cwd = None,
    permission_mode: lo.PermissionMode = None,
    allow: lo.Allow = None,
    deny: lo.Deny = None,
    check: lo.Checks = None,
    no_checks: lo.NoChecks = False,
    quiet: lo.Quiet = False,
    json_out: lo.JsonOut = False,
) -> None:
    """Plan, run the subtasks in parallel worktrees, merge them, evaluate the merged result."""
    from shoal.cli.run import prepare, report, submit_and_follow

    flags = lo.flags(
        iterations,
        quality,
        model,
        budget_usd,
        budget_tokens,
        timeout,
        permission_mode,
        allow,
        deny,
        check=check,
        no_checks=no_checks,
    )
    home, submit = prepare(task, cwd, flags, team=team)
    submit = replace(submit, options=replace(submit.options, team_size=size, keep_worktrees=keep))
    done = submit_and_follow(home, submit, quiet=quiet or json_out)
    report(done, json_out=json_out, print_only=False)
    raise typer.Exit(0 if done.status == "accepted" else 1)
