"""Which provider and model to use when nobody said, and whether a model name exists.

- :func:`choose`: with no model configured, the first provider in :data:`PROVIDERS`
  order whose key is in the environment (an OpenAI-compatible server named by
  ``SHOAL_BASE_URL`` first, an Ollama server named by ``OLLAMA_API_BASE`` last)
  gives a strong model for the planner, executor and evaluator and a small one for
  the learner: the first of the provider's preferences that its list holds.
- :func:`check`: a model name not on the list that serves it (litellm's list for
  the providers whose list is complete, the server's own ``/models`` when a base
  URL sends the model to a server) comes back with the closest names; the caller
  refuses it when there are some (a typo) and only notes it when there are none.

What ``shoal models`` lists is :mod:`shoal.providers.catalogue`.

Keys are read from the environment to probe a server and are never stored or shown.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from shoal.paths import Home
from shoal.providers import lists

CHAT_MODES = frozenset({"chat", "responses", "completion"})
CHOICE_MAX_AGE = 3600.0
"""A server's cached list older than this is asked again before choosing from it."""
_NOT_CHAT = re.compile(r"embed|whisper|tts|dall-e|moderation|rerank|transcribe|image", re.I)
_SMALL = re.compile(r"mini|small|haiku|flash|lite|nano|tiny|instant|\b[1-8]b\b|:[1-8]b", re.I)


@dataclass(frozen=True)
class Provider:
    """A provider shoal can pick by itself, and how to find out what it offers."""

    name: str
    """litellm's prefix (``openai`` in ``openai/gpt-4o``)."""
    keys: tuple[str, ...]
    """Variables holding its key; any one set makes it available."""
    strong: tuple[str, ...] = ()
    """Models for the planner, executor and evaluator, best first."""
    small: tuple[str, ...] = ()
    """Models for the learner and summaries, best first."""
    base_env: tuple[str, ...] = ()
    """Variables naming a server of its API (litellm reads them too)."""
    api: str | None = None
    """Its own OpenAI-compatible API base, asked by ``shoal models --refresh``."""
    checked: bool = False
    """litellm's list of it is complete: a name not on it (nor on its API's) is refused."""


PROVIDERS: tuple[Provider, ...] = (
    Provider(
        "anthropic",
        ("ANTHROPIC_API_KEY",),
        ("claude-sonnet-4-5", "claude-sonnet-4-0", "claude-3-7-sonnet-latest"),
        ("claude-haiku-4-5", "claude-3-5-haiku-latest"),
        checked=True,
    ),
    Provider(
        "openai",
        ("OPENAI_API_KEY",),
        ("gpt-5", "gpt-4.1", "gpt-4o"),
        ("gpt-5-mini", "gpt-4.1-mini", "gpt-4o-mini"),
        base_env=("OPENAI_BASE_URL", "OPENAI_API_BASE"),
        api="https://api.openai.com/v1",
        checked=True,
    ),
    Provider(
        "gemini", ("GEMINI_API_KEY",), ("gemini-2.5-pro",), ("gemini-2.5-flash",), checked=True
    ),
    Provider(
        "xai",
        ("XAI_API_KEY",),
        ("grok-4", "grok-code-fast-1"),
        ("grok-3-mini", "grok-code-fast-1"),
        api="https://api.x.ai/v1",
        checked=True,
    ),
    Provider(
        "deepseek",
        ("DEEPSEEK_API_KEY",),
        ("deepseek-chat",),
        ("deepseek-chat",),
        api="https://api.deepseek.com/v1",
        checked=True,
    ),
    Provider(
        "mistral",
        ("MISTRAL_API_KEY",),
        ("mistral-large-latest", "codestral-latest"),
        ("mistral-small-latest",),
        api="https://api.mistral.ai/v1",
        checked=True,
    ),
    Provider(
        "groq",
        ("GROQ_API_KEY",),
        ("llama-3.3-70b-versatile", "openai/gpt-oss-120b"),
        ("llama-3.1-8b-instant", "openai/gpt-oss-20b"),
        api="https://api.groq.com/openai/v1",
    ),
    Provider(
        "openrouter",
        ("OPENROUTER_API_KEY",),
        ("anthropic/claude-sonnet-4.5", "openai/gpt-4o"),
        ("anthropic/claude-haiku-4.5", "openai/gpt-4o-mini"),
        api="https://openrouter.ai/api/v1",
    ),
    Provider("ollama_chat", (), base_env=("OLLAMA_API_BASE",)),
)
BY_NAME = {p.name: p for p in PROVIDERS}
ALIASES = {"ollama": "ollama_chat"}  # one server, two litellm prefixes
_ALL_STRONG = tuple(m for p in PROVIDERS for m in p.strong)
_ALL_SMALL = tuple(m for p in PROVIDERS for m in p.small)


