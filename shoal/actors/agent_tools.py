"""The tools an executor offers besides the workspace's, each made where its context is.

``finish`` and ``web_fetch`` always, ``get_skill`` when skills were recalled, a team's tools on
team work, ``delegate`` unless the executor runs a subagent, and the approved
MCP servers' tools of the repository. They all go into the iteration's one
Toolbox, which checks and runs them like the workspace tools.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.tools.registry import Tool

if TYPE_CHECKING:
    from shoal.actors.executor import Iteration
    from shoal.tools.toolbox import CallHooks

log = logging.getLogger(__name__)


def extra_tools(loop: Iteration) -> list[Tool]:
    from shoal.actors import delegate, team_tools
    from shoal.agent.tools import finish, get_skill
    from shoal.tools.web import web_fetch

    tools = [finish(), web_fetch(lambda: loop.toolbox.permissions)]
    if loop.context.skills:
        tools.append(get_skill(loop.actor.ctx.home.root / "skills", Path(loop.request.cwd)))
    makers: list[Callable[[Iteration], list[Tool]]] = [
        team_tools.provide,
        delegate.provide,
        _mcp,
    ]
    for make in makers:
        try:
            tools += make(loop)
        except Exception:  # one broken kind must not take the workspace tools away
            log.exception("tools of %s failed; they are left out", make.__module__)
    return tools


def _mcp(loop: Iteration) -> list[Tool]:
    """The repository's approved MCP servers, started for this iteration."""
    from shoal.mcp.tools import start_tools
    from shoal.messages.tasks import ExecEvent

    ctx = loop.actor.ctx

    def notice(text: str) -> None:
        ctx.log.warning("%s", text)
        ctx.publish(
            ExecEvent(iteration=loop.request.iteration, type="text", name="mcp", detail=text),
            task_id=loop.task_id,
        )

    return start_tools(ctx.home, Path(loop.request.cwd), notice, tag=ctx.name)


def tool_hooks(loop: Iteration) -> CallHooks | None:
    """The hooks of the plugins in use in the task's repository, around its tool calls."""
    from shoal.plugins.hooks import for_tools

    try:
        return for_tools(loop.actor.ctx.home, Path(loop.request.cwd), loop.task_id)
    except Exception:  # a broken plugin must not take the tools away
        log.exception("plugins' hooks are left out")
        return None
