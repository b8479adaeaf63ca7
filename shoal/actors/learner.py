"""The learner: after each task, what should the next similar task know?

Rule-based learnings come from the task record (a regression between
iterations, a plateau, blockers still open at the end, a budget stop); when the
task has a small model, it also asks it for learnings through a
``submit_learnings`` tool call. The answer is a ``memory.remember`` reply: the
orchestrator embeds, deduplicates (reinforcing a near-duplicate instead of
adding one) and stores them.
"""

from __future__ import annotations

from shoal.actors.base import Actor, inline
from shoal.actors.llm import function_tool, model_config
from shoal.mailbox.envelope import Envelope
from shoal.messages.base import InvalidMessage, from_dict
from shoal.messages.memory import (
    LearnRequest,
    MemoryRemember,
    MemoryRememberResult,
    NewLearning,
    TaskRecord,
)

SYSTEM = """You are the learner of shoal, a coding agent. From the record of a finished
task, write at most three short, general learnings that would help a future task of the
same kind (conventions of this repository, pitfalls, what worked). Each has a type
(insight, convention or pitfall), the content (one or two sentences, no task ids) and
your confidence from 0 to 1. Call submit_learnings once; an empty list is fine."""

SUBMIT = function_tool(
    "submit_learnings",
    "Submit the learnings from this task.",
    {
        "type": "object",
        "properties": {
            "learnings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["insight", "convention", "pitfall"]},
                        "content": {"type": "string"},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    "required": ["type", "content", "confidence"],
                },
            }
        },
        "required": ["learnings"],
    },
)


class LearnerActor(Actor):
    role = "learner"

    def on_learn_request(self, msg: Envelope, payload: LearnRequest) -> MemoryRemember:
        record = payload.record
        learnings = rule_based(record)
        if record.model is not None:
            learnings += self._from_model(record)
        return MemoryRemember(learnings=learnings, source_task=record.task_id)

    @inline
    def on_memory_remember_result(self, msg: Envelope, payload: MemoryRememberResult) -> None:
        self.ctx.log.info(
            "stored %d new and reinforced %d learnings", payload.created, payload.reinforced
        )

    def _from_model(self, record: TaskRecord) -> list[NewLearning]:
        from shoal.llm.client import complete
        from shoal.llm.errors import ModelError

        assert record.model is not None
        findings = "\n".join(f"- [{f.severity}] {f.title}: {f.fix}" for f in record.findings)
        text = (
            f"Task: {record.description}\nOutcome: {record.status} ({record.decision}), "
            f"scores by iteration: {record.scores}\nOpen findings:\n{findings or '(none)'}"
        )
        try:
            completion = complete(
                model_config(record.model, "small"),
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
                [SUBMIT],
            )
        except ModelError as exc:
            self.ctx.log.warning("no model-made learnings: %s", exc)
            return []
        out = []
        calls = [c for c in completion.tool_calls if c.name == "submit_learnings"]
        for item in (i for c in calls for i in c.arguments.get("learnings", [])):
            try:
                learning = {
                    "kind": str(item.get("type", "insight")),
                    "content": str(item.get("content", "")),
                    "confidence": float(item.get("confidence", 0.5)),
                }
                out.append(from_dict(NewLearning, learning))
            except (InvalidMessage, ValueError, TypeError, AttributeError):
                continue  # one malformed item does not spoil the others
        return out


def rule_based(record: TaskRecord) -> list[NewLearning]:
    """Learnings that follow from the record alone."""
    task = record.description.strip().rstrip(".")
    out = []
    scores = record.scores
    for n in range(1, len(scores)):
        if scores[n] < scores[n - 1]:
            out.append(
                NewLearning(
                    kind="regression",
                    confidence=0.6,
                    content=(
                        f"In a task like '{task}', iteration {n + 1} scored lower than "
                        f"iteration {n} "
                        f"({scores[n - 1]:.2f} -> {scores[n]:.2f}): prefer small, tested changes "
                        "over rewriting an approach that mostly worked."
                    ),
                )
            )
            break
    if record.decision == "plateau":
        out.append(
            NewLearning(
                kind="plateau",
                confidence=0.5,
                content=(
                    f"In a task like '{task}', refinements stopped improving the score "
                    f"(scores {', '.join(f'{s:.2f}' for s in scores)}): try a different approach "
                    "sooner instead of polishing."
                ),
            )
        )
    for finding in record.findings:
        if finding.severity == "blocker" and record.status != "accepted":
            out.append(
                NewLearning(
                    kind="blocker",
                    confidence=0.7,
                    content=(
                        f"In a task like '{task}', this stayed unresolved: {finding.title}. "
                        f"{finding.fix}".strip()
                    ),
                )
            )
    if record.decision.startswith("budget_"):
        what = record.decision.removeprefix("budget_")
        out.append(
            NewLearning(
                kind="budget",
                confidence=0.5,
                content=(
                    f"A task like '{task}' ran out of its {what} budget after {len(scores)} "
                    "evaluated iteration(s): plan smaller steps or give it a larger budget."
                ),
            )
        )
    return out
