"""MCP servers' tools for an agent's toolbox, as ``server__tool``.

:func:`start_tools` starts the approved servers of a repository, lists their
tools and returns them as :class:`~shoal.tools.registry.Tool` s whose ``close``
stops the servers when the run's toolbox closes. The toolbox checks their
calls like any other: a tool the server marks read-only is a read, any other
is an ``mcp`` call (asks, so it is refused without a terminal, unless an allow
rule or the server's ``allow`` list covers it; denied in plan mode).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.mcp.config import McpConfigError, ServerConfig, discover
from shoal.tools.base import ToolOutput
from shoal.tools.permissions import PermissionRequest, ToolKind
from shoal.tools.registry import Tool

if TYPE_CHECKING:
    from mcp_types import CallToolResult

    from shoal.mcp.host import McpHost, RemoteTool
    from shoal.tools.workspace import Workspace

MAX_NAME = 64
"""Longest function name the model APIs accept."""


def start_tools(
    home: Any, cwd: Path, notice: Callable[[str], None], *, tag: str = ""
) -> list[Tool]:
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
    tools = [_tool(host, name, tool, runnable) for name, tool in _names(remote).items()]
    # Closed once when the run ends: every tool shares the host.
    tools[-1] = dataclasses.replace(tools[-1], close=host.close)
    return tools


def _tool(host: McpHost, name: str, tool: RemoteTool, servers: dict[str, ServerConfig]) -> Tool:
    """``tool`` of ``host`` as a Tool named ``name``."""
    kind = ToolKind.READ if tool.read_only else ToolKind.MCP
    allowed = servers[tool.server].allow
    hint = f" (to let the agent use it, add the server again with `--allow {tool.name}`)"

    def request(ws: Workspace, arguments: dict[str, Any]) -> PermissionRequest:
        subject = json.dumps(
            arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
        )
        return PermissionRequest(name, kind, subject, (), f"{name} {subject[:200]}", hint=hint)

    def run(ws: Workspace, arguments: dict[str, Any]) -> ToolOutput:
        from shoal.mcp.host import ServerError

        try:
            result = host.call(tool.server, tool.name, arguments)
        except (ServerError, TimeoutError) as exc:
            return ToolOutput(f"{name} failed: {exc}", ok=False)
        return ToolOutput(render(result), ok=not result.is_error)

    schema = _schema(name, tool)["function"]
    return Tool(
        name,
        schema["description"],
        None,
        run,
        request,
        parameters=schema["parameters"],
        preapproved="*" in allowed or tool.name in allowed,
    )


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
