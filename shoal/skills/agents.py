"""Agent definitions: Markdown files with YAML front matter that a project or a user writes once.

A definition names an agent (``name``, ``description``), the only tools it may
use (``tools``), its model (``model``) and a permission mode that can only
narrow the user's (``permission-mode``); its body is its system prompt. The
format is Claude Code's, so its ``.claude/agents/*.md`` files work unchanged:
``tools: Read, Grep, Glob`` (a comma-separated string or a list, Claude Code's
tool names or shoal's), ``model: sonnet | opus | haiku | inherit`` (or any
litellm model), ``permissionMode: acceptEdits``.

Sources, later replacing earlier by name: the user's ``$SHOAL_HOME/agents``,
then the project's ``.shoal/agents`` and ``.claude/agents`` (the order skills
use). A file that cannot be read as a definition is one warning naming the
file and the reason; the others still load.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from shoal.messages.base import from_json, replace, to_json
from shoal.skills.frontmatter import FrontmatterError, split_frontmatter

if TYPE_CHECKING:
    from shoal.messages.tasks import AgentSpec, ModelChoice, TaskOptions

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# Claude Code's tool names, as shoal's tools that do the same (Bash runs git there too).
_CLAUDE_TOOLS: dict[str, tuple[str, ...]] = {
    "read": ("read_file",),
    "write": ("write_file",),
    "edit": ("edit_file",),
    "multiedit": ("edit_file",),
    "notebookedit": ("edit_file",),
    "glob": ("glob",),
    "ls": ("glob",),
    "grep": ("grep",),
    "bash": ("shell", "git"),
    "task": ("delegate", "wait_for_subagents"),
    "agent": ("delegate", "wait_for_subagents"),
    "webfetch": ("web_fetch",),
    "websearch": ("web_search",),
}
# Claude Code tools with nothing to stand for in shoal: left out without a word.
_NO_COUNTERPART = {"todowrite", "todoread", "exitplanmode", "bashoutput", "killshell", "killbash"}
# Claude Code's model aliases, as litellm names.
MODEL_ALIASES = {
    "sonnet": "anthropic/claude-sonnet-4-5",
    "opus": "anthropic/claude-opus-4-1",
    "haiku": "anthropic/claude-haiku-4-5",
}
_MODES = {
    "default": "default",
    "plan": "plan",
    "accept-edits": "accept-edits",
    "acceptedits": "accept-edits",
    "bypass": "bypass",
    "bypasspermissions": "bypass",
    # Claude Code's "don't ask" refuses what would ask: what shoal's actors do in default.
    "dontask": "default",
}


class AgentError(ValueError):
    """No such agent, or a definition that cannot be used; the message is one line."""


class AgentDefinition(BaseModel):
    """One agent definition as loaded."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    tools: list[str] | None = None
    """shoal's names of the only tools it may use (``finish`` is always there); None: all."""
    model: str | None = None
    """A litellm model for its executor role; None: the task's (``inherit``)."""
    permission_mode: str | None = None
    prompt: str = ""
    source: str = ""
    """The file it came from."""
    scope: str = ""
    """user, project (``.shoal/agents``) or claude (``.claude/agents``)."""
    notes: list[str] = Field(default_factory=list)
    """What was left out of the file, e.g. tools shoal has no counterpart for."""

    def spec(self) -> AgentSpec:
        """The definition as it travels to an executor."""
        from shoal.messages.tasks import AgentSpec

        return AgentSpec(
            name=self.name,
            prompt=self.prompt,
            tools=self.tools,
            model=self.model,
            permission_mode=self.permission_mode,  # type: ignore[arg-type]
        )


@dataclass
class AgentCatalog:
    agents: dict[str, AgentDefinition] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """One line per file that could not be loaded (path: reason)."""

    def get(self, name: str) -> AgentDefinition:
        found = self.agents.get(name)
        if found is None:
            known = ", ".join(sorted(self.agents)) or "none"
            raise AgentError(
                f"no agent named {name!r} (the agents here: {known}); "
                "`shoal agents list` shows them and where they come from"
            )
        return found


def sources(home_agents: Path, cwd: Path) -> list[tuple[str, Path]]:
    """The folders definitions are read from, lowest precedence first."""
    root = cwd.resolve()
    return [
        ("user", home_agents),
        ("project", root / ".shoal" / "agents"),
        ("claude", root / ".claude" / "agents"),
    ]


def discover(home_agents: Path, cwd: Path) -> AgentCatalog:
    """Every definition for ``cwd``: the user's, overridden by the project's, by name."""
    catalog = AgentCatalog()
    for scope, folder in sources(home_agents, cwd):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.md")):
            try:
                agent = parse(path.read_text(encoding="utf-8"), path, scope)
            except (OSError, UnicodeDecodeError) as exc:
                catalog.warnings.append(f"{path}: cannot read: {exc}")
            except (FrontmatterError, AgentError) as exc:
                catalog.warnings.append(f"{path}: {exc}")
            else:
                catalog.agents[agent.name] = agent
    return catalog


