"""Task configuration: which model each role uses, and the loop's defaults.

Order: CLI flags > environment > project ``.shoal/config.toml`` > ``$SHOAL_HOME/config.toml``
> defaults. Environment: ``SHOAL_MODEL``, ``SHOAL_BASE_URL``, and per role
``SHOAL_<ROLE>_MODEL`` / ``SHOAL_<ROLE>_BASE_URL`` (planner, executor, evaluator,
small, embedding), each falling back to the universal one. Keys are never part
of the configuration that travels: actors read ``SHOAL_<ROLE>_API_KEY``,
``SHOAL_API_KEY`` or the provider's own variable (``OPENAI_API_KEY``, …) from
their environment.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shoal.mailbox.envelope import ModelChoice, PermissionModeName, PermissionRule, TaskOptions
from shoal.paths import Home
from shoal.settings import SettingsError, validated

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
        from shoal.tools.registry import TOOLS

        rules = []
        for action in ("deny", "ask", "allow"):
            for text in getattr(self, action):
                tool, _, pattern = text.partition(":")
                tool = tool.strip()
                if tool != "*" and tool not in TOOLS and "__" not in tool:
                    raise SettingsError(
                        f"{action} rule {text!r} names no tool; the tools are "
                        f"{', '.join(TOOLS)} (or server__tool for MCP servers)"
                    )
                try:
                    rule = Rule(action=action, tool=tool, pattern=pattern.strip() or None)
                except ValidationError as exc:
                    raise SettingsError(
                        f"{action} rule {text!r}: {exc.errors()[0]['msg']}"
                    ) from None
                rules.append(PermissionRule(**rule.model_dump()))
        return rules


def _file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}; fix or remove the file") from exc
    return {k.replace("-", "_"): v for k, v in data.get("shoal", data.get("loop", {})).items()}


_RULE_LISTS = ("allow", "deny", "ask")


def load(home: Home, cwd: Path, flags: dict[str, Any] | None = None) -> LoopConfig:
    values: dict[str, Any] = {}
    rules: dict[str, list[Any]] = {name: [] for name in _RULE_LISTS}
    layers = [_file(home.config_file), _file(cwd / ".shoal" / "config.toml")]
    for layer in layers:
        for name in _RULE_LISTS:  # rules add up across layers; deny wins in the end
            found = layer.pop(name, [])
            rules[name] += found if isinstance(found, list) else [found]
        values.update(layer)
    for name in LoopConfig.model_fields:
        raw = os.environ.get(f"SHOAL_{name.upper()}")
        if raw and name not in _RULE_LISTS:
            values[name] = raw
    for name, value in (flags or {}).items():
        if name in _RULE_LISTS:
            rules[name] += value or []
        elif value is not None:
            values[name] = value
    values.update(rules)
    return validated(LoopConfig, values, "a flag, or [shoal] in config.toml")


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
