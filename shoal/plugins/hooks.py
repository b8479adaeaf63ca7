"""Plugins' hooks: commands run around the agent's tool calls, in Claude Code's format.

``hooks/hooks.json`` (or the manifest's ``hooks``)::

    {"hooks": {"PreToolUse": [{"matcher": "Write|Edit",
                               "hooks": [{"type": "command", "command": "...", "timeout": 30}]}]}}

shoal runs the events it has, :data:`SUPPORTED`: ``PreToolUse`` before a call the
permissions allowed, ``PostToolUse`` after it ran. Every other event (``Stop``,
``UserPromptSubmit``, ``SessionStart``, ...) is listed by ``shoal plugin list`` as not
supported and never run. A hook gets Claude Code's JSON on stdin (``hook_event_name``,
``tool_name`` as Claude Code names it — ``Bash``, ``Read``, ``Write``, ``Edit``, ... —,
``tool_input``, ``cwd``; ``tool_response`` after the call) and ``CLAUDE_PLUGIN_ROOT``,
``CLAUDE_PROJECT_DIR`` in a small environment (no keys). The matcher is a regular
expression over the tool's Claude Code name or shoal's own name (empty or ``*``: all).

Exit 2 (or ``{"decision": "block"}`` / ``permissionDecision: "deny"`` on stdout) before a
call refuses it, with the hook's output as the reason the model reads; after a call, the
output is added to the result. Any other failure (another exit code, a timeout, a hook
that cannot start) is logged and the call goes on. A hook can refuse a call, never allow
one the permissions refused.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.plugins.manifest import PluginError

if TYPE_CHECKING:
    from shoal.paths import Home
    from shoal.plugins.store import Plugin

log = logging.getLogger(__name__)

SUPPORTED = ("PreToolUse", "PostToolUse")
DEFAULT_TIMEOUT = 60.0
CLAUDE_NAMES = {
    "read_file": "Read",
    "write_file": "Write",
    "edit_file": "Edit",
    "glob": "Glob",
    "grep": "Grep",
    "shell": "Bash",
    "web_fetch": "WebFetch",
}
_ENV_KEPT = ("HOME", "PATH", "SHELL", "TERM", "USER", "LOGNAME", "LANG", "TMPDIR", "TZ")


@dataclass(frozen=True)
class Hook:
    plugin: str
    root: Path
    event: str
    matcher: str
    command: str
    timeout: float

    @property
    def supported(self) -> bool:
        return self.event in SUPPORTED

    def matches(self, tool: str) -> bool:
        if self.matcher in ("", "*"):
            return True
        names = (claude_name(tool), tool)
        try:
            return any(re.fullmatch(self.matcher, n) for n in names)
        except re.error:
            return self.matcher in names


def claude_name(tool: str) -> str:
    """The tool's name in Claude Code (an MCP tool ``server__tool`` is ``mcp__server__tool``)."""
    if "__" in tool:
        return f"mcp__{tool}"
    return CLAUDE_NAMES.get(tool, tool)


def read(plugin: Plugin) -> list[Hook]:
    """Every hook a plugin defines, supported or not; PluginError for a broken file."""
    path, table = plugin.hook_config()
    found = []
    for event, groups in table.items():
        if not isinstance(groups, list):
            raise PluginError(f"{path}: hooks.{event} must be a list")
        for group in groups:
            entries = group.get("hooks", []) if isinstance(group, dict) else None
            if not isinstance(entries, list):
                raise PluginError(f"{path}: hooks.{event}: each entry needs a list of hooks")
            matcher = str(group.get("matcher") or "")
            for entry in entries:
                command = entry.get("command") if isinstance(entry, dict) else None
                if not isinstance(command, str) or entry.get("type", "command") != "command":
                    raise PluginError(f"{path}: hooks.{event}: only command hooks are run")
                timeout = float(entry.get("timeout") or DEFAULT_TIMEOUT)
                found.append(Hook(plugin.name, plugin.root, event, matcher, command, timeout))
    return found


