"""``shoal review``, ``shoal commit-check`` and ``shoal release-notes``: workflows on a diff.

A review is the evaluator's checks and judge on a change that no task made:
the uncommitted changes, the staged ones, a range of commits or a branch
against its base. It goes to an evaluator actor (``review.request``), so it
is recorded like every message, and it changes nothing in the repository.
Exit 1 when a finding is a blocker (a CI gate), 2 for usage errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli import loop_options as lo
from shoal.cli.output import fail, print_json
from shoal.messages.base import to_dict

if TYPE_CHECKING:
    from shoal.evaluation.review import Target
    from shoal.evaluation.secrets import Secret
    from shoal.messages.tasks import ReviewRequest, ReviewResult
    from shoal.paths import Home

REVIEW = "Review {label} as a pull request: correctness, missing tests and verification."
SECURITY = (
    "Security review of {label}: injection, path traversal, secrets in code, unsafe "
    "deserialisation, authorization gaps."
)
FORMATS = ("text", "json", "sarif")


def review(
    rev_range: str | None = typer.Argument(
        None,
        metavar="REV_RANGE",
        help="A..B, A...B, or one commit; default: the uncommitted changes.",
    ),
    staged: bool = typer.Option(False, "--staged", help="Review the staged changes."),
    pr_base: str | None = typer.Option(
        None, "--pr-base", metavar="BRANCH", help="Review HEAD against where it left BRANCH."
    ),
    security: bool = typer.Option(
        False, "--security", help="Use the security rubric (injection, traversal, secrets...)."
    ),
    fmt: str = typer.Option("text", "--format", help="text, json or sarif."),
    json_out: lo.JsonOut = False,
    fix: bool = typer.Option(False, "--fix", help="Hand the findings to a task that fixes them."),
    cwd: lo.Cwd = None,
    model: lo.Model = None,
    check: lo.Checks = None,
    no_checks: lo.NoChecks = False,
) -> None:
    """Review a diff with the evaluator's checks and judge; exit 1 on a blocker."""
    fmt = "json" if json_out else fmt
    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: use text, json or sarif", code=2)
    if fix and fmt == "sarif":
        fail("--fix prints the task's result: use --format text or json with it", code=2)
    home, target, request = _prepare(
        cwd, rev_range, staged, pr_base, security, model, check, no_checks
    )
    result = _run(home, request, target)
    out = _render(target, result, fmt)
    blockers = sum(1 for f in result.judge.findings if f.severity == "blocker") if result else 0
    if fix and result is not None and result.judge.findings:
        done = _fix(target, result, fmt, model)
        if isinstance(out, dict):
            out["fix"] = to_dict(done)
    if isinstance(out, dict):
        print_json(out)
    raise typer.Exit(1 if blockers else 0)


def _prepare(
    cwd: Path | None,
    rev_range: str | None,
    staged: bool,
    pr_base: str | None,
    security: bool,
    model: str | None,
    check: list[str] | None,
    no_checks: bool,
    message: bool = False,
) -> tuple[Home, Target, ReviewRequest]:
    """What to review and how (models, checks), as the loop would; usage errors exit 2."""
    from shoal.evaluation import review as reviews
    from shoal.messages.tasks import ReviewRequest
    from shoal.paths import Home
    from shoal.settings import SettingsError
    from shoal.submission import SubmitError, submission
    from shoal.workspace.git import WorkspaceError

    home = Home.resolve()
    workdir = (cwd or Path.cwd()).resolve()
    try:
        target = reviews.select(workdir, rev_range, staged=staged, pr_base=pr_base)
        label = target.label
        text = (SECURITY if security else REVIEW).format(label=label)
        flags = {"model": model, "check": check, "no_checks": no_checks}
        made = submission(
            home,
            text,
            workdir,
            flags,
            no_model=_NO_MODEL,
            virtual_env=os.environ.get("VIRTUAL_ENV"),
        )
    except (SubmitError, SettingsError, WorkspaceError) as exc:
        fail(str(exc), code=2)
    if made.notice:
        sys.stderr.write(made.notice + "\n")
    options = made.task.options
    models = options.models
    if "evaluator" not in models:
        fail(f"no model configured for the evaluator: {_NO_MODEL}", code=2)
    request = ReviewRequest(
        cwd=str(target.repo),
        base=target.base,
        head=target.head,
        description=text,
        commits=target.commits,
        model=models["evaluator"],
        rubric="security" if security else None,
        checkout=reviews.checkout_commit(target) if options.run_checks else None,
        checks=options.checks,
        run_checks=options.run_checks,
        virtual_env=options.virtual_env,
        message_model=(models.get("small") or models["evaluator"]) if message else None,
    )
    return home, target, request


