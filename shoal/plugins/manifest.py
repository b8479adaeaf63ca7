"""A plugin's manifest: ``.claude-plugin/plugin.json`` (Claude Code's), or
``.shoal-plugin/plugin.json`` with the same content.

Only ``name`` is required. Component paths (``skills``, ``agents``, ``commands``: a path
or a list of them; ``hooks``, ``mcpServers``: a path or the configuration itself) add to
the default folders; they are relative (``./extra/agents``) and stay inside the plugin.
Every other key (``version``, ``author``, ``homepage``, ``license``, ``keywords``, ...)
is kept for display and otherwise ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MANIFESTS = (".claude-plugin/plugin.json", ".shoal-plugin/plugin.json")
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class PluginError(Exception):
    """A plugin cannot be used or changed; the message is one line naming it and why."""


Paths = str | list[str] | None


class Manifest(BaseModel):
    """What ``plugin.json`` says."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, use_attribute_docstrings=True)

    name: str = Field(pattern=NAME)
    """Letters, digits, '.', '-' and '_' (Claude Code's kebab-case names fit)."""
    version: str | None = None
    description: str | None = None
    author: str | dict[str, Any] | None = None
    skills: Paths = None
    """More skill folders (each holding NAME/SKILL.md)."""
    agents: Paths = None
    """More agent definition folders or files."""
    commands: Paths = None
    """More command folders or files."""
    hooks: str | dict[str, Any] | None = None
    """A hooks file, or the hooks configuration itself."""
    mcp_servers: str | dict[str, Any] | None = Field(None, alias="mcpServers")
    """An MCP servers file, or ``{NAME: {...}}`` itself."""

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


def manifest_path(root: Path) -> Path | None:
    return next((root / m for m in MANIFESTS if (root / m).is_file()), None)


def load(root: Path) -> Manifest:
    """The manifest of the plugin in ``root``; PluginError (one line) when there is none or
    it is broken."""
    path = manifest_path(root)
    if path is None:
        raise PluginError(f"{root} has no {MANIFESTS[0]} (or {MANIFESTS[1]}): not a plugin")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PluginError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise PluginError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise PluginError(f"{path}: expected a JSON object")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise PluginError(f"{path}: {field}: {first['msg']}") from None
    for key in ("skills", "agents", "commands", "hooks", "mcp_servers"):
        for item in paths(getattr(manifest, key)):
            inside(root, item, f"{path}: {key}")
    return manifest


def paths(value: Any) -> list[str]:
    """The paths a component field names (a configuration object names none)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def inside(root: Path, relative: str, where: str) -> Path:
    """``root / relative``, refused (PluginError) if it leads out of the plugin."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise PluginError(f"{where}: {relative!r} leads outside the plugin")
    return target
