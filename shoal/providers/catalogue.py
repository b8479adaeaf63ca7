"""What ``shoal models`` shows: the providers available here and the models each offers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from shoal.paths import Home
from shoal.providers import lists
from shoal.providers.choice import ALIASES, BY_NAME, CHAT_MODES, PROVIDERS, Provider, server_of


@dataclass(frozen=True)
class Listed:
    """One model a provider or server offers."""

    model: str
    """As shoal takes it: ``openai/gpt-4o``."""
    provider: str
    source: str
    """``litellm`` (its list) or ``server`` (the endpoint's own ``/models``)."""
    endpoint: str | None = None
    mode: str | None = None
    """litellm's mode (``chat``, ``responses``, ...); None for a server's models."""


@dataclass
class Catalogue:
    """Providers (with whether and why they are available), their models, the servers asked."""

    providers: list[dict[str, object]] = field(default_factory=list)
    models: list[Listed] = field(default_factory=list)
    probes: list[lists.Probe] = field(default_factory=list)


class UnknownProvider(ValueError):
    """``--provider`` names a provider shoal and litellm do not know."""


def catalogue(home: Home, only: str | None = None, *, refresh: bool = False) -> Catalogue:
    """The models available here (every provider with a key or a server configured), or
    all of ``only``'s; servers' lists come from the cache unless ``refresh`` or none."""
    out = Catalogue()
    table = lists.litellm_models(home)
    wanted = ALIASES.get(only or "", only)
    if wanted and wanted not in BY_NAME and wanted not in table:
        raise UnknownProvider(
            f"no provider {only!r}: shoal picks from {', '.join(BY_NAME)}, and litellm's list "
            f"has {len(table)} more (bedrock, azure, vertex_ai, ...)"
        )
    custom = os.environ.get("SHOAL_BASE_URL")
    if custom and wanted in (None, "openai"):
        _add_server(
            home,
            out,
            "openai",
            custom,
            lists.environ_value("SHOAL_API_KEY"),
            refresh,
            "SHOAL_BASE_URL is set",
        )
    for provider in PROVIDERS:
        if wanted not in (None, provider.name) or (custom and provider.name == "openai"):
            continue  # with SHOAL_BASE_URL, openai/ models go to that server: its list it is
        why = _available(provider)
        out.providers.append({"name": provider.name, "available": why is not None, "why": why})
        if why is None and wanted is None:
            continue
        key = lists.environ_value(*provider.keys) if provider.keys else None
        endpoint = lists.environ_value(*provider.base_env)
        if endpoint or provider.name == "ollama_chat":
            _add_server(
                home, out, provider.name, server_of(provider, endpoint or ""), key, refresh, why
            )
            continue
        _add_litellm(out, provider.name, table.get(provider.name, {}))
        if refresh and provider.api and key:
            _add_server(
                home,
                out,
                provider.name,
                provider.api,
                key,
                True,
                why,
                skip=table.get(provider.name, {}),
            )
    if wanted and wanted not in BY_NAME:
        out.providers.append({"name": wanted, "available": None, "why": "litellm's list"})
        _add_litellm(out, wanted, table[wanted])
    return out


def _available(provider: Provider) -> str | None:
    found = next((k for k in (*provider.keys, *provider.base_env) if os.environ.get(k)), None)
    return f"{found} is set" if found else None


def _add_litellm(out: Catalogue, provider: str, names: dict[str, str]) -> None:
    out.models += [
        Listed(f"{provider}/{name}", provider, "litellm", mode=mode)
        for name, mode in sorted(names.items())
        if mode in CHAT_MODES
    ]


def _add_server(
    home: Home,
    out: Catalogue,
    provider: str,
    endpoint: str,
    key: str | None,
    refresh: bool,
    why: str | None,
    skip: dict[str, str] | None = None,
) -> None:
    if refresh:
        found = lists.probe(endpoint, key)
        lists.keep_probe(home, found)
        found = lists.cached_probes(home).get(endpoint, found)
    else:
        found = lists.server_models(home, endpoint, key)
    out.probes.append(found)
    if not any(p["name"] == provider for p in out.providers):
        out.providers.append({"name": provider, "available": True, "why": why})
    out.models += [
        Listed(f"{provider}/{m}", provider, "server", endpoint=endpoint)
        for m in found.models
        if not skip or m not in skip
    ]
