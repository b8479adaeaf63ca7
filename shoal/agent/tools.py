"""The tools every task agent has besides the workspace's: ``finish`` and ``get_skill``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shoal.tools.base import ToolArgs, ToolOutput
from shoal.tools.registry import Tool, agent_tool


class FinishArgs(ToolArgs):
    summary: str = ""
    """What you changed and why, in a few sentences."""


class GetSkillArgs(ToolArgs):
    name: str = Field(min_length=1)
    """The skill's name, as listed in your prompt."""


def finish() -> Tool:
    return agent_tool(
        "finish",
        "Call when the task is done, with a short summary of what you changed and why.",
        FinishArgs,
        lambda args: ToolOutput("finished", final=args.summary),
    )


def get_skill(skills_home: Path, project: Path) -> Tool:
    """Loads a skill's body from the user's (``skills_home``) and the project's skills."""

    def load(args: GetSkillArgs) -> tuple[str, bool]:
        from shoal.skills.catalog import discover_skills
        from shoal.skills.selection import get_skill_text

        return get_skill_text(discover_skills(skills_home, project), args.name), True

    return agent_tool(
        "get_skill",
        "Load the full instructions of a skill listed in your prompt.",
        GetSkillArgs,
        load,
        subject=lambda args: args.name,
    )
