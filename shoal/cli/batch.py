"""``shoal batch "instruction" (--files GLOB | --repos FILE)``, ``shoal batch status|resume|list``.

The command is the batch's driver (:mod:`shoal.batch.driver`); units run as Ray
tasks (``--backend ray``, the default when Ray is installed) or in a local
process pool (``--backend local``). Exit 0 when every unit was accepted, 1
otherwise, 130 when interrupted (``shoal batch resume ID`` continues), 2 for
usage errors.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shoal.cli import loop_options as lo
from shoal.cli.groups import RunByDefault
from shoal.cli.output import console, fail, print_json

if TYPE_CHECKING:
    from shoal.batch import backends
    from shoal.batch.driver import BatchSpec, Outcome, Summary
    from shoal.batch.units import UnitKind
    from shoal.paths import Home

Found = list[tuple[str, str, list[str]]]
"""(name, source repository, files) per unit."""

app = typer.Typer(
    cls=RunByDefault,
    help="Apply one instruction to many files, directories or repositories, in parallel.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_BACKEND_HELP = "ray (default when Ray is installed) or local (a process pool)."


# The options of `shoal batch`, declared once here so the command's signature reads at once.
Files = Annotated[
    str | None,
    typer.Option("--files", help="Glob of committed files in the repository (e.g. 'src/**/*.py')."),
]
Repos = Annotated[
    Path | None,
    typer.Option("--repos", help="File listing repositories (paths or git URLs), one a line."),
]
Unit = Annotated[
    str | None,
    typer.Option("--unit", help="file or dir with --files (default file); repo with --repos."),
]
Workers = Annotated[
    int | None,
    typer.Option("--workers", "-w", min=1, max=4096, help="Units at once (default: CPUs)."),
]
Verify = Annotated[
    str | None, typer.Option("--verify", help="Shell command that must pass in each unit's copy.")
]
VerifyTimeout = Annotated[float, typer.Option("--verify-timeout", min=1.0)]
Judge = Annotated[
    bool | None,
    typer.Option(
        "--judge/--no-judge",
        help="Run the evaluator on each change (default: when an evaluator model is set).",
    ),
]
BatchQuality = Annotated[float | None, typer.Option("--quality", min=0.0, max=1.0)]
MaxTurns = Annotated[int, typer.Option("--max-turns", min=1, max=500)]
Retries = Annotated[
    int, typer.Option("--retries", min=0, max=20, help="Runs more if a worker dies.")
]
BackendName = Annotated[str | None, typer.Option("--backend", help=_BACKEND_HELP)]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", help="Join this Ray cluster instead of starting a local Ray."),
]
RepoUrl = Annotated[
    str | None,
    typer.Option(
        "--repo-url",
        help="A URL of the --files repository for workers whose node lacks its path.",
    ),
]
FilesCwd = Annotated[Path | None, typer.Option("--cwd", "-C", help="Repository for --files.")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Only write patch files; create no branch.")
]
BatchQuiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.command("run")
def batch_run(
    instruction: str = typer.Argument(..., help="What to do to every unit, in plain words."),
    files: Files = None,
    repos: Repos = None,
    unit: Unit = None,
    workers: Workers = None,
    verify: Verify = None,
    verify_timeout: VerifyTimeout = 600.0,
    judge: Judge = None,
    check: lo.Checks = None,
    no_checks: lo.NoChecks = False,
    quality: BatchQuality = None,
    model: lo.Model = None,
    max_turns: MaxTurns = 30,
    retries: Retries = 2,
    backend: BackendName = None,
    ray_address: RayAddress = None,
    repo_url: RepoUrl = None,
    cwd: FilesCwd = None,
    dry_run: DryRun = False,
    quiet: BatchQuiet = False,
    json_out: lo.JsonOut = False,
) -> None:
    """Run a batch: split into units, run each in isolation, apply what was accepted."""
    from shoal.ids import new_id
    from shoal.paths import Home

    kind = _unit_kind(files, repos, unit)
    home = Home.resolve()
    workdir = (cwd or Path.cwd()).resolve()
    found, bases = _find_units(files, repos, kind, workdir)
    spec = _spec(
        home,
        workdir if files is not None else Path.cwd(),
        model=model,
        judge=judge,
        quality=quality,
        instruction=instruction,
        files=files,
        repos=str(repos.resolve()) if repos is not None else None,
        unit=kind,
        verify=verify,
        verify_timeout=verify_timeout,
        max_turns=max_turns,
        workers=workers or _cpus(),
        retries=retries,
        dry_run=dry_run,
        bases=bases,
        urls=_urls(repo_url, bases),
        **_checks(home, workdir, check, no_checks),
    )
    chosen = _backend(home, backend, ray_address)
    _run(home, new_id(), spec, _outcomes(found), chosen, quiet=quiet, json_out=json_out, new=True)


def _unit_kind(files: str | None, repos: Path | None, unit: str | None) -> UnitKind:
    if (files is None) == (repos is None):
        fail("give exactly one of --files GLOB or --repos FILE", code=2)
    kind = unit or ("repo" if repos is not None else "file")
    if kind not in ("file", "dir", "repo") or (kind == "repo") != (repos is not None):
        fail("--unit is file or dir with --files, and repo with --repos", code=2)
    return kind  # type: ignore[return-value]


def _urls(url: str | None, bases: dict[str, str | None]) -> dict[str, str]:
    """``--repo-url`` for the one repository of a ``--files`` batch."""
    if url is None:
        return {}
    if len(bases) != 1:
        fail("--repo-url goes with --files; with --repos, list the URL in the file", code=2)
    if not ("://" in url or url.startswith("git@") or Path(url).is_absolute()):
        fail(f"--repo-url {url!r}: give a URL (file://, ssh://, https://, git@...)", code=2)
    return {next(iter(bases)): url}


def _find_units(
    files: str | None, repos: Path | None, kind: UnitKind, workdir: Path
) -> tuple[Found, dict[str, str | None]]:
    """The units, and the commit each source starts from (None: a URL's HEAD, at clone time)."""
    from shoal.batch.units import BatchError, file_units, head_commit, repo_root, repo_units

    try:
        if files is not None:
            root = repo_root(workdir)
            found = [(name, str(root), fs) for name, fs in file_units(root, files, kind)]
            return found, {str(root): head_commit(root)}
        assert repos is not None
        found = [(name, source, []) for name, source in repo_units(repos.resolve())]
        return found, {s: (head_commit(s) if Path(s).is_dir() else None) for _, s, _ in found}
    except BatchError as exc:
        fail(str(exc), code=2)


def _spec(
    home: Home,
    cwd: Path,
    *,
    model: str | None,
    judge: bool | None,
    quality: float | None,
    **options: Any,
) -> BatchSpec:
    """The batch as asked for, with the configured models, quality bar and permissions."""
    from shoal import config
    from shoal.batch.driver import BatchSpec

    loop = config.load(home, cwd, {"model": model})
    models = loop.models()
    if "executor" not in models:
        fail(
            "no model configured: set SHOAL_MODEL (e.g. openai/gpt-4o) and its provider key, "
            "or pass -m",
            code=2,
        )
    judge = ("evaluator" in models) if judge is None else judge
    if judge and "evaluator" not in models:
        fail("--judge needs an evaluator model (SHOAL_EVALUATOR_MODEL or SHOAL_MODEL)", code=2)
    return BatchSpec(
        judge=judge,
        quality=quality if quality is not None else loop.quality,
        models=models,
        permission_mode=loop.permission_mode,
        token_budget=loop.budget_tokens,
        **options,
    )


def _checks(home: Home, cwd: Path, commands: list[str] | None, off: bool) -> dict[str, Any]:
    """The evaluator's checks for every unit: ``--check``, else ``[checks]``; or none."""
    from shoal.evaluation.settings import load_checks
    from shoal.settings import SettingsError

    if off and commands:
        fail("--check and --no-checks contradict each other; drop one", code=2)
    try:
        found = (
            [] if off else load_checks(home.config_file, cwd / ".shoal" / "config.toml", commands)
        )
    except SettingsError as exc:
        fail(str(exc), code=2)
    return {"checks": found, "run_checks": not off}


def _outcomes(found: Found) -> list[Outcome]:
    from shoal.batch.driver import Outcome
    from shoal.batch.units import unit_id
    from shoal.messages.batch import BatchUnitRow

    return [
        Outcome(BatchUnitRow(unit_id=unit_id(name), name=name, source=source, files=fs))
        for name, source, fs in found
    ]


@app.command("resume")
def batch_resume(
    batch_id: str = typer.Argument(..., help="Batch id (or a unique prefix)."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, max=4096),
    backend: str | None = typer.Option(None, "--backend", help=_BACKEND_HELP),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster to join."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Continue an interrupted batch: units already finished are not run again."""
    from shoal.batch.driver import BatchSpec, load_outcomes
    from shoal.paths import Home

    home = Home.resolve()
    batch = _batch(batch_id)
    from shoal.messages.base import from_json, replace

    spec = from_json(BatchSpec, batch["spec"])
    if workers:
        spec = replace(spec, workers=workers)
    outcomes = load_outcomes(_rows("batch.units", {"batch_id": batch["id"]}))
    chosen = _backend(home, backend, ray_address)
    _run(home, batch["id"], spec, outcomes, chosen, quiet=quiet, json_out=json_out, new=False)


@app.command("status")
def batch_status(
    batch_id: str = typer.Argument(..., help="Batch id (or a unique prefix)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a batch and the outcome of each of its units."""
    import json

    batch = _batch(batch_id)
    units = _rows("batch.units", {"batch_id": batch["id"]})
    counts: dict[str, int] = {}
    for u in units:
        counts[u["status"]] = counts.get(u["status"], 0) + 1
    if json_out:
        batch["spec"] = json.loads(batch["spec"])
        batch["applied"] = json.loads(batch["applied"]) if batch["applied"] else {}
        for u in units:
            u["files"] = json.loads(u["files"])
            u["files_changed"] = json.loads(u["files_changed"]) if u["files_changed"] else []
            u.pop("diff", None)
        print_json({**batch, "counts": counts, "unit_results": units})
        return
    out = console()
    out.print(
        f"batch {batch['id']} · {batch['status']} · {batch['backend']} · "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    out.print(f"instruction: {batch['instruction']}")
    _unit_table([{**u, "verify": u["verify_passed"]} for u in units])


@app.command("list")
def batch_list(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000),
    json_out: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List recent batches."""
    from rich.table import Table

    rows = _rows("batches.recent", {"limit": limit})
    if json_out:
        for row in rows:
            print_json(row)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("batch", "status", "units", "backend", "created", "instruction"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["id"], r["status"], str(r["units"]), r["backend"], r["created_at"][:19],
            r["instruction"][:60],
        )  # fmt: skip
    console().print(table if rows else "no batches yet")


def _run(
    home: Home,
    batch_id: str,
    spec: Any,
    outcomes: list[Any],
    backend: backends.Backend,
    *,
    quiet: bool,
    json_out: bool,
    new: bool,
) -> None:
    import contextlib

    from shoal.batch.driver import interrupted_note, run_batch

    # Ray's driver prints cluster messages ("a worker died ...") to stdout: keep
    # them on stderr while it runs, so stdout is only the summary (or the JSON).
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_batch(home, batch_id, spec, outcomes, backend, quiet=quiet, new=new)
    _report(summary, json_out)
    if summary.status == "interrupted":
        sys.stderr.write(f"shoal: {interrupted_note(summary)}\n")
        raise typer.Exit(130)
    counts = summary.counts()
    raise typer.Exit(0 if counts["accepted"] == len(summary.outcomes) else 1)


def _report(summary: Summary, json_out: bool) -> None:
    data = summary.as_json()
    if json_out:
        print_json(data)
        return
    _unit_table(data["unit_results"])
    counts = summary.counts()
    out = console()
    out.print(
        f"batch {summary.batch_id}: {summary.status}; {counts['accepted']} accepted, "
        f"{counts['rejected']} rejected, {counts['failed']} failed"
        + (f", {counts['lost']} lost" if counts["lost"] else "")
        + (f", {counts['conflict']} conflicts" if counts["conflict"] else "")
        + (f", {counts['pending']} not run" if counts["pending"] else "")
        + f" in {summary.duration_s:.1f}s on {summary.backend}; {data['tokens']} tokens, "
        f"${data['cost_usd']:.4f}"
    )
    for repo, branch in summary.branches.items():
        out.print(f"applied to branch {branch} in {repo}")
    if summary.left_out:
        out.print(f"not applied (see the patch files): {', '.join(summary.left_out)}")
    out.print(f"patches: {summary.patches}")


def _unit_table(units: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("unit", "status", "score", "verify", "tries", "tokens", "secs", "error"):
        table.add_column(column)
    for u in units:
        verify = u.get("verify_passed", u.get("verify"))
        table.add_row(
            u["name"][:60],
            u["status"],
            "-" if u["score"] is None else f"{u['score']:.2f}",
            "-" if verify is None else ("pass" if verify else "FAIL"),
            str(u["attempts"]),
            str(u["tokens"]),
            "-" if u["duration_s"] is None else f"{u['duration_s']:.1f}",
            (u["error"] or "")[:60],
        )
    console().print(table)


def _backend(home: Home, name: str | None, address: str | None) -> backends.Backend:
    import importlib.util

    from shoal.batch.backends import LocalBackend, RayBackend
    from shoal.settings import OrchestratorSettings

    settings = OrchestratorSettings.load(home)
    if name is None:
        name = "ray" if importlib.util.find_spec("ray") is not None else "local"
    if name == "local":
        if address:
            fail("--ray-address needs --backend ray", code=2)
        return LocalBackend(settings.preload)
    if name != "ray":
        fail(f"--backend {name!r}: use ray or local", code=2)
    return RayBackend(home, address or settings.ray_address, settings.ray_num_cpus)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _batch(batch_id: str) -> dict[str, Any]:
    found = _rows("batch.get", {"batch_id": batch_id})
    if not found:
        fail(f"no batch {batch_id!r}; `shoal batch list` lists them", code=1)
    if len(found) > 1:
        fail(f"{batch_id!r} matches more than one batch; give more of the id", code=2)
    return found[0]


def _rows(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from shoal.cli.tasks import _rows as rows

    try:
        return rows(name, params)
    except ValueError as exc:  # a malformed id
        fail(str(exc), code=2)