def provider_of(model: str) -> tuple[str | None, str]:
    """``("openai", "gpt-4o")`` for ``openai/gpt-4o``; no provider for a bare name."""
    prefix, slash, name = model.partition("/")
    return (prefix, name) if slash else (None, model)


def key_for(provider: str | None, role: str | None = None) -> str | None:
    """The key a request for ``role`` on ``provider`` would carry (read, never kept)."""
    names = [f"SHOAL_{role.upper()}_API_KEY"] if role else []
    names.append("SHOAL_API_KEY")
    found = BY_NAME.get(ALIASES.get(provider or "", provider or ""))
    names += list(found.keys) if found else []
    return lists.environ_value(*names)


def endpoint_of(provider: str | None, base_url: str | None) -> str | None:
    """The OpenAI-compatible API base that lists the models a request would reach, if one
    does: the role's base URL, or the provider's server from its variables (Ollama:
    ``OLLAMA_API_BASE``, else localhost:11434)."""
    provider = ALIASES.get(provider or "", provider)
    if provider not in ("openai", "ollama_chat", None):
        return None  # another API's format: its server is not asked
    if provider == "ollama_chat":
        base = base_url or lists.environ_value("OLLAMA_API_BASE") or "http://localhost:11434"
        return base.rstrip("/").removesuffix("/v1") + "/v1"
    if base_url:
        return base_url
    return lists.environ_value(*BY_NAME["openai"].base_env) if provider == "openai" else None


# --- the check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Unknown:
    """A model name that the list serving it does not have."""

    model: str
    listed_by: str
    """Whose list: ``litellm's list of openai models``, ``the server at URL``."""
    suggestions: list[str] = field(default_factory=list)

    def message(self, origin: str | None = None) -> str:
        where = f" ({origin})" if origin else ""
        hint = f"; did you mean {self.suggestions[0]}?" if self.suggestions else ""
        if not self.suggestions:
            return f"unknown model {self.model}{where}: not in {self.listed_by}"
        provider, _ = provider_of(self.model)
        listing = f"shoal models --provider {provider}" if provider else "shoal models"
        return (
            f"unknown model {self.model}{where}: not in {self.listed_by}{hint} "
            f"(`{listing}` lists them, with --refresh asks the provider too; "
            "SHOAL_MODEL_CHECK=off skips this check)"
        )


def check(home: Home, model: str, base_url: str | None, role: str | None = None) -> Unknown | None:
    """None when ``model`` is known, or when nothing can tell (no list, server down)."""
    if os.environ.get("SHOAL_MODEL_CHECK", "").lower() in ("off", "0", "false", "no"):
        return None
    provider, name = provider_of(model)
    if name.startswith("ft:"):
        return None  # a fine-tuned model: only its owner's account lists it
    endpoint = endpoint_of(provider, base_url)
    if endpoint is not None:
        return _check_server(home, model, name, endpoint, key_for(provider, role))
    if base_url:
        return None  # another provider's API behind a proxy: nothing to ask
    table = lists.litellm_models(home)
    if provider is None:
        return _check_bare(table, model)
    found = BY_NAME.get(provider)
    if found is None or not found.checked:
        return None
    names = table.get(provider, {})
    if not names or name in names:
        return None
    listed = lists.cached_probes(home).get(found.api or "")
    if listed is not None and name in listed.models:
        return None  # newer than litellm's list, on the provider's own (shoal models --refresh)
    return Unknown(model, f"litellm's list of {provider} models", _close(name, names, provider))


def _check_server(
    home: Home, model: str, name: str, endpoint: str, key: str | None
) -> Unknown | None:
    cached = lists.cached_probes(home).get(endpoint)
    if cached is not None and name in cached.models:
        return None  # known good: no request on the way to a task
    found = lists.probe(endpoint, key)
    lists.keep_probe(home, found)
    if found.error or name in found.models:
        return None  # a server that cannot be asked is not a reason to refuse
    provider, _ = provider_of(model)
    return Unknown(
        model, f"the models the server at {endpoint} lists", _close(name, found.models, provider)
    )