_NO_MODEL = "set SHOAL_MODEL (or SHOAL_EVALUATOR_MODEL) and its provider key, or pass -m"


def _run(home: Home, request: ReviewRequest, target: Target) -> ReviewResult | None:
    """The review's result; None when there is nothing to review (no model is asked)."""
    from shoal.client import review as ask
    from shoal.workspace import snapshots

    if not snapshots.changed_files(target.repo, target.base, target.head):
        return None
    return ask(home, request)


def _render(target: Target, result: ReviewResult | None, fmt: str) -> dict[str, Any] | None:
    """Print the text or SARIF form; return the JSON object (printed by the caller)."""
    if fmt == "sarif":
        print_json(_sarif(target, result))
        return None
    if fmt == "json":
        return as_json(target, result)
    sys.stdout.write(report(target, result))
    return None


def _sarif(target: Target, result: ReviewResult | None) -> dict[str, Any]:
    from shoal import __version__
    from shoal.evaluation.sarif import sarif
    from shoal.messages.tasks import Evaluation, ReviewResult

    empty = ReviewResult(score=1.0, judge=Evaluation(score=1.0), rubric="none")
    return sarif(result or empty, target.repo, target.label, __version__)


def as_json(target: Target, result: ReviewResult | None) -> dict[str, Any]:
    findings = result.judge.findings if result else []
    return {
        "reviewed": target.label,
        "repo": str(target.repo),
        "base": target.base,
        "head": target.head,
        "commits": target.commits,
        "files": result.files if result else [],
        "rubric": result.rubric if result else None,
        "score": result.score if result else None,
        "judge_score": result.judge.score if result else None,
        "dimensions": result.judge.dimensions if result else {},
        "findings": [to_dict(f) for f in findings],
        "blockers": sum(1 for f in findings if f.severity == "blocker"),
        "checks": [to_dict(c.report()) for c in result.checks] if result else [],
        "tests": result.tests if result else None,
        "tokens": result.usage.tokens if result else 0,
        "cost_usd": result.usage.cost_usd if result else 0.0,
    }


def report(target: Target, result: ReviewResult | None) -> str:
    """The review as a person reads it."""
    from shoal.cli.check_view import check_line, tests_line

    if result is None:
        return f"nothing to review: {target.label} change no file\n"
    lines = [f"review of {target.label} in {target.repo} (rubric {result.rubric})"]
    lines.append("files: " + ", ".join(result.files))
    lines += [f"  {check_line(to_dict(c))}" for c in result.checks]
    note = tests_line(result.tests)
    if note:
        lines.append(f"  {note}")
    order = {"blocker": 0, "important": 1, "minor": 2}
    for f in sorted(result.judge.findings, key=lambda f: order[f.severity]):
        lines.append(f"{f.severity:<9} {f.where or '-'}  {f.title}")
        lines += [f"          {text}" for text in (f.detail, f.fix and f"fix: {f.fix}") if text]
    findings = result.judge.findings
    blockers = sum(1 for f in findings if f.severity == "blocker")
    lines.append(
        f"score {result.score:.2f} · {len(findings)} finding(s), {blockers} blocker(s) · "
        f"{result.usage.tokens} tokens · ${result.usage.cost_usd:.4f}"
    )
    return "\n".join(lines) + "\n"


