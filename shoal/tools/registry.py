"""The catalogue of tools: names, descriptions, argument models, and their JSON schemas.

The tool and argument names are what the model calls; they are part of the
product and do not change. :func:`schemas` gives them in the OpenAI tool format
(``{"type": "function", "function": {name, description, parameters}}``).
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
    args: type[ToolArgs]
    run: Callable[[Workspace, Any], ToolOutput]
    request: Callable[[Workspace, Any], PermissionRequest]
    """What the call means for permissions; may raise ToolError (e.g. a path outside)."""

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": _clean(self.args.model_json_schema()),
            },
        }


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
