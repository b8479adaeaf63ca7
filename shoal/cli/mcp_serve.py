"""``shoal mcp serve``: shoal as an MCP server over stdio, a client of shoal like the CLI.

It offers shoal's read-only tools confined to one directory (the same
implementations the executor uses, run in plan mode so nothing can write):
``read_file``, ``glob``, ``grep``, ``git_status``, ``git_diff``, ``git_log``; and
``run_task``, which submits a task to the orchestrator like ``shoal run`` and
returns its result as JSON. stdout carries the protocol, so nothing else may
print there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.messages.base import to_dict
from shoal.paths import Home

INSTRUCTIONS = """shoal is a local coding agent. Use read_file, glob, grep and the git_* tools to
look at the repository (read-only), and run_task to have shoal plan, make and check a change
in it; run_task returns when the task is done, with its status, score and summary."""


def serve(root: Path) -> None:
    build(root).run("stdio")


def build(root: Path) -> Any:
    """The MCP server for ``root`` (an ``MCPServer``, not started)."""
    from mcp.server.mcpserver import MCPServer

    from shoal import __version__
    from shoal.tools import Permissions, Toolbox, Workspace
    from shoal.tools.permissions import PermissionMode

    home = Home.resolve()
    toolbox = Toolbox(
        Workspace([root], home.root / "outputs"), Permissions(mode=PermissionMode.PLAN)
    )
    app: Any = MCPServer(
        "shoal", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
    )
    call = _caller(toolbox)
    _file_tools(app, call)
    _git_tools(app, call, toolbox)
    _task_tool(app, home, root)
    return app


def _caller(toolbox: Any) -> Callable[[str, dict[str, Any]], str]:
    """Run one of shoal's tools; a failure becomes the SDK's ToolError (the client sees it)."""
    from mcp.server.mcpserver.exceptions import ToolError

    def call(name: str, arguments: dict[str, Any]) -> str:
        result = toolbox.call(name, {k: v for k, v in arguments.items() if v is not None})
        if not result.ok:
            raise ToolError(result.output)
        return result.output

    return call


def _reads() -> Any:
    from mcp_types import ToolAnnotations

    return ToolAnnotations(readOnlyHint=True, openWorldHint=False)


def _file_tools(app: Any, call: Callable[[str, dict[str, Any]], str]) -> None:
    """``read_file``, ``glob`` and ``grep``, described as they are to the executor's model."""
    from shoal.tools.files import READ_FILE
    from shoal.tools.find import GLOB
    from shoal.tools.grep import GREP

    @app.tool(description=READ_FILE, annotations=_reads())
    def read_file(path: str, offset: int | None = None, limit: int | None = None) -> str:
        return call("read_file", {"path": path, "offset": offset, "limit": limit})

    @app.tool(description=GLOB, annotations=_reads())
    def glob(pattern: str) -> str:
        return call("glob", {"pattern": pattern})

    @app.tool(description=GREP, annotations=_reads())
    def grep(pattern: str, path: str | None = None, glob: str | None = None) -> str:
        return call("grep", {"pattern": pattern, "path": path, "glob": glob})


def _git_tools(app: Any, call: Callable[[str, dict[str, Any]], str], toolbox: Any) -> None:
    """``git_status``, ``git_diff`` and ``git_log``: fixed read-only git commands."""
    from mcp.server.mcpserver.exceptions import ToolError

    from shoal.tools.base import ToolError as ShoalToolError

    def paths(path: str | None) -> list[str]:
        if not path:
            return []
        try:
            return [str(toolbox.workspace.resolve(path))]
        except ShoalToolError as exc:
            raise ToolError(str(exc)) from None

    @app.tool(annotations=_reads())
    def git_status() -> str:
        """The repository's status: branch, staged, changed and untracked files."""
        return call("git", {"args": ["status", "--short", "--branch"]})

    @app.tool(annotations=_reads())
    def git_diff(ref: str | None = None, path: str | None = None, stat: bool = False) -> str:
        """The diff of the work tree against the index, or against `ref` (a commit or branch),
        optionally only for `path`; `stat` gives a summary per file instead."""
        if ref is not None and (not ref.strip() or ref.startswith("-")):
            raise ToolError(f"{ref!r} is not a commit or branch")
        args = ["diff", *(["--stat"] if stat else []), *([ref] if ref else []), "--"]
        return call("git", {"args": [*args, *paths(path)]})

    @app.tool(annotations=_reads())
    def git_log(max_count: int = 20, path: str | None = None) -> str:
        """The latest commits (one line each), optionally only those touching `path`."""
        count = max(1, min(int(max_count), 500))
        args = ["log", "--oneline", "--decorate", f"-n{count}", "--"]
        return call("git", {"args": [*args, *paths(path)]})


def _task_tool(app: Any, home: Home, root: Path) -> None:
    """``run_task``: a whole task through the orchestrator, like ``shoal run``."""
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp_types import ToolAnnotations

    @app.tool(annotations=ToolAnnotations(readOnlyHint=False, openWorldHint=True))
    def run_task(description: str, cwd: str | None = None, iterations: int | None = None) -> str:
        """Have shoal do a coding task in the repository: plan, edit, run its tests and review,
        refining up to `iterations` times (default 3). `cwd` is a directory inside the served
        one (default: it). Returns JSON: task_id, status, decision, score, iterations,
        tokens, cost_usd, files_changed, summary; and ignored, a line naming what the
        repository's unapproved .shoal/config.toml could not set, when it tried."""
        try:
            done = submit(home, _inside(root, cwd), description, iterations)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        return json.dumps(done, indent=1)


def submit(home: Home, workdir: Path, description: str, iterations: int | None) -> dict[str, Any]:
    """Run one task through the orchestrator and return its ``task.done`` as a dict."""
    from shoal.client import ClientError, run_task
    from shoal.settings import SettingsError
    from shoal.submission import submission

    try:
        prepared = submission(
            home,
            description,
            workdir,
            {"iterations": iterations},
            no_model="set SHOAL_MODEL for `shoal mcp serve`",
        )
    except SettingsError as exc:
        raise ValueError(str(exc)) from None
    task = prepared.task
    if prepared.notice:  # stderr is the MCP client's log of this server
        sys.stderr.write(prepared.notice + "\n")
    try:
        done = run_task(home, task)
    except ClientError as exc:
        raise ValueError(f"the task could not be submitted: {exc}") from None
    result = to_dict(done)
    if prepared.ignored:
        result["ignored"] = prepared.notice
    return result


def _inside(root: Path, cwd: str | None) -> Path:
    target = (root / cwd).resolve() if cwd else root
    if target != root and root not in target.parents:
        raise ValueError(f"cwd {cwd!r} is outside {root}; use a directory inside it")
    if not target.is_dir():
        raise ValueError(f"cwd {cwd!r} is not a directory")
    return target
