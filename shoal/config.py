"""Task configuration: which model each role uses, and the loop's defaults.

Order: CLI flags > environment > project ``.shoal/config.toml`` > ``$SHOAL_HOME/config.toml``
> defaults. Permission rules add up across all of them. A project file comes with
the repository: until the user approves it (``shoal config approve``), only what
narrows the user's settings applies (:mod:`shoal.trust`), and :func:`resolve` says
what was ignored. Environment: ``SHOAL_MODEL``, ``SHOAL_BASE_URL``, and per role
``SHOAL_<ROLE>_MODEL`` / ``SHOAL_<ROLE>_BASE_URL`` (planner, executor, evaluator,
small, embedding), each falling back to the universal one. Keys are never part
of the configuration that travels: actors read ``SHOAL_<ROLE>_API_KEY``,
``SHOAL_API_KEY`` or the provider's own variable (``OPENAI_API_KEY``, …) from
their environment.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shoal.messages.tasks import ModelChoice, PermissionModeName, PermissionRule, TaskOptions
from shoal.paths import Home
from shoal.settings import ConfigFile, SettingsError, config_file, validated

if TYPE_CHECKING:
    from shoal.providers.choice import AutoChoice

ROLES = ("planner", "executor", "evaluator", "small", "embedding")
# Variables that decide which model an actor calls and how; the orchestrator's
# actors must have been started with the same values as the CLI asking for work.
_MODEL_ENV_PREFIXES = (
    "OPENAI_",
    "ANTHROPIC_",
    "GEMINI_",
    "AZURE_",
    "OPENROUTER_",
    "MISTRAL_",
    "GROQ_",
    "DEEPSEEK_",
    "OLLAMA_",
    "TOGETHER",
    "XAI_",
    "AWS_",
)


DEFAULT_BUDGET_USD = 10.0
DEFAULT_BUDGET_TOKENS = 5_000_000
DEFAULT_TIMEOUT = 3600.0


class LoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    """Model for every role without its own (a litellm model string, e.g. ``openai/gpt-4o``)."""
    base_url: str | None = None
    """API base for every role without its own."""
    planner_model: str | None = None
    executor_model: str | None = None
    evaluator_model: str | None = None
    small_model: str | None = None
    embedding_model: str | None = None
    planner_base_url: str | None = None
    executor_base_url: str | None = None
    evaluator_base_url: str | None = None
    small_base_url: str | None = None
    embedding_base_url: str | None = None
    iterations: int = Field(3, ge=1, le=50)
    quality: float = Field(0.8, ge=0, le=1)
    # Circuit breakers, always on: generous defaults, and only positive values (no "off").
    budget_usd: float = Field(DEFAULT_BUDGET_USD, gt=0)
    """Cost at which a task stops (counted for models litellm has prices for)."""
    budget_tokens: int = Field(DEFAULT_BUDGET_TOKENS, gt=0)
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    """Wall-clock seconds a task may run."""
    permission_mode: PermissionModeName = "accept-edits"
    allow: list[str] = Field(default_factory=list)
    """Permission rules, each ``TOOL`` or ``TOOL:PATTERN`` (e.g. ``shell:pytest *``)."""
    deny: list[str] = Field(default_factory=list)
    ask: list[str] = Field(default_factory=list)

    def models(self) -> dict[str, ModelChoice]:
        chosen = {}
        for role in ROLES:
            model = getattr(self, f"{role}_model") or self.model
            if model:
                base = getattr(self, f"{role}_base_url") or self.base_url
                chosen[role] = ModelChoice(model=model, base_url=base)
        return chosen

    def task_options(self) -> TaskOptions:
        return TaskOptions(
            iterations=self.iterations,
            quality=self.quality,
            budget_usd=self.budget_usd,
            budget_tokens=self.budget_tokens,
            timeout=self.timeout,
            permission_mode=self.permission_mode,
            permission_rules=self.rules(),
            models=self.models(),
        )

    def rules(self) -> list[PermissionRule]:
        """The rules, checked: a typo in a rule must never let a call through silently."""
        if not (self.deny or self.ask or self.allow):
            return []  # the tool registry imports every tool: ~30 ms of each CLI start
        from pydantic import ValidationError

        from shoal.tools.permissions import Rule
        from shoal.tools.registry import AGENT_TOOLS, TOOLS, known

        rules = []
        for action in ("deny", "ask", "allow"):
            for text in getattr(self, action):
                tool, _, pattern = text.partition(":")
                tool = tool.strip()
                if tool != "*" and not known(tool) and "__" not in tool:
                    raise SettingsError(
                        f"{action} rule {text!r} names no tool; the tools are "
                        f"{', '.join([*TOOLS, *AGENT_TOOLS])} (or server__tool for MCP servers)"
                    )
                try:
                    rule = Rule(action=action, tool=tool, pattern=pattern.strip() or None)
                except ValidationError as exc:
                    raise SettingsError(
                        f"{action} rule {text!r}: {exc.errors()[0]['msg']}"
                    ) from None
                rules.append(PermissionRule(**rule.model_dump()))
        return rules


def _loop_table(read: ConfigFile) -> dict[str, Any]:
    """The ``[shoal]`` (or ``[loop]``) settings of a config file; other tables are not loop
    settings (``[orchestrator]``, a project's ``[checks]``) and are left alone."""
    table = read.table("shoal") if "shoal" in read.tables else read.table("loop")
    return {k.replace("-", "_"): v for k, v in table.items()}


_RULE_LISTS = ("allow", "deny", "ask")
_FIELDS = LoopConfig.model_fields
Source = Literal["default", "user", "project", "environment", "flag", "auto"]


@dataclass(frozen=True)
class ProjectFile:
    """The repository's ``.shoal/config.toml`` as this load found it."""

    path: Path
    approved: bool
    """The user approved this exact content (``shoal config approve``): all of it applies."""
    changed: bool
    """Not approved, but another content of it was: it changed since the user approved it."""
    ignored: list[str]
    """One phrase per setting left out because the file is not approved (empty if none)."""


@dataclass(frozen=True)
class Resolved:
    """The loop's configuration, where each value came from, and what a project file lost."""

    config: LoopConfig
    sources: dict[str, Source]
    """Per setting (rules apart): the layer its value came from."""
    rules: list[tuple[str, str, Source]]
    """Every rule as ``(action, "TOOL[:PATTERN]", source)``, in the order they were read."""
    project: ProjectFile | None
    auto: AutoChoice | None = None
    """Models picked from the provider keys present because none was set (``auto`` sources)."""
    no_auto: tuple[str, ...] = ()
    """Why no model could be picked when none was set (one phrase per way tried)."""

    @property
    def auto_line(self) -> str | None:
        """The one line saying which models were picked for which roles, and why."""
        if self.auto is None:
            return None
        roles = [
            r
            for r in ("planner", "executor", "evaluator")
            if not getattr(self.config, f"{r}_model")
        ]
        if self.sources.get("small_model") == "auto":
            roles.append("small")
        return self.auto.line(roles)

    @property
    def ignored(self) -> list[str]:
        return self.project.ignored if self.project else []

    def notice(self, here: Path | None = None) -> str | None:
        """The one line that tells the user what was ignored and how to trust the file."""
        if not self.project or not self.project.ignored:
            return None
        why = "changed since you approved it" if self.project.changed else "not approved"
        folder = self.project.path.parent.parent
        command = "shoal config approve"
        if here is None or here.resolve() != folder:
            command += f" {shlex.quote(str(folder))}"
        return (
            f"shoal: ignored in {self.project.path} ({why}): {', '.join(self.project.ignored)}; "
            f"run `{command}` to trust this file"
        )


def project_file(cwd: Path) -> Path:
    """Where a directory's own settings are: ``<cwd>/.shoal/config.toml``."""
    return cwd.resolve() / ".shoal" / "config.toml"


def load(home: Home, cwd: Path, flags: dict[str, Any] | None = None) -> LoopConfig:
    return resolve(home, cwd, flags).config


def resolve(home: Home, cwd: Path, flags: dict[str, Any] | None = None) -> Resolved:
    """Every layer merged (see the module docstring); a project file narrows only, unless
    approved (see :mod:`shoal.trust`)."""
    user = _loop_table(config_file(home.config_file))
    layers: list[tuple[Source, dict[str, Any]]] = [("user", user)]
    project, values = _project(home, cwd, user)
    if project is not None:
        layers.append(("project", values))
    env = {
        name: raw
        for name in LoopConfig.model_fields
        if name not in _RULE_LISTS and (raw := os.environ.get(f"SHOAL_{name.upper()}"))
    }
    layers += [("environment", env), ("flag", dict(flags or {}))]
    merged: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    rules: list[tuple[str, str, Source]] = []
    for source, layer in layers:
        for name, value in layer.items():
            if value is None:
                continue
            if name in _RULE_LISTS:  # rules add up across layers; deny wins in the end
                items = value if isinstance(value, list) else [value]
                rules += [(name, item, source) for item in items]
            else:
                merged[name] = value
                sources[name] = source
    for name in _RULE_LISTS:
        merged[name] = [text for action, text, _ in rules if action == name]
    auto, no_auto = _auto(home, merged, sources)
    config = validated(LoopConfig, merged, "a flag, or [shoal] in config.toml")
    return Resolved(config, sources, rules, project, auto, tuple(no_auto))


def _auto(
    home: Home, merged: dict[str, Any], sources: dict[str, Source]
) -> tuple[AutoChoice | None, list[str]]:
    """With no model set anywhere, one picked from the provider keys present (see
    :func:`shoal.providers.choice.choose`), for every role without its own model."""
    if any(merged.get(f) for f in ("model", "planner_model", "executor_model", "evaluator_model")):
        return None, []  # someone chose: roles they left out are not filled behind their back
    from shoal.providers.choice import choose

    auto, failed = choose(home)
    if auto is None:
        return None, failed
    merged["model"], sources["model"] = auto.strong, "auto"
    if not merged.get("small_model"):
        merged["small_model"], sources["small_model"] = auto.small, "auto"
    if auto.base_url and not merged.get("base_url"):
        merged["base_url"], sources["base_url"] = auto.base_url, "auto"
    return auto, failed


def _project(
    home: Home, cwd: Path, user: dict[str, Any]
) -> tuple[ProjectFile | None, dict[str, Any]]:
    """The project file and the settings of it that apply."""
    from shoal import approvals, trust

    path = project_file(cwd)
    read = config_file(path)
    if not read.exists:
        return None, {}
    values = _loop_table(read)
    if approvals.approved(home, approvals.file_key(path, read.data)):
        return ProjectFile(path, approved=True, changed=False, ignored=[]), values
    defaults = {n: f.get_default(call_default_factory=True) for n, f in _FIELDS.items()}
    kept, ignored = trust.narrow(values, {**defaults, **user})
    changed = approvals.approved_before(home, path)
    return ProjectFile(path, approved=False, changed=changed, ignored=ignored), kept


def api_key(role: str) -> str | None:
    """The key an actor uses for ``role``; None lets litellm find the provider's variable."""
    return os.environ.get(f"SHOAL_{role.upper()}_API_KEY") or os.environ.get("SHOAL_API_KEY")


def model_env_fingerprint(env: dict[str, str] | None = None) -> str:
    """A hash of the variables that decide model access (the values never leave the process)."""
    env = dict(os.environ) if env is None else env
    items = sorted(
        (k, v)
        for k, v in env.items()
        if k.startswith(_MODEL_ENV_PREFIXES)
        or (k.startswith("SHOAL_") and k.endswith(("MODEL", "BASE_URL", "API_KEY")))
        or k in ("SHOAL_BACKEND", "SHOAL_RAY_ADDRESS")
    )
    return hashlib.sha256(repr(items).encode()).hexdigest()[:16]
