"""``shoal run "task"`` (and bare ``shoal "task"``): one task through plan -> execute -> evaluate.

The command is a thin client: it submits ``task.submit`` to the orchestrator,
shows the task's events on stderr, and prints the result. Exit 0 when the task
was accepted, 1 when it ended unaccepted or failed, 2 for usage errors.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from shoal.cli import loop_options as lo
from shoal.cli.output import fail, print_json
from shoal.messages.base import to_dict

if TYPE_CHECKING:
    from shoal.messages.tasks import TaskDone, TaskSubmit
    from shoal.paths import Home


Command = Annotated[
    str | None,
    typer.Option(
        "--command",
        metavar="NAME",
        help="Run a command (a prompt template: commands/NAME.md of a plugin, .claude/ or "
        ".shoal/commands) as the task, TASK as its $ARGUMENTS.",
    ),
]
Backend = Annotated[
    str | None,
    typer.Option("--backend", help="Where actors run: local processes or ray (Ray actors)."),
]
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", help="With --backend ray: join this cluster (host:port)."),
]


def run(
    task: str | None = typer.Argument(
        None, help="What to do, in plain words (with --command: the command's arguments)."
    ),
    command: Command = None,
    iterations: lo.Iterations = None,
    quality: lo.Quality = None,
    model: lo.Model = None,
    budget_usd: lo.BudgetUsd = None,
    budget_tokens: lo.BudgetTokens = None,
    timeout: lo.Timeout = None,
    cwd: lo.Cwd = None,
    permission_mode: lo.PermissionMode = None,
    team: lo.Team = None,
    agent: lo.Agent = None,
    allow: lo.Allow = None,
    deny: lo.Deny = None,
    check: lo.Checks = None,
    no_checks: lo.NoChecks = False,
    backend: Backend = None,
    ray_address: RayAddress = None,
    quiet: lo.Quiet = False,
    print_only: bool = typer.Option(False, "--print", "-p", help="Print only the final answer."),
    json_out: lo.JsonOut = False,
) -> None:
    """Run a task: plan, execute, evaluate, refine until the result is good enough."""
    task = _task(task, command, cwd)
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
    home, submit = prepare(task, cwd, flags, team=team, agent=agent)
    _check_backend(backend, ray_address)
    done = submit_and_follow(
        home,
        submit,
        quiet=quiet or print_only or json_out,
        backend=backend,
        ray_address=ray_address,
    )
    report(done, json_out=json_out, print_only=print_only)
    raise typer.Exit(0 if done.status == "accepted" else 1)


def _task(task: str | None, command: str | None, cwd: Path | None) -> str:
    """The task's text: as given, or a command's template filled with it."""
    if command is None:
        if not task:
            fail(
                "Missing argument 'TASK': say what to do (or run a prompt command: --command NAME)",
                code=2,
            )
        return task
    from shoal.paths import Home
    from shoal.skills.commands import discover_commands

    found = discover_commands(Home.resolve(), cwd or Path.cwd())
    template = found.get(command)
    if template is None:
        names = ", ".join(c.name for c in found.listed()) or "none here"
        fail(f"no command {command!r} (commands: {names})", code=2)
    return template.render(task or "")


def _check_backend(backend: str | None, ray_address: str | None) -> None:
    if backend is not None and backend not in ("local", "ray"):
        fail(f"--backend {backend!r}: use local or ray", code=2)
    if ray_address is not None and backend != "ray":
        fail("--ray-address needs --backend ray", code=2)


def prepare(
    task: str,
    cwd: Path | None,
    flags: dict[str, Any],
    *,
    team: str | None = None,
    agent: str | None = None,
) -> tuple[Home, TaskSubmit]:
    """Check the work tree and the model settings; build the task as ``shoal run`` sends it.

    What the repository's unapproved ``.shoal/config.toml`` could not set is one line on
    stderr."""
    from shoal.paths import Home
    from shoal.settings import SettingsError
    from shoal.submission import SubmitError, submission

    home = Home.resolve()
    try:
        prepared = submission(
            home,
            task,
            cwd or Path.cwd(),
            flags,
            team=team,
            agent=agent,
            no_model="set SHOAL_MODEL (e.g. openai/gpt-4o) and its provider key, or pass -m; "
            "`shoal demo` runs the loop with a scripted model",
            virtual_env=os.environ.get("VIRTUAL_ENV"),
        )
    except (SubmitError, SettingsError) as exc:  # a bad option or setting: a usage error
        fail(str(exc), code=2)
    if prepared.notice:  # shown even with --quiet: the repository asked for more than it got
        sys.stderr.write(prepared.notice + "\n")
    for note in prepared.model_notes:  # models shoal chose, or a name it does not know
        sys.stderr.write(note + "\n")
    return home, prepared.task


def submit_and_follow(
    home: Home,
    submit: TaskSubmit,
    *,
    quiet: bool,
    backend: str | None = None,
    ray_address: str | None = None,
) -> TaskDone:
    """Send the task, show its progress on stderr, and return its TaskDone.

    ``backend``: where the orchestrator's actors run (an idle orchestrator started with
    another backend is restarted)."""
    from shoal.client import Client, Follower, run_task

    progress = _Progress(quiet)

    def accepted(task_id: str, waiting_for: str | None) -> None:
        progress.started(task_id, submit)
        if waiting_for:
            progress.queued(waiting_for)

    follower = Follower(accepted=accepted, event=progress.show, note=progress.note)
    client = Client(home, backend=backend, ray_address=ray_address)
    done = run_task(home, submit, follower, client=client)  # ClientError: one line
    if submit.options.team_size:
        progress.verdict(done)
    return done


def report(done: TaskDone, *, json_out: bool, print_only: bool) -> None:
    for path in done.conflicts:  # on stderr whatever the output format: it needs a person
        sys.stderr.write(
            f"shoal: kept your changes to {path}: they do not merge with the task's; its "
            f"version: git show refs/shoal/{done.task_id}/{done.best_iteration}:{path}\n"
        )
    if json_out:
        print_json(to_dict(done))
    elif print_only:
        sys.stdout.write(done.summary.rstrip() + "\n")
    else:
        score = "-" if done.score is None else f"{done.score:.2f}"
        sys.stdout.write(
            f"{done.status}: score {score} after {done.iterations} iteration(s) "
            f"({done.decision}); {done.tokens} tokens, ${done.cost_usd:.4f}\n"
        )
        if done.files_changed:
            sys.stdout.write("files changed: " + ", ".join(done.files_changed) + "\n")
        _report_checks(done)
        for sub in done.subtasks:
            score = "-" if sub.score is None else f"{sub.score:.2f}"
            detail = f" ({sub.detail})" if sub.status == "conflict" and sub.detail else ""
            sys.stdout.write(f"  subtask {sub.id}: {sub.status}, score {score}{detail}\n")
        if done.summary:
            sys.stdout.write(done.summary.rstrip() + "\n")
        sys.stdout.write(f"details: shoal show {done.task_id}\n")


def _report_checks(done: TaskDone) -> None:
    from shoal.cli.check_view import check_line, tests_line

    for check in done.checks:
        sys.stdout.write(f"  {check_line(to_dict(check))}\n")
    note = tests_line(done.tests)
    if note:
        sys.stdout.write(f"{note}\n")


class _Progress:
    """One line per step and per tool call on stderr (rich; plain when not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.monotonic()
        if not quiet:
            from rich.console import Console

            self.console = Console(
                stderr=True,
                highlight=False,
                soft_wrap=True,  # a line per step, also in a log: the terminal wraps it
                no_color=not sys.stderr.isatty() or "NO_COLOR" in os.environ,
            )

    def _line(self, text: str) -> None:
        if not self.quiet:
            self.console.print(f"[dim]{time.monotonic() - self.t0:6.1f}s[/dim] {text}")

    def note(self, text: str) -> None:
        sys.stderr.write(f"\nshoal: {text}\n")

    def started(self, task_id: str, submit: TaskSubmit) -> None:
        self._line(f"task {task_id} in {submit.cwd}")

    def queued(self, holder: str) -> None:
        from shoal.orchestrator.scheduler import queued_detail

        self._line(f"[bold]queued[/bold] · {queued_detail(holder)}")

    def show(self, env: Any) -> None:
        p = env.payload
        if env.kind == "task.progress" and p["phase"] == "queued":
            self._line(f"[bold]queued[/bold] · {p.get('detail', '')}")
        elif env.kind == "task.progress":
            score = "" if p.get("score") is None else f" score {p['score']:.2f}"
            self._line(
                f"[bold]{p['phase']}[/bold] iteration {p['iteration']}{score} · "
                f"{p['tokens']} tokens · ${p['cost_usd']:.4f}"
            )
        elif env.kind == "eval.checks":
            from shoal.cli.check_view import check_line, tests_line

            for check in p.get("checks", []):
                self._line(f"  check {check_line(check)}")
            note = tests_line(p.get("tests"))
            if note:
                self._line(f"  {note}")
        elif env.kind == "team.progress":
            self._line(team_line(p))
        elif p.get("type") == "again":
            self._line(
                f"  [yellow]↻ {escape(p['name'])} takes iteration {p['iteration']} up again"
                f"[/yellow] ({escape(p.get('detail', ''))}): the actor that had it was "
                "restarted; the calls that follow repeat its lost run's"
            )
        elif p.get("type") == "tool_call":
            mark = "" if p.get("ok", True) else " [red]✗[/red]"
            why = f" [red]{escape(p['error'])}[/red]" if p.get("error") else ""
            self._line(f"  {escape(p['name'])} {escape(p.get('detail', '')[:100])}{mark}{why}")

    def verdict(self, done: TaskDone) -> None:
        """A team run's last milestone: how the merged result was judged."""
        merged = sum(1 for s in done.subtasks if s.status in ("accepted", "unaccepted"))
        score = "-" if done.score is None else f"{done.score:.2f}"
        self._line(
            f"[bold]verdict[/bold]: {done.status}, score {score} ({done.decision}); "
            f"{merged} of {len(done.subtasks)} subtask(s) merged"
        )


def team_line(p: dict[str, Any]) -> str:
    """One milestone of a team run (``team.progress``) as a progress line."""
    sub, who = p.get("subtask") or "", p.get("member") or ""
    text = escape(" ".join(str(p.get("text", "")).split())[:300])
    score = "" if p.get("score") is None else f", score {p['score']:.2f}"
    lines = {
        "plan": f"  subtask {sub}: {text}",
        "start": f"  {sub} → {who} ({text})",
        "refused": f"  [red]{sub}: {who}: {text}[/red]",
        "result": f"  {sub} {text}{score}",
        "merge": f"  [green]{sub} merged[/green]",
        "resolve": f"  [yellow]{sub}: {text}[/yellow]; an executor resolves them",
        "conflict": f"  [red]{sub} conflict[/red]: {text}",
        "message": f"  ✉ {who} → lead: {text}",
    }
    return lines.get(p.get("event", ""), f"  {escape(p.get('event', ''))} {sub} {text}")