def _fix(target: Target, result: ReviewResult, fmt: str, model: str | None) -> Any:
    """A task in the work tree that addresses the findings; its result (shown like shoal run's)."""
    from shoal.cli.run import prepare, report, submit_and_follow

    items = "\n".join(
        f"- [{f.severity}] {f.where + ': ' if f.where else ''}{f.title}. {f.detail} "
        f"Fix: {f.fix}".rstrip()
        for f in result.judge.findings
    )
    task = f"Address these findings of a review of {target.label}:\n{items}"
    home, submit = prepare(task, target.repo, {"model": model})
    done = submit_and_follow(home, submit, quiet=fmt == "json")
    if fmt != "json":
        report(done, json_out=False, print_only=False)
    return done


def commit_check(
    cwd: lo.Cwd = None,
    model: lo.Model = None,
    check: lo.Checks = None,
    no_checks: lo.NoChecks = False,
    security: bool = typer.Option(False, "--security", help="Review with the security rubric."),
    json_out: lo.JsonOut = False,
) -> None:
    """Is the staged change ready to commit? Checks, review, secrets, a proposed message."""
    from shoal.evaluation.secrets import scan
    from shoal.workspace import snapshots

    home, target, request = _prepare(
        cwd, None, True, None, security, model, check, no_checks, message=True
    )
    if not snapshots.changed_files(target.repo, target.base, target.head):
        fail("nothing is staged; `git add` what you mean to commit first", code=2)
    secrets = scan(snapshots.diff(target.repo, target.base, target.head))
    result = _run(home, request, target)
    assert result is not None
    ready = _ready(result, secrets)
    if json_out:
        print_json(
            {
                **as_json(target, result),
                "ready": ready,
                "secrets": [vars(s) for s in secrets],
                "message": result.message,
            }
        )
    else:
        sys.stdout.write(_readiness(target, result, secrets, ready))
    raise typer.Exit(0 if ready else 1)


def _ready(result: ReviewResult, secrets: list[Secret]) -> bool:
    """Every check passed (one that could not run is no pass), no blocker, no secret."""
    checks_ok = all(c.status == "passed" or (c.status is None and c.passed) for c in result.checks)
    blockers = any(f.severity == "blocker" for f in result.judge.findings)
    return checks_ok and not blockers and not secrets


def _readiness(target: Target, result: ReviewResult, secrets: list[Secret], ready: bool) -> str:
    text = report(target, result)
    for s in secrets:
        text += f"secret    {s.file}:{s.line}  {s.kind} ({s.preview}): remove it and rotate it\n"
    if result.message:
        text += "\nproposed commit message:\n\n" + result.message.strip() + "\n\n"
    verdict = "ready to commit" if ready else "NOT ready to commit"
    reasons = []
    if secrets:
        reasons.append(f"{len(secrets)} secret(s) in the staged lines")
    if any(f.severity == "blocker" for f in result.judge.findings):
        reasons.append("a blocker finding")
    if any(c.status != "passed" for c in result.checks if c.status is not None):
        reasons.append("a check did not pass")
    return text + verdict + (f": {', '.join(reasons)}" if reasons else "") + "\n"


def release_notes(
    span: str = typer.Argument(..., metavar="FROM..TO", help="e.g. v1.2.0..HEAD (TO: HEAD)."),
    cwd: lo.Cwd = None,
    json_out: lo.JsonOut = False,
) -> None:
    """Release notes from the commits in FROM..TO, grouped, as Markdown."""
    from shoal.workspace.git import WorkspaceError
    from shoal.workspace.releases import notes

    try:
        made = notes(cwd or Path.cwd(), span)
    except WorkspaceError as exc:
        fail(str(exc), code=2)
    if json_out:
        print_json(made.as_json())
    else:
        sys.stdout.write(made.markdown())
