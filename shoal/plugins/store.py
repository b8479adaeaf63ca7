"""Installed plugins: where they live, which are on, which are approved, and their parts.

Two scopes, like MCP servers:

- **user**: ``$SHOAL_HOME/plugins/NAME/``, listed in ``$SHOAL_HOME/plugins.json`` (0600);
- **project**: ``<repo>/.shoal/plugins/NAME/``, listed in ``<repo>/.shoal/plugins.json``,
  to commit with the repository.

``add`` copies a folder (or a shallow git clone, without its ``.git``) into place, so the
plugin does not change under shoal's feet; adding a name again replaces it. A project's
plugins come with the repository: none is used until the user approved its exact content
(a hash of every file, kept in :mod:`shoal.approvals`); adding one with ``--scope
project`` is that approval. A disabled plugin stays installed and is not used.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shoal import approvals
from shoal.approvals import write_json
from shoal.paths import Home
from shoal.plugins.manifest import NAME, Manifest, PluginError, inside, load, paths

Scope = Literal["user", "project"]
REGISTRY = "plugins.json"
ROOT_VARS = ("CLAUDE_PLUGIN_ROOT", "SHOAL_PLUGIN_ROOT")
_URL = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")


@dataclass(frozen=True)
class Plugin:
    """One installed plugin as a directory sees it."""

    name: str
    root: Path
    scope: Scope
    manifest: Manifest
    enabled: bool
    approved: bool
    """User plugins are; project plugins once the user approved this exact content."""
    source: str | None = None
    """Where it was added from (a folder or a git URL without credentials)."""

    @property
    def active(self) -> bool:
        return self.enabled and self.approved

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled"
        return "ready" if self.approved else "needs approval"

    def _parts(self, default: str, extra: Any) -> list[Path]:
        found = [self.root / default] if (self.root / default).exists() else []
        where = f"{self.name}: {default}"
        return found + [inside(self.root, p, where) for p in paths(extra)]

    def skill_dirs(self) -> list[Path]:
        return self._parts("skills", self.manifest.skills)

    def agent_paths(self) -> list[Path]:
        """Folders of agent definitions (``*.md``), or single files."""
        return self._parts("agents", self.manifest.agents)

    def command_paths(self) -> list[Path]:
        return self._parts("commands", self.manifest.commands)

    def mcp_servers(self) -> tuple[Path, dict[str, Any]]:
        """The file defining its servers and ``{NAME: definition}``, plugin root filled in."""
        return self._config(self.manifest.mcp_servers, ".mcp.json", "mcpServers")

    def hook_config(self) -> tuple[Path, dict[str, Any]]:
        """The file defining its hooks and ``{EVENT: [matchers]}``."""
        return self._config(self.manifest.hooks, "hooks/hooks.json", "hooks")

    def _config(self, given: Any, default: str, key: str) -> tuple[Path, dict[str, Any]]:
        if isinstance(given, dict):
            return self.root / ".claude-plugin" / "plugin.json", self._filled(given.get(key, given))
        path = (
            inside(self.root, given, self.name) if isinstance(given, str) else self.root / default
        )
        if not path.is_file():
            return path, {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PluginError(f"{path}: not valid JSON ({exc})") from None
        table = data.get(key, data) if isinstance(data, dict) else None
        if not isinstance(table, dict):
            raise PluginError(f"{path}: {key} must be an object")
        return path, self._filled(table)

    def _filled(self, value: Any) -> Any:
        """``${CLAUDE_PLUGIN_ROOT}`` (and ``${SHOAL_PLUGIN_ROOT}``) replaced by the folder."""
        text = json.dumps(value)
        for name in ROOT_VARS:
            text = text.replace("${" + name + "}", json.dumps(str(self.root))[1:-1])
        return json.loads(text)


@dataclass
class Installed:
    plugins: list[Plugin] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """One line per listed plugin that could not be loaded (its folder or manifest)."""

    def get(self, name: str, scope: Scope | None = None) -> list[Plugin]:
        return [p for p in self.plugins if p.name == name and scope in (None, p.scope)]


def project_root(cwd: Path) -> Path:
    """The repository's top directory (or ``cwd`` itself outside git)."""
    from shoal.workspace.git import WorkspaceError, toplevel

    try:
        return toplevel(cwd).resolve()
    except WorkspaceError:
        return Path(cwd).resolve()


