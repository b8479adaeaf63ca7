"""``shoal replay TASK_ID... --model M``: recorded tasks again, with another model, side by side.

How a replay is isolated and recorded is in shoal/replay.py; this module
parses, follows each replay as ``shoal run`` follows a task, and prints.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli.output import fail, print_json

if TYPE_CHECKING:
    from pathlib import Path

    from shoal.messages.tasks import ModelChoice
    from shoal.paths import Home


def replay(
    task_ids: list[str] | None = typer.Argument(None, help="Recorded tasks (ids or prefixes)."),
    model: str = typer.Option(..., "--model", "-m", help="litellm model to replay them with."),
    role: str | None = typer.Option(
        None, "--role", help="Only this role gets the model: executor, planner or evaluator."
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="API base for the model (default: the role's configured one)."
    ),
    sample: int | None = typer.Option(
        None, "--sample", min=1, max=1000, help="Replay N recorded tasks picked at random."
    ),
    since: str = typer.Option("30d", "--since", help="With --sample: tasks from this period."),
    learn: bool = typer.Option(
        False, "--learn", help="Let the learner and pattern-miner use the replays."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Re-run recorded tasks from their base snapshot with another model, and compare."""
    from shoal.cli.stats import parse_since
    from shoal.paths import Home
    from shoal.replay import ALL_ROLES, LOOP_ROLES, ReplayError, candidates, summary

    if role is not None and role not in LOOP_ROLES:
        fail(f"--role {role!r}: use executor, planner or evaluator", code=2)
    if bool(task_ids) == (sample is not None):
        fail("give task ids or --sample N (not both)", code=2)
    home = Home.resolve()
    ids = list(task_ids or [])
    if sample is not None:
        ids = candidates(home, sample, parse_since(since))
        if not ids:
            fail("no recorded task to replay in this period (try --since all)")
    roles = (role,) if role else ALL_ROLES
    report: dict[str, Any] = {"model": model, "roles": list(roles), "replays": [], "errors": []}
    for task_id in ids:
        try:
            report["replays"].append(
                _one(home, task_id, model, base_url, roles, learn=learn, quiet=quiet or json_out)
            )
        except ReplayError as exc:
            if len(ids) == 1:
                fail(str(exc))
            sys.stderr.write(f"shoal: {exc}\n")
            report["errors"].append({"task_id": task_id, "error": str(exc)})
    for side in ("original", "replay"):
        report.setdefault("summary", {})[side] = summary([r[side] for r in report["replays"]])
    if json_out:
        print_json(report)
    else:
        _print(report)
    raise typer.Exit(1 if report["errors"] else 0)


def _one(
    home: Home,
    task_id: str,
    model: str,
    base_url: str | None,
    roles: tuple[str, ...],
    *,
    learn: bool,
    quiet: bool,
) -> dict[str, Any]:
    from shoal.cli.run import submit_and_follow
    from shoal.replay import base_of, find, replayable, submission, worktree

    original = find(home, task_id)
    replayable(original)
    root, sha, relative = base_of(original)
    choice = _model_choice(home, root, model, base_url, roles)
    if not quiet:
        sys.stderr.write(f"shoal: replaying {original.id} with {model} ({', '.join(roles)})\n")
    with worktree(home, root, sha, original.id) as tree:
        submit = submission(original, tree / relative, choice, roles, learn=learn)
        done = submit_and_follow(home, submit, quiet=quiet)
    return {"original": original.outcome(), "replay": find(home, done.task_id).outcome()}


def _model_choice(
    home: Home, root: Path, model: str, base_url: str | None, roles: tuple[str, ...]
) -> ModelChoice:
    """``model`` with the base URL given, else the one configured for the (first) role."""
    from shoal.config import load
    from shoal.messages.tasks import ModelChoice
    from shoal.settings import SettingsError

    if base_url is None:
        try:
            config = load(home, root)
        except SettingsError as exc:
            fail(str(exc), code=2)
        base_url = getattr(config, f"{roles[0]}_base_url") or config.base_url
    return ModelChoice(model=model, base_url=base_url)


_FIELDS = (
    ("task", lambda o: o["task_id"]),
    ("status", lambda o: o["status"]),
    ("score", lambda o: "-" if o["score"] is None else f"{o['score']:.2f}"),
    ("iterations", lambda o: str(o["iterations"])),
    ("tokens", lambda o: f"{o['tokens']:,}"),
    ("cost", lambda o: f"${o['cost_usd']:.4f}"),
    ("time", lambda o: "-" if o["duration_s"] is None else f"{o['duration_s']:.1f}s"),
    ("executor", lambda o: o["executor_model"] or "-"),
)


def _print(report: dict[str, Any]) -> None:
    """Each replay beside its original, one line per figure."""
    lines = []
    for pair in report["replays"]:
        original, again = pair["original"], pair["replay"]
        lines.append(f"replay of {original['task_id']} with {report['model']} "
                     f"({', '.join(report['roles'])})")  # fmt: skip
        cells = [(name, show(original), show(again)) for name, show in _FIELDS]
        width = max(len(c[1]) for c in [*cells, ("", "original", "")])
        lines.append(f"  {'':<10}  {'original':<{width}}  replay")
        lines += [f"  {name:<10}  {a:<{width}}  {b}" for name, a, b in cells]
    if len(report["replays"]) > 1:
        for side in ("original", "replay"):
            lines.append(_sum_line(side, report["summary"][side]))
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")


def _sum_line(side: str, s: dict[str, Any]) -> str:
    score = "-" if s["mean_score"] is None else f"{s['mean_score']:.2f}"
    return (
        f"{side + 's':<9} {s['accepted']}/{s['tasks']} accepted, mean score {score}, "
        f"{s['tokens']:,} tokens, ${s['cost_usd']:.4f}, {s['duration_s']:.1f}s"
    )