def _check_bare(table: dict[str, dict[str, str]], model: str) -> Unknown | None:
    """A name without a provider: known if any list has it (litellm finds its provider)."""
    if not table or any(model in names for names in table.values()):
        return None
    pool = {n: p.name for p in reversed(PROVIDERS) if p.checked for n in table.get(p.name, {})}
    import difflib

    close = difflib.get_close_matches(model, list(pool), n=3, cutoff=0.6)
    return Unknown(
        model, "litellm's list (and it names no provider)", [f"{pool[n]}/{n}" for n in close]
    )


def _close(name: str, names: list[str] | dict[str, str], provider: str | None) -> list[str]:
    import difflib

    pool = list(names)
    exact = [n for n in pool if n.casefold() == name.casefold()]
    close = exact + difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
    prefix = f"{provider}/" if provider else ""
    return [prefix + n for n in dict.fromkeys(close)][:3]


# --- the choice with nothing configured ----------------------------------------------------


@dataclass(frozen=True)
class AutoChoice:
    """Models picked from what the environment offers, and why."""

    strong: str
    small: str
    base_url: str | None
    why: str
    """``OPENAI_API_KEY is set``, ``... and the server at URL offers them``."""

    def line(self, roles: list[str]) -> str:
        """The one line that says what was picked, for which roles, and why."""
        strong = [r for r in roles if r != "small"]
        parts = []
        if strong:
            parts.append(f"{self.strong} ({', '.join(strong)})")
        if "small" in roles:
            parts.append(f"{self.small} (learner and summaries)")
        return (
            f"shoal: no model set; using {' and '.join(parts)}: {self.why}; "
            "set SHOAL_MODEL or pass -m to choose (`shoal models` lists them)"
        )


def choose(home: Home) -> tuple[AutoChoice | None, list[str]]:
    """The choice, or None and why each configured way failed (one phrase each)."""
    failed: list[str] = []
    custom = os.environ.get("SHOAL_BASE_URL")
    if custom:  # the server every role goes to: choose from its list or not at all
        picked = _from_server(home, custom, lists.environ_value("SHOAL_API_KEY"), "openai")
        if isinstance(picked, str):
            return None, [f"SHOAL_BASE_URL {custom}: {picked}"]
        strong, small = picked
        return AutoChoice(
            strong, small, None, f"SHOAL_BASE_URL is set and {custom} offers them"
        ), []
    table: dict[str, dict[str, str]] | None = None
    for provider in PROVIDERS:
        key_name = next((k for k in provider.keys if os.environ.get(k)), None)
        endpoint = lists.environ_value(*provider.base_env)
        if key_name is None and not (endpoint and not provider.keys):
            continue
        if endpoint:
            picked = _from_server(
                home, server_of(provider, endpoint), os.environ.get(key_name or ""), provider.name
            )
            if isinstance(picked, str):
                failed.append(f"{provider.base_env[0]} {endpoint}: {picked}")
                continue
            why = f"{key_name or provider.base_env[0]} is set and {endpoint} offers them"
            base = endpoint if provider.name == "openai" else None
            return AutoChoice(*picked, base, why), failed
        table = lists.litellm_models(home) if table is None else table
        names = table.get(provider.name, {})
        strong = _first(provider.strong, names) or provider.strong[0]
        small = _first(provider.small, names) or provider.small[0]
        why = f"{key_name} is set"
        return AutoChoice(
            f"{provider.name}/{strong}", f"{provider.name}/{small}", None, why
        ), failed
    return None, failed


def server_of(provider: Provider, endpoint: str) -> str:
    return endpoint_of(provider.name, endpoint) or endpoint


def _from_server(home: Home, endpoint: str, key: str | None, prefix: str) -> tuple[str, str] | str:
    """Strong and small model from a server's list, or why there is none."""
    found = lists.server_models(home, endpoint, key, max_age=CHOICE_MAX_AGE)
    if found.error and not found.models:
        return f"its model list could not be read ({found.error})"
    chat = [m for m in dict.fromkeys(found.models) if not _NOT_CHAT.search(m)]
    if not chat:
        return "it lists no chat model"
    strong = _first(_ALL_STRONG, chat) or next((m for m in chat if not _SMALL.search(m)), chat[0])
    small = _first(_ALL_SMALL, chat) or next((m for m in chat if _SMALL.search(m)), strong)
    return f"{prefix}/{strong}", f"{prefix}/{small}"


def _first(preferred: tuple[str, ...], offered: list[str] | dict[str, str]) -> str | None:
    return next((m for m in preferred if m in offered), None)
