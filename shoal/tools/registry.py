"""The one tool type, and the catalogue of the workspace tools.

The tool and argument names are what the model calls; they are part of the
product and do not change. :func:`schemas` gives them in the OpenAI tool format
(``{"type": "function", "function": {name, description, parameters}}``).
Every other tool an agent is offered (``finish``, ``get_skill``, a team's
tools, ``delegate``, MCP servers' tools) is a :class:`Tool` too, made where
its context is (:func:`agent_tool`) and added to the run's
:class:`~shoal.tools.toolbox.Toolbox`, which checks, runs and fits them all alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoal.tools import edit, files, find, git, grep, shell
from shoal.tools.base import ToolArgs, ToolOutput
from shoal.tools.permissions import PermissionRequest, ToolKind, protected
from shoal.tools.workspace import Workspace


@dataclass(frozen=True)
class Tool:
    """One tool the model can call."""

    name: str
    description: str
    args: type[ToolArgs] | None
    """The arguments' model; None: a JSON object checked by the tool itself (``parameters``)."""
    run: Callable[[Workspace, Any], ToolOutput]
    request: Callable[[Workspace, Any], PermissionRequest]
    """What the call means for permissions; may raise ToolError (e.g. a path outside)."""
    parameters: dict[str, Any] | None = None
    """The JSON schema shown to the model when there is no ``args`` model (MCP tools)."""
    close: Callable[[], None] | None = None
    """Called once when the run's toolbox closes (servers to stop, handles to drop)."""
    preapproved: bool = False
    """The user allowed this tool where they configured it (an MCP server's ``allow``
    list): an allow rule for it joins the run's rules; deny rules still win."""

    def schema(self) -> dict[str, Any]:
        parameters = self.parameters
        if self.args is not None:
            parameters = _clean(self.args.model_json_schema())
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters or {"type": "object", "properties": {}},
            },
        }


AGENT_TOOLS = (
    "finish",
    "get_skill",
    "send_message",
    "remember",
    "list_tasks",
    "claim_task",
    "delegate",
    "wait_for_subagents",
    "web_fetch",
)
"""Tools made where their context is (of kind ``agent``, and ``web_fetch``, of kind
``network``): known here so rules can name them."""


def agent_tool(
    name: str,
    description: str,
    args: type[ToolArgs],
    run: Callable[[Any], ToolOutput | tuple[str, bool]],
    *,
    subject: Callable[[Any], str] = lambda args: "",
    close: Callable[[], None] | None = None,
) -> Tool:
    """A tool of kind ``agent`` (it changes no file): ``run`` gets the validated arguments
    and returns a ToolOutput, or (text for the model, ok)."""

    def run_tool(ws: Workspace, parsed: Any) -> ToolOutput:
        out = run(parsed)
        return out if isinstance(out, ToolOutput) else ToolOutput(out[0], ok=out[1])

    def request(ws: Workspace, parsed: Any) -> PermissionRequest:
        shown = subject(parsed)
        return PermissionRequest(name, ToolKind.AGENT, shown, (), f"{name} {shown}".strip())

    return Tool(name, description, args, run_tool, request, close=close)


def known(name: str) -> bool:
    """Whether a permission rule may name ``name``: a tool of shoal's, or an MCP tool."""
    from shoal.tools.names import is_mcp_name

    return name in TOOLS or name in AGENT_TOOLS or is_mcp_name(name)


def _path_request(tool: str, kind: ToolKind, *, write: bool = False):
    def request(ws: Workspace, args: Any) -> PermissionRequest:
        path = ws.resolve(args.path, write=write)
        shown = ws.display(path)
        if write and any(protected(parts) for parts in ws.below_root(args.path, path)):
            summary = f"{tool} {shown} (protected: agent configuration)"
            return PermissionRequest(tool, ToolKind.CONFIG, shown, (str(path),), summary)
        return PermissionRequest(tool, kind, shown, (str(path),), f"{tool} {shown}")

    return request


def _glob_request(ws: Workspace, args: find.GlobArgs) -> PermissionRequest:
    return PermissionRequest("glob", ToolKind.READ, args.pattern, (), f"glob {args.pattern}")


def _grep_request(ws: Workspace, args: grep.GrepArgs) -> PermissionRequest:
    if args.path is None:
        return PermissionRequest("grep", ToolKind.READ, ".", (), f"grep {args.pattern!r}")
    path = ws.resolve(args.path)
    shown = ws.display(path)
    return PermissionRequest(
        "grep", ToolKind.READ, shown, (str(path),), f"grep {args.pattern!r} in {shown}"
    )


def _shell_request(ws: Workspace, args: shell.ShellArgs) -> PermissionRequest:
    return PermissionRequest("shell", ToolKind.EXEC, args.command, (), f"$ {args.command}")


def _git_request(ws: Workspace, args: git.GitArgs) -> PermissionRequest:
    kind = ToolKind.GIT_WRITE if git.is_write(args.args) else ToolKind.READ
    joined = " ".join(args.args)
    return PermissionRequest("git", kind, joined, (), f"git {joined}")


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "read_file",
            files.READ_FILE,
            files.ReadFileArgs,
            files.read_file,
            _path_request("read_file", ToolKind.READ),
        ),
        Tool(
            "write_file",
            files.WRITE_FILE,
            files.WriteFileArgs,
            files.write_file,
            _path_request("write_file", ToolKind.EDIT, write=True),
        ),
        Tool(
            "edit_file",
            edit.EDIT_FILE,
            edit.EditFileArgs,
            edit.edit_file,
            _path_request("edit_file", ToolKind.EDIT, write=True),
        ),
        Tool("glob", find.GLOB, find.GlobArgs, find.glob, _glob_request),
        Tool("grep", grep.GREP, grep.GrepArgs, grep.grep, _grep_request),
        Tool("shell", shell.SHELL, shell.ShellArgs, shell.shell, _shell_request),
        Tool("git", git.GIT, git.GitArgs, git.git, _git_request),
    )
}


def schemas() -> list[dict[str, Any]]:
    """Every tool's schema in the OpenAI tool format, in a stable order."""
    return [tool.schema() for tool in TOOLS.values()]


def _clean(schema: Any) -> Any:
    """A pydantic schema without what only confuses models and strict providers.

    Titles go (they repeat the names), and ``X | None`` becomes plain optional ``X``:
    some providers reject ``anyOf`` with ``null``.
    """
    if isinstance(schema, list):
        return [_clean(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key == "description" and isinstance(value, str):
            out[key] = " ".join(value.split())  # field docstrings wrap across lines
        elif key == "properties":
            out[key] = {name: _clean(prop) for name, prop in value.items()}
        else:
            out[key] = _clean(value)
    options = out.get("anyOf")
    if isinstance(options, list):
        real = [o for o in options if o != {"type": "null"}]
        if len(real) == 1 and len(real) < len(options):
            del out["anyOf"]
            out = {**real[0], **out}
            if out.get("default", ...) is None:
                del out["default"]
    return out
