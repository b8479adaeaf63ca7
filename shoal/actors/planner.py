"""The planner: turns a task into a plan with steps (and, for teams, a subtask graph).

It answers through a ``submit_plan`` tool call, validated against ``Plan``; an
invalid plan is sent back to the model once with the validation error.
"""

from __future__ import annotations

import subprocess

from shoal.actors.base import Actor
from shoal.actors.llm import function_tool, model_config, recalled_context, usage_of
from shoal.mailbox.envelope import Envelope
from shoal.messages.base import InvalidMessage, from_dict, json_schema
from shoal.messages.tasks import Plan, PlanRequest, PlanResult, Step, Usage

SYSTEM = """You are the planner of shoal, a coding agent working in a git repository.
Read the task and the repository overview, then call submit_plan exactly once with
concrete, ordered steps an engineer can follow (each with a title and a detail).
Add subtasks (id, title, detail, files they own, depends_on) only when the work
splits into independent parts; otherwise leave subtasks empty."""

TEAM = """

This is a team run: {size} executors work at once, each in its own git worktree.
Split the work into subtasks that touch different files (list the files each owns),
with depends_on only where one subtask needs another's result."""

_ATTEMPTS = 2


class PlannerActor(Actor):
    role = "planner"

    def on_plan_request(self, msg: Envelope, payload: PlanRequest) -> PlanResult:
        from shoal.llm.client import complete

        config = model_config(payload.model, "planner")
        tool = function_tool("submit_plan", "Submit the plan for this task.", json_schema(Plan))
        context = recalled_context(
            self.ctx, payload.description, payload.cwd, "planner", msg.task_id
        ).text
        task = f"Task: {payload.description}\n\nRepository files:\n{_overview(payload.cwd)}"
        if payload.team_size:
            task += TEAM.format(size=payload.team_size)
        messages: list[dict] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{task}\n\n{context}" if context else task},
        ]
        usage = Usage()
        problem = "the model did not call submit_plan"
        for _ in range(_ATTEMPTS):
            completion = complete(config, messages, [tool])
            usage = usage + usage_of(completion)
            call = next((c for c in completion.tool_calls if c.name == "submit_plan"), None)
            if call is not None:
                try:
                    return PlanResult(plan=from_dict(Plan, call.arguments), usage=usage)
                except InvalidMessage as exc:
                    problem = f"submit_plan arguments are invalid: {exc}"
            messages.append(completion.to_message())
            for c in completion.tool_calls:
                messages.append({"role": "tool", "tool_call_id": c.id, "content": problem})
            if not completion.tool_calls:
                messages.append({"role": "user", "content": f"{problem}; call it now."})
        # A plan is needed to go on: fall back to the task itself as the only step.
        self.ctx.log.warning("planner fell back to a one-step plan: %s", problem)
        return PlanResult(plan=Plan(steps=[Step(title=payload.description)]), usage=usage)


def _overview(cwd: str, limit: int = 200) -> str:
    listed = subprocess.run(
        ["git", "-C", cwd, "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    files = listed.stdout.splitlines()
    more = f"\n... and {len(files) - limit} more" if len(files) > limit else ""
    return "\n".join(files[:limit]) + more or "(empty repository)"
