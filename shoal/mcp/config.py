"""Which MCP servers a directory has, and which of them the user approved.

Two scopes, in Claude Code's ``.mcp.json`` format (``{"mcpServers": {NAME: {...}}}``):

- **user**: ``$SHOAL_HOME/mcp.json`` (0600), servers for every project;
- **project**: ``<repo>/.shoal/mcp.json``, and ``<repo>/.mcp.json`` read too; a
  later file replaces an earlier one's server of the same name (user <
  ``.mcp.json`` < ``.shoal/mcp.json``).

A project file comes with the repository, so its servers never start until the
user approved that exact definition once: the approval is keyed by the project
path, the name and a hash of the whole definition (command, arguments, env,
URL, headers, allowed tools), and kept in shoal's approval store
(:mod:`shoal.approvals`, ``$SHOAL_HOME/approvals.json``). Any change to the
definition needs a new approval.

``${VAR}`` and ``${VAR:-default}`` in the command, arguments, env, URL and
headers are replaced from the environment when the server starts, so secrets
can stay out of the files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shoal import approvals
from shoal.approvals import write_json
from shoal.paths import Home
from shoal.tools.names import SERVER, TOOL

Scope = Literal["user", "project"]

NAME = re.compile(SERVER)
MAX_NAME = 32
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class McpConfigError(Exception):
    """An MCP configuration problem; the message is one line naming the file or server."""


class ServerConfig(BaseModel):
    """One server: a command over stdio, or a URL over streamable HTTP."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    type: Literal["stdio", "http"]
    """The transport; inferred from ``command`` or ``url`` when missing."""
    command: str | None = None
    """stdio: the executable (found on PATH)."""
    args: list[str] = Field(default_factory=list)
    """stdio: its arguments."""
    env: dict[str, str] = Field(default_factory=dict)
    """stdio: variables set for the server (it inherits only HOME, PATH, SHELL, TERM, USER...)."""
    url: str | None = None
    """http: the endpoint."""
    headers: dict[str, str] = Field(default_factory=dict)
    """http: headers sent with every request (e.g. Authorization)."""
    allow: list[str] = Field(default_factory=list)
    """Tools (or ``*``) the agent may call without asking; other non-read-only tools ask."""
    timeout: float = Field(300.0, gt=0)
    """Seconds one tool call may take."""

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        if isinstance(data, dict):
            kind = data.get("type")
            if kind in (None, ""):
                kind = "http" if data.get("url") and not data.get("command") else "stdio"
            elif kind == "streamable-http":
                kind = "http"
            data = {**data, "type": kind}
        return data

    @model_validator(mode="after")
    def _complete(self) -> ServerConfig:
        if self.type == "stdio" and not self.command:
            raise ValueError("a stdio server needs a command")
        if self.type == "http" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError("an http server needs a url starting with http:// or https://")
        for tool in self.allow:
            if tool != "*" and not re.fullmatch(TOOL, tool):
                raise ValueError(f"allow: {tool!r} is not a tool name")
        return self

    def definition(self) -> dict[str, Any]:
        """What the file holds for this server (only what is set)."""
        data: dict[str, Any] = {"type": self.type}
        if self.type == "stdio":
            data.update(command=self.command, args=self.args)
            if self.env:
                data["env"] = self.env
        else:
            data["url"] = self.url
            if self.headers:
                data["headers"] = self.headers
        if self.allow:
            data["allow"] = self.allow
        if self.timeout != 300.0:
            data["timeout"] = self.timeout
        return data

    def describe(self) -> str:
        """One line for a person: the command or URL; env and header values are never shown."""
        if self.type == "stdio":
            text = " ".join([self.command or "", *self.args])
            keys = sorted(self.env)
            return text + (f" (env {', '.join(keys)})" if keys else "")
        keys = sorted(self.headers)
        return f"{self.url}" + (f" (headers {', '.join(keys)})" if keys else "")

    def secrets(self, environ: dict[str, str] | None = None) -> set[str]:
        """Values never to show: env and header values, and every ``${VAR}`` filled in."""
        env = os.environ if environ is None else environ
        texts = [self.command or "", *self.args, self.url or "", *self.env.values()]
        texts += self.headers.values()
        found = {env[m.group(1)] for t in texts for m in _VAR.finditer(t) if env.get(m.group(1))}
        try:
            shown = self.expanded(env)
        except McpConfigError:
            shown = self
        for value in [*shown.env.values(), *shown.headers.values()]:
            found.add(value)
            # "Bearer <token>": the token alone may be quoted too.
            found.update(p for p in value.split() if len(p) >= 6 and p.lower() != "bearer")
        return {s for s in found if len(s) >= 4}

    def expanded(self, environ: dict[str, str] | None = None) -> ServerConfig:
        """A copy with ``${VAR}`` replaced; McpConfigError names a variable that is not set."""
        env = os.environ if environ is None else environ

        def sub(text: str) -> str:
            def one(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                value = env.get(name)
                if value is None or (value == "" and default is not None):
                    if default is None:
                        raise McpConfigError(f"${{{name}}} is used but not set")
                    return default
                return value

            return _VAR.sub(one, text)

        return self.model_copy(
            update={
                "command": sub(self.command) if self.command else None,
                "args": [sub(a) for a in self.args],
                "env": {k: sub(v) for k, v in self.env.items()},
                "url": sub(self.url) if self.url else None,
                "headers": {k: sub(v) for k, v in self.headers.items()},
            }
        )


@dataclass(frozen=True)
class Configured:
    """A server as one directory sees it."""

    name: str
    scope: Scope
    source: Path
    """The file that defines it."""
    server: ServerConfig
    approved: bool
    """User servers are; project servers once the user approved this exact definition."""
    plugin: str | None = None
    """The plugin that brings it (approved with the plugin; ``shoal plugin remove`` removes it)."""

    @property
    def status(self) -> str:
        return "ready" if self.approved else "needs approval"


@dataclass(frozen=True)
class Servers:
    """The servers of a directory, and the entries that could not be read."""

    project: Path
    servers: list[Configured]
    problems: list[str]
    """One line each: a file that is not valid JSON, a server whose entry is invalid."""


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME.fullmatch(name):
        raise McpConfigError(
            f"{name!r} is not a server name: up to {MAX_NAME} letters, digits, '-' and '_' "
            "(no '__'), starting with a letter or digit"
        )
    return name


def user_file(home: Home) -> Path:
    return home.root / "mcp.json"


def project_root(cwd: Path) -> Path:
    """The repository's top directory (or ``cwd`` itself outside git)."""
    from shoal.workspace.git import WorkspaceError, toplevel

    try:
        return toplevel(cwd).resolve()  # known after the first time: asked every iteration
    except WorkspaceError:
        return cwd.resolve()


def project_files(root: Path) -> list[Path]:
    """The project's files, lowest precedence first; shoal writes only the last."""
    return [root / ".mcp.json", root / ".shoal" / "mcp.json"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise McpConfigError(f"{path}: cannot read it ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise McpConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise McpConfigError(f"{path}: expected a JSON object")
    return data


def read_servers(path: Path) -> tuple[dict[str, ServerConfig], list[str]]:
    """The valid servers of one file, and a line for each invalid entry (the rest still load)."""
    data = _read_json(path)
    entries = data.get("mcpServers", {})
    if not isinstance(entries, dict):
        raise McpConfigError(f"{path}: mcpServers must be an object")
    servers, problems = {}, []
    for name, entry in entries.items():
        try:
            check_name(str(name))
            servers[str(name)] = ServerConfig.model_validate(entry)
        except McpConfigError as exc:
            problems.append(f"{path}: {exc}")
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            where = f" {field}:" if field else ""
            message = first["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: server {name!r}:{where} {message}")
    return servers, problems


def discover(home: Home, cwd: Path) -> Servers:
    """Every server ``cwd`` can use, with its scope and approval."""
    root = project_root(cwd)
    given = approvals.records(home)
    found: dict[str, Configured] = {}
    problems: list[str] = []
    layers: list[tuple[Scope, Path]] = [("user", user_file(home))]
    layers += [("project", path) for path in project_files(root)]
    for scope, path in layers:
        try:
            servers, bad = read_servers(path)
        except McpConfigError as exc:
            problems.append(str(exc))
            continue
        problems += bad
        for name, server in servers.items():
            approved = scope == "user" or approval_key(root, name, server) in given
            found[name] = Configured(name, scope, path, server, approved)
        if path == layers[0][1]:  # the plugins' servers: over the user's, under the project's
            found.update(_plugin_servers(home, cwd, problems))
    return Servers(root, list(found.values()), problems)


def _plugin_servers(home: Home, cwd: Path, problems: list[str]) -> dict[str, Configured]:
    """The servers of the plugins in use (a project's plugin is approved as a whole)."""
    from shoal.plugins.manifest import PluginError
    from shoal.plugins.store import active

    found: dict[str, Configured] = {}
    for plugin in active(home, cwd):
        try:
            path, entries = plugin.mcp_servers()
        except PluginError as exc:
            problems.append(str(exc))
            continue
        for name, entry in entries.items():
            try:
                server = ServerConfig.model_validate(entry)
                check_name(str(name))
            except (ValidationError, McpConfigError) as exc:
                problems.append(f"{path}: server {name!r}: {str(exc).splitlines()[0]}")
                continue
            found[str(name)] = Configured(str(name), plugin.scope, path, server, True, plugin.name)
    return found


def approval_key(root: Path, name: str, server: ServerConfig) -> str:
    return approvals.key(project=str(root), name=name, server=server.definition())


def approve(home: Home, root: Path, name: str, server: ServerConfig) -> None:
    record = {"kind": "mcp-server", "project": str(root), "name": name}
    approvals.approve(home, approval_key(root, name, server), record)


def scope_file(home: Home, cwd: Path, scope: Scope) -> Path:
    return user_file(home) if scope == "user" else project_files(project_root(cwd))[-1]


def add(home: Home, cwd: Path, name: str, server: ServerConfig, scope: Scope) -> Path:
    """Add or replace a server in the scope's file; a project server added here is approved."""
    check_name(name)
    path = scope_file(home, cwd, scope)
    data = _read_json(path)
    entries = data.setdefault("mcpServers", {})
    if not isinstance(entries, dict):
        raise McpConfigError(f"{path}: mcpServers must be an object")
    entries[name] = server.definition()
    if scope == "user":
        home.ensure()
    write_json(path, data, private=scope == "user")
    if scope == "project":
        # The user typed this exact definition: that is the approval.
        approve(home, project_root(cwd), name, server)
    return path


def remove(home: Home, cwd: Path, name: str, scope: Scope | None) -> Path:
    """Remove a server from its file; McpConfigError if it is not there, or is in both scopes."""
    scopes: list[Scope] = [scope] if scope else ["user", "project"]
    holders = [
        (s, p)
        for s in scopes
        if name in _read_json(p := scope_file(home, cwd, s)).get("mcpServers", {})
    ]
    if not holders:
        legacy = project_files(project_root(cwd))[0]
        if name in _read_json(legacy).get("mcpServers", {}):
            raise McpConfigError(f"{name!r} is defined in {legacy}, which shoal does not edit")
        raise McpConfigError(f"no MCP server {name!r}" + (f" in {scope} scope" if scope else ""))
    if len(holders) > 1:
        raise McpConfigError(f"{name!r} is in both scopes; say which with --scope user|project")
    which, path = holders[0]
    data = _read_json(path)
    del data["mcpServers"][name]
    write_json(path, data, private=which == "user")
    return path
