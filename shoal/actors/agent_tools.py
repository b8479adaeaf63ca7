"""Tools the executor offers besides the workspace tools: teams, delegation, MCP servers.

Each provider is a function ``provide(loop) -> list[AgentTool]`` named here by
import path, so nothing it needs is imported until an executor runs. A
provider returns no tools when they do not apply (no team, no MCP servers).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.actors.executor import ToolLoop

log = logging.getLogger(__name__)

PROVIDERS: list[str] = [
    "shoal.actors.team_tools:provide",
    "shoal.actors.delegate:provide",
    "shoal.mcp.tools:provide",
]
"""``module:function`` of every provider, in the order their tools are listed."""


@dataclass
class AgentTool:
    name: str
    schema: dict[str, Any]
    """The OpenAI function-tool schema the model sees."""
    run: Callable[[dict[str, Any]], tuple[str, bool]]
    """Arguments in, (text for the model, ok) out; must not raise for bad input."""
    close: Callable[[], None] | None = None
    """Called once when the iteration ends (servers to stop, handles to drop)."""


def provide(loop: ToolLoop) -> list[AgentTool]:
    tools: list[AgentTool] = []
    for path in PROVIDERS:
        module, _, attr = path.partition(":")
        try:
            tools.extend(getattr(importlib.import_module(module), attr)(loop))
        except Exception:  # one broken provider must not take the workspace tools away
            log.exception("tool provider %s failed; its tools are left out", path)
    return tools