def find(home_agents: Path, cwd: Path, name: str) -> AgentDefinition:
    return discover(home_agents, cwd).get(name)


def parse(text: str, path: Path, scope: str = "") -> AgentDefinition:
    """The definition a file holds; FrontmatterError or AgentError (one line) if it is broken."""
    meta, body = split_frontmatter(text)
    name = str(meta.get("name") or path.stem).strip()
    if not NAME.match(name):
        raise AgentError(f"name {name!r}: use lowercase letters, digits, '-' and '_' (at most 64)")
    notes: list[str] = []
    tools = _tools(meta.get("tools"), notes)
    prompt = body.strip()
    if not prompt:
        raise AgentError("no system prompt: write it after the front matter")
    return AgentDefinition(
        name=name,
        description=" ".join(str(meta.get("description") or "").split()),
        tools=tools,
        model=_model(meta.get("model")),
        permission_mode=_mode(_first(meta, "permission-mode", "permissionMode", "permission_mode")),
        prompt=prompt,
        source=str(path),
        scope=scope,
        notes=notes,
    )


def _first(meta: dict[str, Any], *keys: str) -> Any:
    return next((meta[k] for k in keys if meta.get(k) is not None), None)


def _tools(value: Any, notes: list[str]) -> list[str] | None:
    """shoal's tool names for a ``tools`` entry; None when it is absent (every tool)."""
    from shoal.tools.registry import AGENT_TOOLS, TOOLS

    if value is None:
        return None
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise AgentError("tools: give a list of tool names, or a comma-separated string")
    names: list[str] = []
    for item in filter(None, items):
        if item.startswith("mcp__"):  # Claude Code's mcp__server__tool is shoal's server__tool
            rest = item.removeprefix("mcp__")
            names.append(rest if "__" in rest else f"{rest}__*")
        elif item in TOOLS or item in AGENT_TOOLS or "__" in item:
            names.append(item)
        elif item.lower() in _CLAUDE_TOOLS:
            names += _CLAUDE_TOOLS[item.lower()]
        elif item.lower() not in _NO_COUNTERPART:
            notes.append(f"tool {item!r} is not one shoal has; left out")
    return list(dict.fromkeys(names))


def _model(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() == "inherit":
        return None
    return MODEL_ALIASES.get(text.lower(), text)


def _mode(value: Any) -> str | None:
    if value is None:
        return None
    key = str(value).strip().lower().replace("_", "-")
    mode = _MODES.get(key) or _MODES.get(key.replace("-", ""))
    if mode is None:
        raise AgentError(
            f"permission-mode {value!r}: use plan, default, accept-edits or bypass "
            "(Claude Code's acceptEdits and bypassPermissions too)"
        )
    return mode


def narrower(mode: str, other: str | None) -> str:
    """The narrower of two permission modes: an agent's never widens the user's."""
    from shoal.trust import MODES

    if other is None or other not in MODES or mode not in MODES:
        return mode
    return other if MODES.index(other) < MODES.index(mode) else mode


def with_model(agent: AgentSpec, choice: ModelChoice) -> ModelChoice:
    """The executor's model for ``agent``: its own (at the role's base URL), else ``choice``."""
    if agent.model is None:
        return choice
    return replace(choice, model=agent.model)


def apply(options: TaskOptions, agent: AgentDefinition | AgentSpec) -> TaskOptions:
    """A task's options with ``agent``: its definition for the executor, its model as the
    executor's (through the role models), its permission mode if it is narrower."""
    spec = agent.spec() if isinstance(agent, AgentDefinition) else agent
    models = dict(options.models)
    current = models.get("executor") or models.get("default")
    if spec.model is not None and current is not None:
        models["executor"] = with_model(spec, current)
    return replace(
        options,
        agent=spec,
        models=models,
        permission_mode=narrower(options.permission_mode, spec.permission_mode),
    )


def member_file(run_dir: Path, team: str, name: str) -> Path:
    """Where a team's agent member finds its definition (written when the team comes up)."""
    return run_dir / "agents" / f"{team}.{name}.json"


def save_member(run_dir: Path, team: str, spec: AgentSpec) -> None:
    import os

    path = member_file(run_dir, team, spec.name)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(to_json(spec).decode())


def load_member(run_dir: Path, role: str) -> AgentSpec | None:
    """The definition of an agent member (role ``executor.NAME@TEAM``); None for others."""
    from shoal.messages.tasks import AgentSpec

    base, _, team = role.partition("@")
    _, _, name = base.partition(".")
    if not name or not team or ":" in base:
        return None
    try:
        return from_json(AgentSpec, member_file(run_dir, team, name).read_text())
    except (OSError, ValueError) as exc:
        raise AgentError(
            f"agent member {role}: its definition is missing or broken ({exc})"
        ) from None


def describe(names: Iterable[str] | None) -> str:
    return "every tool" if names is None else ", ".join(names) or "none but finish"