class ToolHooks:
    """The supported hooks of the plugins in use, around one run's tool calls."""

    def __init__(self, hooks: list[Hook], cwd: Path, session: str) -> None:
        self.hooks = [h for h in hooks if h.supported]
        self.cwd = cwd
        self.session = session

    def before(self, name: str, args: Any, request: Any) -> str | None:
        """A refusal for the model, or None to go on."""
        for hook in self._for("PreToolUse", name):
            blocked = self._run(hook, name, args, None)
            if blocked is not None:
                return f"{name} was refused by the {hook.plugin} plugin's hook: {blocked}"
        return None

    def after(self, name: str, args: Any, request: Any, output: Any) -> str | None:
        """What the hooks had to say about the call (added to its result), or None."""
        response = {"output": getattr(output, "text", ""), "ok": getattr(output, "ok", True)}
        notes = [
            f"[{hook.plugin} hook] {said}"
            for hook in self._for("PostToolUse", name)
            if (said := self._run(hook, name, args, response))
        ]
        return "\n".join(notes) or None

    def _for(self, event: str, tool: str) -> list[Hook]:
        return [h for h in self.hooks if h.event == event and h.matches(tool)]

    def _run(self, hook: Hook, tool: str, args: Any, response: dict[str, Any] | None) -> str | None:
        """What the hook says to the model (exit 2 or a block decision), else None."""
        from shoal.process import run

        given = args.model_dump() if hasattr(args, "model_dump") else dict(args or {})
        event = {
            "session_id": self.session,
            "hook_event_name": hook.event,
            "cwd": str(self.cwd),
            "tool_name": claude_name(tool),
            "tool_input": claude_input(tool, given, self.cwd),
            "shoal_tool": tool,
            "shoal_input": given,
        }
        if response is not None:
            event["tool_response"] = response
        with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as stdin:
            json.dump(event, stdin)
            stdin.flush()
            try:
                done = run(
                    f"({hook.command}) < '{stdin.name}'",
                    cwd=self.cwd,
                    timeout=hook.timeout,
                    env=self._env(hook),
                    limit=64 * 1024,
                )
            except OSError as exc:
                log.warning("hook of %s could not start: %s", hook.plugin, exc)
                return None
        said = done.output.strip()
        if done.timed_out or done.returncode not in (0, 2):
            log.warning(
                "hook of %s (%s) failed: exit %s %s",
                hook.plugin,
                hook.event,
                done.exit_code,
                said[:200],
            )
            return None
        if done.returncode == 2:
            return said or "(no reason given)"
        return _decision(said)

    def _env(self, hook: Hook) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEPT or k.startswith("LC_")}
        env.update(
            CLAUDE_PLUGIN_ROOT=str(hook.root),
            SHOAL_PLUGIN_ROOT=str(hook.root),
            CLAUDE_PROJECT_DIR=str(self.cwd),
        )
        return env


def _decision(stdout: str) -> str | None:
    """A block decided in Claude Code's JSON output (exit 0), with its reason."""
    try:
        data = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    specific = data.get("hookSpecificOutput") or {}
    if isinstance(specific, dict) and specific.get("permissionDecision") == "deny":
        return str(specific.get("permissionDecisionReason") or "denied")
    if data.get("decision") == "block":
        return str(data.get("reason") or "blocked")
    return None


def claude_input(tool: str, args: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """A call's arguments as Claude Code's tool would have them (``file_path`` absolute)."""
    out = dict(args)
    if "path" in out and tool in ("read_file", "write_file", "edit_file"):
        out["file_path"] = str((cwd / str(out.pop("path"))).resolve())
    return out


def for_tools(home: Home, cwd: Path, session: str) -> ToolHooks | None:
    """The hooks of the plugins in use in ``cwd``, or None when there are none."""
    from shoal.plugins.store import active

    hooks: list[Hook] = []
    for plugin in active(home, cwd):
        try:
            hooks += read(plugin)
        except PluginError as exc:
            log.warning("hooks of plugin %s left out: %s", plugin.name, exc)
    runnable = [h for h in hooks if h.supported]
    return ToolHooks(runnable, cwd, session) if runnable else None