def folder(home: Home, root: Path, scope: Scope) -> Path:
    """Where a scope's plugins live."""
    return home.root / "plugins" if scope == "user" else root / ".shoal" / "plugins"


def registry_file(home: Home, root: Path, scope: Scope) -> Path:
    return home.root / REGISTRY if scope == "user" else root / ".shoal" / REGISTRY


def _entries(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PluginError(f"{path}: cannot read it ({exc}); fix or remove the file") from None
    entries = data.get("plugins") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise PluginError(f'{path}: expected {{"plugins": {{NAME: ...}}}}')
    # A name is a folder under the scope's plugins: nothing else (no "..", no "/").
    return {str(k): v for k, v in entries.items() if isinstance(v, dict) and re.match(NAME, k)}


def installed(home: Home, cwd: Path | None) -> Installed:
    """Every plugin of both scopes (user first; without ``cwd`` the user's only), with what
    could not be loaded."""
    root = project_root(cwd) if cwd is not None else home.root
    found = Installed()
    given = approvals.records(home)
    scopes: list[Scope] = ["user", "project"] if cwd is not None else ["user"]
    for scope in scopes:
        try:
            entries = _entries(registry_file(home, root, scope))
        except PluginError as exc:
            found.problems.append(str(exc))
            continue
        for name, entry in entries.items():
            where = folder(home, root, scope) / name
            try:
                manifest = load(where)
            except PluginError as exc:
                found.problems.append(f"plugin {name!r} ({scope}): {exc}")
                continue
            approved = scope == "user" or approval_key(root, name, where) in given
            enabled = entry.get("enabled", True) is not False
            source = entry.get("source")
            found.plugins.append(Plugin(name, where, scope, manifest, enabled, approved, source))
    return found


def active(home: Home, cwd: Path | None) -> list[Plugin]:
    """The plugins in use here: enabled, and approved when they are the project's."""
    return [p for p in installed(home, cwd).plugins if p.active]


def skill_dirs(home: Home, cwd: Path | None) -> list[tuple[Scope, Path]]:
    """Skill folders of the plugins in use, user plugins first."""
    return [(p.scope, d) for p in _safe_active(home, cwd) for d in _safe(p.skill_dirs)]


def agent_dirs(home: Home, cwd: Path | None) -> list[tuple[Scope, Path]]:
    """Agent definitions (folders of ``*.md``, or files) of the plugins in use, for the
    agent loader to read after its own folders of the same scope."""
    return [(p.scope, d) for p in _safe_active(home, cwd) for d in _safe(p.agent_paths)]


def command_dirs(home: Home, cwd: Path) -> list[tuple[Plugin, Path]]:
    return [(p, d) for p in _safe_active(home, cwd) for d in _safe(p.command_paths)]


def _safe_active(home: Home, cwd: Path | None) -> list[Plugin]:
    try:
        return active(home, cwd)
    except OSError:
        return []


def _safe(parts: Any) -> list[Path]:
    try:
        return parts()
    except PluginError:
        return []  # a component path leading out of the plugin: listed by `shoal plugin list`


# --- approval ------------------------------------------------------------------------------


def content_hash(root: Path) -> str:
    """A hash of every file's path and bytes (and every link's target) under ``root``."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]):
            path = Path(dirpath, name)
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            if path.is_symlink():
                digest.update(b"->" + os.readlink(path).encode())
            else:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def approval_key(root: Path, name: str, where: Path) -> str:
    return approvals.key(kind="plugin", project=str(root), name=name, sha256=content_hash(where))


def approve(home: Home, cwd: Path, name: str) -> Plugin:
    """Approve a project plugin as it is now."""
    root = project_root(cwd)
    plugin = _one(installed(home, cwd), name, "project")
    record = {"kind": "plugin", "project": str(root), "name": name}
    approvals.approve(home, approval_key(root, name, plugin.root), record)
    return _one(installed(home, cwd), name, "project")


def _one(found: Installed, name: str, scope: Scope | None) -> Plugin:
    matches = found.get(name, scope)
    if not matches:
        bad = [p for p in found.problems if f"plugin {name!r}" in p]
        if bad:
            raise PluginError(bad[0])
        raise PluginError(f"no plugin {name!r}" + (f" in {scope} scope" if scope else ""))
    if len(matches) > 1:
        raise PluginError(f"{name!r} is in both scopes; say which with --scope user|project")
    return matches[0]


# --- add, remove, enable ---------------------------------------------------------------------


def add(home: Home, cwd: Path, source: str, scope: Scope) -> tuple[Plugin, bool]:
    """Install the plugin at ``source`` (a folder or a git URL) in ``scope``; whether it
    replaced one of the same name."""
    root = project_root(cwd)
    target = folder(home, root, scope)
    if scope == "user":
        home.ensure()
    target.mkdir(parents=True, exist_ok=True, mode=0o700 if scope == "user" else 0o777)
    staging = Path(tempfile.mkdtemp(prefix=".adding-", dir=target))
    try:
        _fetch(source, staging / "plugin")
        manifest = load(staging / "plugin")
        where = target / manifest.name
        replaced = where.exists()
        if replaced:
            shutil.rmtree(where)
        (staging / "plugin").rename(where)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    registry = registry_file(home, root, scope)
    entries = _entries(registry)
    entries[manifest.name] = {
        "source": _shown(source),
        "enabled": True,
        "added_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(registry, {"plugins": entries}, private=scope == "user")
    if scope == "project":
        approve(home, cwd, manifest.name)  # the user typed it: that is the approval
    return _one(installed(home, cwd), manifest.name, scope), replaced


def _fetch(source: str, into: Path) -> None:
    """Copy a folder (without .git; links leading out of it dropped) or clone a git URL."""
    given = Path(source).expanduser()
    if given.is_dir():
        shutil.copytree(given, into, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    elif _URL.match(source) or source.endswith(".git"):
        from shoal.workspace.git import WorkspaceError, git

        try:
            git(into.parent, "clone", "--quiet", "--depth", "1", "--", source, str(into))
        except WorkspaceError as exc:
            raise PluginError(f"cannot clone {_shown(source)}: {exc}") from None
        shutil.rmtree(into / ".git", ignore_errors=True)
    else:
        raise PluginError(f"{source} is neither a folder nor a git URL")
    for path in list(into.rglob("*")):
        if path.is_symlink() and not path.resolve().is_relative_to(into.resolve()):
            path.unlink()


def _shown(source: str) -> str:
    """A source as it may be written down: a folder's absolute path, a URL without
    credentials."""
    if _URL.match(source):
        return re.sub(r"^(\w+://)[^@/]*@", r"\1", source)
    return str(Path(source).expanduser().absolute())


def remove(home: Home, cwd: Path, name: str, scope: Scope | None) -> tuple[Scope, Path]:
    """Uninstall a plugin (a broken one too): its folder and its entry go."""
    root = project_root(cwd)
    scopes: list[Scope] = [scope] if scope else ["user", "project"]
    holders = [s for s in scopes if name in _entries(registry_file(home, root, s))]
    if not holders:
        raise PluginError(f"no plugin {name!r}" + (f" in {scope} scope" if scope else ""))
    if len(holders) > 1:
        raise PluginError(f"{name!r} is in both scopes; say which with --scope user|project")
    which = holders[0]
    registry = registry_file(home, root, which)
    entries = _entries(registry)
    del entries[name]
    write_json(registry, {"plugins": entries}, private=which == "user")
    where = folder(home, root, which) / name
    shutil.rmtree(where, ignore_errors=True)
    return which, where


def set_enabled(home: Home, cwd: Path, name: str, scope: Scope | None, enabled: bool) -> Plugin:
    root = project_root(cwd)
    plugin = _one(installed(home, cwd), name, scope)
    registry = registry_file(home, root, plugin.scope)
    entries = _entries(registry)
    entries[name] = {**entries.get(name, {}), "enabled": enabled}
    write_json(registry, {"plugins": entries}, private=plugin.scope == "user")
    return _one(installed(home, cwd), name, plugin.scope)
