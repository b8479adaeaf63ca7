"""``shoal models``: the models available here, and the picker behind ``-m ?``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli.output import fail, print_json
from shoal.messages.base import to_dict

if TYPE_CHECKING:
    from shoal.paths import Home
    from shoal.providers.catalogue import Catalogue, Listed

PICKER_ROWS = 20


def models(
    provider: str | None = typer.Option(
        None,
        "--provider",
        "-p",
        help="Only this provider (any litellm knows, with or without a key).",
    ),
    refresh: bool = typer.Option(
        False,
        "--refresh",
        help="Ask the servers and providers' APIs again (their lists are cached).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The models available here: litellm's list for the providers whose key is set, and what
    OpenAI-compatible servers (SHOAL_BASE_URL, OPENAI_BASE_URL, Ollama) list themselves."""
    from shoal.paths import Home

    home = Home.resolve()
    found = _catalogue(home, provider, refresh)
    configured = _configured(home)
    if json_out:
        print_json(_as_json(found, configured))
        return
    _print(found, configured, provider)


def _catalogue(home: Home, provider: str | None, refresh: bool) -> Catalogue:
    from shoal.providers.catalogue import UnknownProvider, catalogue

    try:
        return catalogue(home, provider, refresh=refresh)
    except UnknownProvider as exc:
        fail(str(exc), code=2)


def _configured(home: Home) -> dict[str, Any]:
    """The models a task started here would get, and where each came from."""
    from shoal import config
    from shoal.settings import SettingsError

    try:
        resolved = config.resolve(home, Path.cwd())
    except SettingsError as exc:
        return {"error": str(exc)}
    roles = {}
    for role, choice in resolved.config.models().items():
        field = f"{role}_model" if getattr(resolved.config, f"{role}_model") else "model"
        if role == "embedding" and field == "model":
            continue  # memory embeds with SHOAL_EMBEDDING_MODEL or offline, never the chat model
        roles[role] = {**to_dict(choice), "source": resolved.sources.get(field, "default")}
    why = resolved.auto.why if resolved.auto else None
    return {"roles": roles, "auto": why, "none_because": list(resolved.no_auto)}


def _as_json(found: Catalogue, configured: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": found.providers,
        "models": [
            {
                "model": m.model,
                "provider": m.provider,
                "source": m.source,
                "endpoint": m.endpoint,
                "mode": m.mode,
            }
            for m in found.models
        ],
        "servers": [
            {
                "endpoint": p.endpoint,
                "models": len(p.models),
                "fetched_at": p.fetched_at,
                "age_s": round(p.age, 1),
                "error": p.error,
            }
            for p in found.probes
        ],
        "configured": configured,
    }


def _print(found: Catalogue, configured: dict[str, Any], only: str | None) -> None:
    from shoal.providers.choice import PROVIDERS
    from shoal.providers.lists import age_text

    if not found.models and not only:
        keys = ", ".join(k for p in PROVIDERS for k in (*p.keys, *p.base_env))
        typer.echo(f"no provider is configured here (none of {keys} is set)")
        typer.echo("`shoal models --provider NAME` lists a provider's models anyway")
    servers = {p.endpoint: p for p in found.probes}
    for entry in found.providers:
        name = str(entry["name"])
        mine = [m for m in found.models if m.provider == name]
        if not mine and not entry["available"]:
            continue
        where = {m.endpoint for m in mine if m.endpoint}
        sources = [
            f"server {e}, listed {age_text(servers[e].age)} ago"
            + (f" (last ask failed: {servers[e].error})" if servers[e].error else "")
            for e in sorted(where)
            if e in servers
        ]
        if any(m.source == "litellm" for m in mine):
            sources.insert(0, "litellm's list")
        why = f"{entry['why']}; " if entry["why"] else ""
        typer.echo(f"{name} ({why}{', '.join(sources) or 'nothing listed'})")
        for m in mine:
            typer.echo(f"  {m.model}" + (f"  [{m.mode}]" if m.mode and m.mode != "chat" else ""))
    for probe in found.probes:
        if probe.error and not probe.models:
            typer.echo(f"server {probe.endpoint}: {probe.error}")
    _print_configured(configured)


def _print_configured(configured: dict[str, Any]) -> None:
    roles = configured.get("roles") or {}
    if not roles:
        reasons = "; ".join(configured.get("none_because") or [])
        typer.echo("a task here would have no model" + (f" ({reasons})" if reasons else ""))
        return
    typer.echo("a task here would use:")
    for role, choice in roles.items():
        base = f" at {choice['base_url']}" if choice.get("base_url") else ""
        typer.echo(f"  {role:<10} {choice['model']}{base}  ({choice['source']})")
    if configured.get("auto"):
        typer.echo(f"  (picked by shoal: {configured['auto']})")


# --- the picker (-m ?) --------------------------------------------------------------------


def pick_model() -> str:
    """Ask in the terminal which model to use; exits 2 without a terminal or a choice."""
    from rich.console import Console

    from shoal.paths import Home

    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        fail("-m ? picks a model in a terminal; `shoal models` lists them", code=2)
    home = Home.resolve()
    found = _catalogue(home, None, False)
    offered = _ordered(home, found.models)
    if not offered:
        fail("no models are available here: set a provider key (`shoal models` says which)", code=2)
    console = Console(stderr=True, highlight=False)
    choice = _ask(console, offered)
    if choice is None:
        fail("no model chosen", code=2)
    console.print(f"model: {choice}", markup=False)
    return choice


def _ordered(home: Home, offered: list[Listed]) -> list[str]:
    """Chat models, shoal's own choice first."""
    from shoal.providers.choice import choose

    names = [m.model for m in offered if m.mode in (None, "chat", "responses")]
    auto, _ = choose(home)
    first = [auto.strong, auto.small] if auto else []
    return list(dict.fromkeys([n for n in first if n in names] + names))


def _ask(console: Any, offered: list[str]) -> str | None:
    shown = offered
    while True:
        for i, name in enumerate(shown[:PICKER_ROWS], 1):
            console.print(f"{i:>3}. {name}", markup=False)
        if len(shown) > PICKER_ROWS:
            console.print(f"     … {len(shown) - PICKER_ROWS} more: type part of a name")
        try:
            answer = console.input("model (number, name, or text to narrow; Enter: 1)? ").strip()
        except (EOFError, KeyboardInterrupt):
            return None
        if not answer:
            return shown[0] if shown else None
        if answer.isdigit() and 1 <= int(answer) <= min(len(shown), PICKER_ROWS):
            return shown[int(answer) - 1]
        narrowed = [n for n in offered if answer.casefold() in n.casefold()]
        if answer in offered or ("/" in answer and not narrowed):
            return answer  # a full name: checked like any -m before anything starts
        if not narrowed:
            console.print(f"no model matches {answer!r}", markup=False)
            continue
        shown = narrowed
