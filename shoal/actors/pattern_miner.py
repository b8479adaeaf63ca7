"""The pattern-miner: finds recurring work in the task history and proposes skills for it.

On ``mine.request`` (from ``shoal learn --mine``, and from the scheduler after
every few finished tasks) it reads the history through the orchestrator's
named queries, mines it (:mod:`shoal.learning.mining`), has the orchestrator
record the patterns, and drafts a SKILL.md for each strong task cluster into
``$SHOAL_HOME/skills/proposed/<name>/`` — with the small model when the request
names one, from a template otherwise. A person approves or dismisses them with
``shoal learn``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from shoal.actors.base import Actor
from shoal.actors.llm import function_tool, model_config
from shoal.learning.mining import MinedTask, Pattern, mine
from shoal.mailbox.envelope import Envelope
from shoal.messages.base import to_dict
from shoal.messages.memory import MinedPattern, MineRequest, MineResult, PatternsRecord
from shoal.messages.store import StoreQuery, StoreQueryResult

# A cluster this strong (and at least three tasks) gets a skill proposal.
PROPOSE_CONFIDENCE = 0.5
_STOP = {"the", "a", "an", "in", "of", "to", "and", "for", "on", "with", "is", "it", "this"}

DRAFT = function_tool(
    "submit_skill",
    "Submit the SKILL.md for this kind of task.",
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9-]{3,48}$"},
            "description": {"type": "string"},
            "body": {"type": "string"},
        },
        "required": ["name", "description", "body"],
    },
)


class PatternMinerActor(Actor):
    role = "pattern-miner"

    def on_mine_request(self, msg: Envelope, payload: MineRequest) -> MineResult:
        from shoal.memory.embedder import embedder_from_env

        tasks = self._history()
        patterns = mine(tasks, embedder_from_env().embed)
        proposals = []
        mined = []
        for pattern in patterns:
            name = None
            if pattern.kind == "task_cluster" and pattern.confidence >= PROPOSE_CONFIDENCE:
                name = self._propose(pattern, tasks, payload)
                if name:
                    proposals.append(name)
            mined.append(
                MinedPattern(
                    **{
                        k: v
                        for k, v in to_dict(pattern).items()
                        if k not in ("descriptions", "proposal")
                    },
                    proposal=name or _existing(self._skills_dir(), pattern),
                )
            )
        self.ctx.ask(PatternsRecord(patterns=mined))
        return MineResult(patterns=mined, proposals=proposals)

    def _history(self) -> list[MinedTask]:
        def rows(name: str) -> list[list[Any]]:
            reply = self.ctx.ask(StoreQuery(name=name), timeout=60)
            return reply.rows if isinstance(reply, StoreQueryResult) else []

        tools: dict[str, list[str]] = defaultdict(list)
        for task_id, name in rows("mining.tool_calls"):
            tools[task_id].append(name)
        findings: dict[str, list[str]] = defaultdict(list)
        for task_id, title in rows("mining.findings"):
            findings[task_id].append(title)
        return [
            MinedTask(id=i, description=d, score=s, tools=tools[i], findings=findings[i])
            for i, d, s in rows("mining.tasks")
        ]

    def _skills_dir(self) -> Path:
        return self.ctx.home.root / "skills"

    def _propose(
        self, pattern: Pattern, tasks: list[MinedTask], request: MineRequest
    ) -> str | None:
        skills = self._skills_dir()
        if _existing(skills, pattern):
            return None  # proposed, approved or dismissed before: never nag twice
        members = [t for t in tasks if t.id in set(pattern.task_ids)]
        drafted = self._draft_with_model(pattern, members, request) if request.model else None
        name, description, body = drafted or _template(pattern, members)
        target = skills / "proposed" / name
        target.mkdir(parents=True, exist_ok=True)
        (target / "SKILL.md").write_text(
            # JSON strings are valid YAML: a colon in the description stays text.
            f"---\nname: {name}\ndescription: {json.dumps(description)}\ncategories: [mined]\n"
            f"pattern: {pattern.id}\n---\n\n{body.strip()}\n"
        )
        return name

    def _draft_with_model(
        self, pattern: Pattern, members: list[MinedTask], request: MineRequest
    ) -> tuple[str, str, str] | None:
        from shoal.llm.client import complete
        from shoal.llm.errors import ModelError

        assert request.model is not None
        listing = "\n".join(f"- {t.description} (score {t.score})" for t in members)
        messages = [
            {
                "role": "system",
                "content": "Write a SKILL.md (name, one-line description, and "
                "a markdown body of concrete steps) for this recurring kind of coding task. "
                "Call submit_skill once.",
            },
            {"role": "user", "content": f"Tasks of this kind:\n{listing}"},
        ]
        try:
            completion = complete(model_config(request.model, "small"), messages, [DRAFT])
        except ModelError as exc:
            self.ctx.log.warning("drafting with the model failed, using the template: %s", exc)
            return None
        for call in completion.tool_calls:
            args = call.arguments
            if call.name == "submit_skill" and re.fullmatch(
                r"[a-z0-9-]{3,48}", str(args.get("name", ""))
            ):
                return (
                    args["name"],
                    str(args.get("description", "")).replace("\n", " "),
                    str(args.get("body", "")),
                )
        return None


def skill_name(summary: str) -> str:
    words = [w for w in re.findall(r"[a-z0-9]+", summary.lower()) if w not in _STOP]
    return "-".join(words[:5])[:48].strip("-") or "mined-skill"


def _existing(skills: Path, pattern: Pattern | MinedPattern) -> str | None:
    name = skill_name(pattern.summary)
    for place in (skills / "proposed" / name, skills / name, skills / "dismissed" / name):
        if (place / "SKILL.md").exists():
            return name
    return None


def _template(pattern: Pattern, members: list[MinedTask]) -> tuple[str, str, str]:
    name = skill_name(pattern.summary)
    description = (
        f"Recurring task: {pattern.summary.strip().rstrip('.')} "
        f"(mined from {pattern.samples} similar tasks)"
    )
    tools = [t.tools for t in members if t.tools]
    steps = " -> ".join(max(tools, key=len)) if tools else "read, edit, verify"
    findings = sorted({f for t in members for f in t.findings})
    body = "\n".join(
        [
            f"# {pattern.summary.strip()}",
            "",
            f"shoal saw this kind of task {pattern.samples} times:",
            *[f"- {t.description}" for t in members],
            "",
            f"A sequence of tool calls that worked: {steps}.",
            *(
                [
                    "",
                    "Findings reviewers raised on these tasks (check them before finishing):",
                    *[f"- {f}" for f in findings],
                ]
                if findings
                else []
            ),
        ]
    )
    return name, description, body
