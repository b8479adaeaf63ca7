"""The evaluator: runs the project's own tests and linters, then a judge model with a rubric.

The judge sees the task, the plan, the actual diff of the iteration and the
check outputs, and answers through ``submit_evaluation``. The composite score
weighs tests (0.4), lint (0.1) and the judge (0.5), renormalised over the parts
that exist; an open blocker finding caps it at 0.5, so it can never be accepted.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from shoal.actors.base import Actor
from shoal.actors.llm import clip, function_tool, model_config, usage_of
from shoal.mailbox.envelope import (
    CheckOutcome,
    Envelope,
    EvalRequest,
    EvalResult,
    Evaluation,
    Finding,
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
important: should be fixed; minor: nice to have), each with a concrete fix. Then call
submit_evaluation exactly once.

{rubric}"""


class EvaluatorActor(Actor):
    role = "evaluator"

    def on_eval_request(self, msg: Envelope, payload: EvalRequest) -> EvalResult:
        from shoal.evaluation import checks
        from shoal.workspace import snapshots

        diff = snapshots.diff(payload.cwd, payload.base, payload.snapshot)
        detected = [c for c in checks.detect(payload.cwd) if c.name not in payload.skip_checks]
        results = [checks.run(c, CHECK_TIMEOUT) for c in detected]
        outcomes = [
            CheckOutcome(
                name=r.name, kind=r.kind, passed=r.passed, output=clip(r.output, _OUTPUT_LIMIT)
            )
            for r in results
        ]
        rubric = self._rubric(payload)
        judge, usage = self._judge(payload, rubric, diff, outcomes)
        parts = {
            "test": checks.score(results, "test"),
            "lint": checks.score(results, "lint"),
            "judge": _judge_score(judge, rubric),
        }
        return EvalResult(
            iteration=payload.iteration,
            score=composite(parts, judge.findings),
            judge=judge,
            checks=outcomes,
            usage=usage,
        )

    def _rubric(self, payload: EvalRequest):
        from shoal.skills.rubrics import load_rubric

        cwd = Path(payload.cwd)
        dirs = [
            self.ctx.home.root / "skills",
            cwd / ".shoal" / "skills",
            cwd / ".agents" / "skills",
            cwd / ".claude" / "skills",
        ]
        warnings: list = []
        category = category_of(payload.description)
        rubric = load_rubric(payload.rubric, category, [d for d in dirs if d.is_dir()], warnings)
        for warning in warnings:
            self.ctx.log.warning("skill: %s", warning)
        return rubric

    def _judge(
        self, payload: EvalRequest, rubric, diff: str, outcomes: list[CheckOutcome]
    ) -> tuple[Evaluation, Usage]:
        from shoal.llm.client import complete

        tool = function_tool(
            "submit_evaluation",
            "Submit your evaluation of the change.",
            Evaluation.model_json_schema(),
        )
        steps = "\n".join(f"{i}. {s.title}" for i, s in enumerate(payload.plan.steps, 1))
        checks_text = (
            "\n\n".join(
                f"### {o.kind} `{o.name}`: {'passed' if o.passed else 'FAILED'}\n{o.output}"
                for o in outcomes
            )
            or "(the project has no tests or linters shoal could find)"
        )
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
                    return Evaluation.model_validate(call.arguments), usage
                except ValidationError as exc:
                    problem = f"invalid submit_evaluation: {exc.errors()[0]['msg']}"
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
