"""A review: the evaluator's checks and judge on a diff that is not a task's (``shoal review``).

The evaluator actor answers ``review.request`` here. The change is the
difference between two states of the repository (commits or trees); the
judge sees it exactly as it sees an iteration's, with the rubric the request
names (``security``) or the one its category selects, the project's own
evaluator skills included. When the work tree is not the reviewed state, the
checks run in a detached checkout of it under ``$SHOAL_HOME/worktrees``,
removed afterwards; nothing of the user's (work tree, index, refs) is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.messages.tasks import EvalRequest, Plan, ReviewRequest, ReviewResult, Step

if TYPE_CHECKING:
    from shoal.paths import Home

MESSAGE_SYSTEM = """Write a git commit message for the change below: a subject line of at most
72 characters in the imperative mood, a blank line, then a short body saying why the change
was made. Answer with the message only, no quotes or code fences."""


def review(request: ReviewRequest, home: Home, log: logging.Logger) -> ReviewResult:
    """Checks and judge on ``request``'s change; a commit message too when one is asked for."""
    from shoal.actors.evaluator import evaluate, rubric_for
    from shoal.workspace import snapshots

    skills_home = home.root / "skills"
    asked = eval_request(request)
    rubric = rubric_for(asked, skills_home, log)
    with _checkout(request, home) as where:
        result = evaluate(asked, skills_home, log, checks_in=where)
    usage = result.usage
    message = ""
    if request.message_model is not None:
        diff = snapshots.diff(request.cwd, request.base, request.head)
        message, spent = commit_message(request, diff)
        usage = usage + spent
    return ReviewResult(
        score=result.score,
        judge=result.judge,
        rubric=rubric.name,
        checks=result.checks,
        tests=result.tests,
        files=snapshots.changed_files(request.cwd, request.base, request.head),
        usage=usage,
        message=message,
    )


def eval_request(request: ReviewRequest) -> EvalRequest:
    """The evaluation of an iteration that a review is: its description picks the rubric's
    category (``review``) unless a rubric is named."""
    from shoal.actors.llm import clip

    steps = [Step(title="review the change for correctness, missing tests and verification")]
    if request.commits:
        steps.append(Step(title=clip("its commits: " + "; ".join(request.commits), 4_000)))
    return EvalRequest(
        description=request.description,
        cwd=request.cwd,
        iteration=1,
        plan=Plan(steps=steps),
        base=request.base,
        snapshot=request.head,
        model=request.model,
        rubric=request.rubric,
        checks=request.checks,
        run_checks=request.run_checks,
        virtual_env=request.virtual_env,
    )


class _checkout:
    """Where the checks run: None (the work tree, which is the reviewed state), or a
    detached worktree of ``request.checkout`` that is removed on the way out."""

    def __init__(self, request: ReviewRequest, home: Home) -> None:
        self.request = request
        self.home = home
        self.path: Path | None = None

    def __enter__(self) -> str | None:
        from shoal.ids import new_id
        from shoal.workspace import worktrees
        from shoal.workspace.git import toplevel

        if self.request.checkout is None or not self.request.run_checks:
            return None
        repo = toplevel(self.request.cwd)
        place = self.home.root / "worktrees" / f"review-{new_id()[-10:].lower()}"
        self.path = worktrees.add(repo, place, None, self.request.checkout)
        return str(self.path)

    def __exit__(self, *exc: object) -> None:
        from shoal.workspace import worktrees
        from shoal.workspace.git import toplevel

        if self.path is not None:
            worktrees.remove(toplevel(self.request.cwd), self.path)


def commit_message(request: ReviewRequest, diff: str):
    """A proposed commit message for the change (subject, blank line, body), and its usage."""
    from shoal.actors.llm import clip, model_config, usage_of
    from shoal.llm.client import complete

    assert request.message_model is not None
    messages = [
        {"role": "system", "content": MESSAGE_SYSTEM},
        {"role": "user", "content": f"```diff\n{clip(diff, 40_000) or '(no changes)'}\n```"},
    ]
    done = complete(model_config(request.message_model, "small"), messages)
    text = (done.content or "").strip().strip("`").strip()
    return text, usage_of(done)
