"""MCP servers' tools in the executor's tool loop, as ``server__tool``.

:func:`provide` is the executor's provider (``agent_tools.PROVIDERS``): it
starts the approved servers of the task's repository for one iteration, lists
their tools, and returns them as :class:`AgentTool` s whose ``close`` stops the
servers when the iteration ends. Every call goes through the task's permission
rules like a built-in tool: a tool the server marks read-only is a read, any
other is an ``mcp`` call (asks, so it is refused without a terminal, unless an
allow rule or the server's ``allow`` list covers it; denied in plan mode).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.actors.agent_tools import AgentTool
from shoal.mcp.config import McpConfigError, ServerConfig, discover
from shoal.tools.base import ToolOutput
from shoal.tools.output import fit
from shoal.tools.permissions import (
    Asker,
    PermissionRequest,
    Permissions,
    Rule,
    ToolKind,
)

if TYPE_CHECKING:
    from mcp_types import CallToolResult

    from shoal.actors.executor import ToolLoop
    from shoal.mcp.host import McpHost, RemoteTool

MAX_NAME = 64
"""Longest function name the model APIs accept."""


def provide(loop: ToolLoop) -> list[AgentTool]:
    from shoal.mailbox.envelope import ExecEvent

    ctx = loop.actor.ctx

    def notice(text: str) -> None:
        ctx.log.warning("%s", text)
        ctx.publish(
            ExecEvent(iteration=loop.request.iteration, type="text", name="mcp", detail=text),
            task_id=loop.task_id,
        )

    toolbox = loop.toolbox
    return start_tools(
        ctx.home,
        Path(loop.request.cwd),
        toolbox.permissions,
        toolbox.asker,
        toolbox.workspace.outputs_dir,
        notice,
        tag=ctx.name,
    )


def start_tools(
    home: Any,
    cwd: Path,
    permissions: Permissions,
    asker: Asker | None,
    outputs_dir: Path | None,
    notice: Callable[[str], None],
    *,
    tag: str = "",
) -> list[AgentTool]:
    """Start the runnable servers of ``cwd`` and return their tools (none if there are none)."""
    found = discover(home, cwd)
    for problem in found.problems:
        notice(f"MCP configuration skipped: {problem}")
    runnable: dict[str, ServerConfig] = {}
    secrets: set[str] = set()
    for server in found.servers:
        if not server.approved:
            notice(
                f"MCP server {server.name} from {server.source} was not started: it needs "
                f"approval (`shoal mcp approve {server.name}` in {found.project})"
            )
            continue
        try:
            runnable[server.name] = server.server.expanded()
            secrets |= server.server.secrets()
        except McpConfigError as exc:
            notice(f"MCP server {server.name} was not started: {exc}")
    if not runnable:
        return []
    from shoal.mcp.host import McpHost

    host = McpHost(home.root / "run" / "mcp", home.logs / "mcp", cwd, tag, secrets)
    try:
        remote, failures = host.start(runnable)
    except BaseException:
        host.close()
        raise
    for name, why in failures.items():
        notice(f"MCP server {name} failed to start: {why} (its stderr: {home.logs / 'mcp'})")
    if not remote:
        host.close()
        return []
    caller = _Caller(host, permissions, asker, outputs_dir, runnable)
    tools = [
        AgentTool(name=name, schema=_schema(name, tool), run=caller.runner(name, tool))
        for name, tool in _names(remote).items()
    ]
    tools[-1].close = host.close  # once per iteration: every tool shares the host
    return tools


class _Caller:
    """Runs one model call of an MCP tool: permissions, the call, the output fitted."""

    def __init__(
        self,
        host: McpHost,
        permissions: Permissions,
        asker: Asker | None,
        outputs_dir: Path | None,
        servers: dict[str, ServerConfig],
    ) -> None:
        self.host = host
        self.asker = asker
        self.outputs_dir = outputs_dir
        # The servers' allow lists are allow rules; the task's deny rules still win.
        allows = [
            Rule(action="allow", tool=f"{name}__{tool}")
            for name, server in servers.items()
            for tool in server.allow
        ]
        self.permissions = permissions.model_copy(update={"rules": [*permissions.rules, *allows]})

    def runner(self, name: str, tool: RemoteTool) -> Callable[[dict[str, Any]], tuple[str, bool]]:
        return lambda arguments: self.run(name, tool, arguments)

    def run(self, name: str, tool: RemoteTool, arguments: dict[str, Any]) -> tuple[str, bool]:
        if not isinstance(arguments, dict):
            return f"the arguments for {name} must be a JSON object", False
        subject = json.dumps(
            arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
        )
        kind = ToolKind.READ if tool.read_only else ToolKind.MCP
        request = PermissionRequest(name, kind, subject, (), f"{name} {subject[:200]}")
        decision = self.permissions.authorize(request, self.asker)
        if not decision.allowed:
            hint = ""
            if decision.rule is None or decision.rule.action != "deny":
                hint = (
                    f" (to let the agent use it, add the server again with `--allow {tool.name}`)"
                )
            return decision.reason + hint, False
        from shoal.mcp.host import ServerError

        try:
            result = self.host.call(tool.server, tool.name, arguments)
        except (ServerError, TimeoutError) as exc:
            return f"{name} failed: {exc}", False
        output = ToolOutput(render(result), ok=not result.is_error)
        return fit(output, self.outputs_dir, name).text, output.ok


def render(result: CallToolResult) -> str:
    """A tool result as text: its text blocks, else its structured content as JSON."""
    parts: list[str] = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)  # type: ignore[union-attr]
        elif kind in ("image", "audio"):
            size = len(base64.b64decode(block.data, validate=False))  # type: ignore[union-attr]
            parts.append(f"[{kind} {block.mime_type}, {size} bytes]")  # type: ignore[union-attr]
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")  # type: ignore[union-attr]
        elif kind == "resource":
            resource = block.resource  # type: ignore[union-attr]
            text = getattr(resource, "text", None)
            parts.append(text if text is not None else f"[resource {resource.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    text = "\n".join(parts) or "(no output)"
    return f"error: {text}" if result.is_error else text


def _names(tools: list[RemoteTool]) -> dict[str, RemoteTool]:
    """``server__tool`` for each tool, made a valid, unique function name."""
    named: dict[str, RemoteTool] = {}
    for tool in tools:
        base = f"{tool.server}__{re.sub(r'[^A-Za-z0-9_-]', '_', tool.name)}"[:MAX_NAME]
        name, n = base, 1
        while name in named:
            n += 1
            name = f"{base[: MAX_NAME - len(str(n)) - 1]}_{n}"
        named[name] = tool
    return named


def _schema(name: str, tool: RemoteTool) -> dict[str, Any]:
    parameters = dict(tool.input_schema) or {"type": "object"}
    parameters.setdefault("type", "object")
    if parameters["type"] == "object":
        parameters.setdefault("properties", {})
    description = tool.description.strip() or f"The {tool.name} tool."
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"(MCP server {tool.server}) {description}"[:4000],
            "parameters": parameters,
        },
    }
