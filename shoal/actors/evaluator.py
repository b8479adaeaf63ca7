"""The evaluator: runs the project's own tests and linters, then a judge model with a rubric.

The checks run with the project's own toolchain (``shoal.evaluation``): the
ones the task configured, else the detected ones; none with ``--no-checks``.
Once they ran, ``eval.checks`` is published for progress views. The judge sees
the task, the plan, the actual diff of the iteration and the check outputs
(one that could not run, with its reason), and answers through
``submit_evaluation``. The composite score weighs tests (0.4), lint (0.1) and
the judge (0.5), renormalised over the parts that exist (a check that could
not run is no part; one that timed out scores 0); an open blocker finding caps
it at 0.5, so it can never be accepted. ``tests`` in the result tells the
scheduler whether the tests could run at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from shoal.actors.base import Actor
from shoal.actors.llm import clip, function_tool, model_config, usage_of
from shoal.mailbox.envelope import Envelope
from shoal.messages.base import InvalidMessage, from_dict, json_schema
from shoal.messages.tasks import (
    CheckOutcome,
    EvalChecks,
    EvalRequest,
    EvalResult,
    Evaluation,
    Finding,
    ReviewRequest,
    ReviewResult,
    TestsState,
    Usage,
)

WEIGHTS = {"test": 0.4, "lint": 0.1, "judge": 0.5}
BLOCKER_CAP = 0.5
CHECK_TIMEOUT = 600.0
_DIFF_LIMIT = 60_000
_OUTPUT_LIMIT = 6_000

SYSTEM = """You are the evaluator of shoal, a coding agent. Judge whether the change below
does the task well, using the rubric. Score each rubric dimension from 0.0 to 1.0, give an
overall score, and list findings (blocker: the task is not done or something broke;
important: should be fixed; minor: nice to have), each with a concrete fix, and with the
file (its path in the diff) and line (in the changed version) when it is about a place in
the code. A check that could not run tells you nothing about the change. Then call
submit_evaluation exactly once.

{rubric}"""


class EvaluatorActor(Actor):
    role = "evaluator"

    def on_review_request(self, msg: Envelope, payload: ReviewRequest) -> ReviewResult:
        from shoal.actors.reviewer import review

        return review(payload, self.ctx.home, self.ctx.log)

    def on_eval_request(self, msg: Envelope, payload: EvalRequest) -> EvalResult:
        return evaluate(
            payload,
            self.ctx.home.root / "skills",
            self.ctx.log,
            publish=lambda checks: self.ctx.publish(checks, task_id=msg.task_id),
        )


def evaluate(
    request: EvalRequest,
    skills_home: Path,
    log: logging.Logger,
    publish: Callable[[EvalChecks], None] = lambda checks: None,
    checks_in: str | None = None,
) -> EvalResult:
    """Run the checks, then the judge, on ``request``'s change; ``publish`` gets the checks'
    results once they ran. The evaluator actor and a batch unit both evaluate this way.
    ``checks_in``: run the checks in this checkout of the change instead of ``cwd``."""
    from shoal.evaluation import checks
    from shoal.workspace import snapshots

    diff = snapshots.diff(request.cwd, request.base, request.snapshot)
    results = _run_checks(request, checks_in) if request.run_checks else []
    tests = tests_state(results, request.run_checks)
    outcomes = [_outcome(r) for r in results]
    reports = [o.report() for o in outcomes]
    publish(EvalChecks(iteration=request.iteration, checks=reports, tests=tests))
    rubric = rubric_for(request, skills_home, log)
    judge, usage = _judge(request, rubric, diff, outcomes, tests)
    # A check that could not run says nothing about the change; one that timed out
    # did run (and hung), so it counts as a failure.
    scored = [r for r in results if r.status != "could_not_run" or r.timed_out]
    parts = {
        "test": checks.score(scored, "test"),
        "lint": checks.score(scored, "lint"),
        "judge": _judge_score(judge, rubric),
    }
    return EvalResult(
        iteration=request.iteration,
        score=composite(parts, judge.findings),
        judge=judge,
        checks=outcomes,
        usage=usage,
        tests=tests,
    )


def _run_checks(payload: EvalRequest, where: str | None = None) -> list:
    from shoal.evaluation import checks

    cwd = where or payload.cwd
    found = checks.find(cwd, settings=payload.checks, virtual_env=payload.virtual_env)
    return [checks.run(c, CHECK_TIMEOUT) for c in found if c.name not in payload.skip_checks]


def rubric_for(payload: EvalRequest, skills_home: Path, log: logging.Logger):
    """The rubric the judge uses for ``payload``: by name, else by the task's category,
    from the bundled, the user's and the project's evaluator skills."""
    from shoal.skills.rubrics import load_rubric

    cwd = Path(payload.cwd)
    dirs = [
        skills_home,
        cwd / ".shoal" / "skills",
        cwd / ".agents" / "skills",
        cwd / ".claude" / "skills",
    ]
    warnings: list = []
    category = category_of(payload.description)
    rubric = load_rubric(payload.rubric, category, [d for d in dirs if d.is_dir()], warnings)
    for warning in warnings:
        log.warning("skill: %s", warning)
    return rubric


def _judge(
    payload: EvalRequest,
    rubric,
    diff: str,
    outcomes: list[CheckOutcome],
    tests: TestsState,
) -> tuple[Evaluation, Usage]:
    from shoal.llm.client import complete

    tool = function_tool(
        "submit_evaluation",
        "Submit your evaluation of the change.",
        json_schema(Evaluation),
    )
    steps = "\n".join(f"{i}. {s.title}" for i, s in enumerate(payload.plan.steps, 1))
    checks_text = "\n\n".join(_check_text(o) for o in outcomes)
    checks_text = "\n\n".join(filter(None, [checks_text, _NO_TESTS.get(tests, "")]))
    messages: list[dict] = [
        {"role": "system", "content": SYSTEM.format(rubric=rubric.as_prompt())},
        {
            "role": "user",
            "content": (
                f"Task: {payload.description}\n\nPlan:\n{steps}\n\n"
                f"Diff of this iteration against the start:\n```diff\n"
                f"{clip(diff, _DIFF_LIMIT) or '(no changes)'}\n```\n\nChecks:\n{checks_text}"
            ),
        },
    ]
    config = model_config(payload.model, "evaluator")
    usage = Usage()
    for _ in range(2):
        completion = complete(config, messages, [tool])
        usage = usage + usage_of(completion)
        call = next((c for c in completion.tool_calls if c.name == "submit_evaluation"), None)
        if call is not None:
            try:
                return from_dict(Evaluation, call.arguments), usage
            except InvalidMessage as exc:
                problem = f"invalid submit_evaluation: {exc}"
        else:
            problem = "you did not call submit_evaluation"
        messages.append(completion.to_message())
        for c in completion.tool_calls:
            messages.append({"role": "tool", "tool_call_id": c.id, "content": problem})
        if not completion.tool_calls:
            messages.append({"role": "user", "content": f"{problem}; call it now."})
    failed = Finding(
        severity="blocker",
        title="the judge gave no usable evaluation",
        detail=problem,
        fix="run the task again or use another evaluator model",
    )
    return Evaluation(score=0.0, findings=[failed]), usage


_NO_TESTS = {
    "none_found": "(no tests found: the project has no tests shoal could find, so nothing "
    "but this diff shows whether the change works)",
    "off": "(checks are off for this task: the user chose to run none of the project's "
    "tests or linters)",
    "could_not_run": "(the tests could not run, so they say nothing about this change: "
    "do not take them as passing)",
}


def _check_text(o: CheckOutcome) -> str:
    runner = f" with {o.runner}" if o.runner else ""
    if o.status == "could_not_run":
        return f"### {o.kind} `{o.name}`{runner}: COULD NOT RUN: {o.reason}\n{o.output}"
    return f"### {o.kind} `{o.name}`{runner}: {'passed' if o.passed else 'FAILED'}\n{o.output}"


def _outcome(result) -> CheckOutcome:
    counts = result.counts.model_dump() if result.counts is not None else None
    return CheckOutcome(
        name=result.name,
        kind=result.kind,
        passed=result.passed,
        status=result.status,
        command=result.command,
        runner=result.runner,
        counts=counts,
        duration_s=result.duration_s,
        reason=result.reason,
        output=clip(result.output, _OUTPUT_LIMIT),
    )


def tests_state(results: list, run: bool) -> TestsState:
    """What the tests of an evaluation came to (could_not_run wins over failed: it is the
    one that must stop a judge-only acceptance)."""
    if not run:
        return "off"
    statuses = {r.status for r in results if r.kind == "test"}
    if not statuses:
        return "none_found"
    for state in ("could_not_run", "failed"):
        if state in statuses:
            return state  # type: ignore[return-value]
    return "passed"


_CATEGORIES = {
    "bugfix": ("fix", "bug", "broken", "failing", "crash", "error", "regression"),
    "refactor": ("refactor", "rename", "clean up", "cleanup", "simplify", "extract"),
    "review": ("review",),
    "feature": ("add", "implement", "support", "new ", "create"),
}


def category_of(description: str) -> str | None:
    """A task's category by its words, for picking an evaluator skill (``general`` if none)."""
    text = description.lower()
    for category, words in _CATEGORIES.items():
        if any(w in text for w in words):
            return category
    return None


def _judge_score(judge: Evaluation, rubric) -> float:
    try:
        return rubric.weighted(judge.dimensions) if judge.dimensions else judge.score
    except ValueError:  # no dimension of this rubric was scored
        return judge.score


def composite(parts: dict[str, float | None], findings: list[Finding]) -> float:
    """Weighted mean of the parts that exist; an open blocker caps it."""
    present = {k: v for k, v in parts.items() if v is not None}
    total = sum(WEIGHTS[k] for k in present)
    score = sum(WEIGHTS[k] * v for k, v in present.items()) / total if total else 0.0
    if any(f.severity == "blocker" for f in findings):
        score = min(score, BLOCKER_CAP)
    return round(score, 4)
