"""The model names shoal knows: litellm's list, and what OpenAI-compatible servers offer.

Two sources, both kept under ``$SHOAL_HOME/models/`` (0700; the files 0600):

- ``litellm.json``: litellm's own table of models
  (``model_prices_and_context_window_backup.json`` in its package), reduced to
  provider -> name -> mode. It is read from the file directly, never by importing
  litellm (about 3 s here), and rebuilt when the installed file changes, so the
  CLI's check of a model name costs a millisecond.
- ``probes.json``: for each OpenAI-compatible endpoint asked (``GET /models``), the
  model ids it answered and when. Keyed by the endpoint's URL; the key sent with
  the request is never written.

Nothing here decides anything: :mod:`shoal.providers.choice` picks and checks models.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.approvals import write_json
from shoal.paths import Home

PROBE_TIMEOUT = 3.0
"""Seconds a ``GET /models`` may take."""
MAX_PROBE_BYTES = 8 * 1024 * 1024
"""A larger answer is not a model list."""
_LITELLM_FILE = "model_prices_and_context_window_backup.json"


def folder(home: Home) -> Path:
    return home.root / "models"


# --- litellm's list -------------------------------------------------------------------


def litellm_file() -> Path | None:
    """litellm's model table as installed (found without importing litellm)."""
    from importlib.util import find_spec

    try:
        spec = find_spec("litellm")
    except (ImportError, ValueError):
        return None
    places = list(spec.submodule_search_locations or []) if spec else []
    for place in places:
        path = Path(place) / _LITELLM_FILE
        if path.is_file():
            return path
    return None


def litellm_models(home: Home) -> dict[str, dict[str, str]]:
    """provider -> model name (without the ``provider/`` prefix) -> mode; empty if litellm
    is not installed. Built once per installed litellm and kept in ``litellm.json``."""
    source = litellm_file()
    if source is None:
        return {}
    stat = source.stat()
    stamp = f"{source}:{stat.st_size}:{stat.st_mtime_ns}"
    cached = folder(home) / "litellm.json"
    try:
        data = json.loads(cached.read_text(encoding="utf-8"))
        if data.get("source") == stamp:
            return data["models"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    models = _reduce(json.loads(source.read_text(encoding="utf-8")))
    try:
        home.ensure()
        write_json(
            cached, {"source": stamp, "built_at": time.time(), "models": models}, private=True
        )
    except OSError:
        pass  # a read-only home still gets the answer
    return models


def _reduce(table: dict[str, Any]) -> dict[str, dict[str, str]]:
    by_provider: dict[str, dict[str, str]] = {}
    for key, entry in table.items():
        if not isinstance(entry, dict) or key == "sample_spec":
            continue
        provider = entry.get("litellm_provider")
        if not isinstance(provider, str):
            continue
        name = key.removeprefix(f"{provider}/")
        by_provider.setdefault(provider, {})[name] = str(entry.get("mode") or "chat")
    return by_provider


# --- what servers offer -----------------------------------------------------------------


@dataclass
class Probe:
    """What one endpoint answered to ``GET /models`` (or why it did not)."""

    endpoint: str
    fetched_at: float
    models: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.fetched_at)


def models_url(endpoint: str) -> str:
    """Where an OpenAI-compatible API base lists its models."""
    return endpoint.rstrip("/") + "/models"


def probe(endpoint: str, key: str | None = None, timeout: float = PROBE_TIMEOUT) -> Probe:
    """Ask ``endpoint`` (an API base such as ``http://127.0.0.1:8000/v1``) for its models."""
    import urllib.error
    import urllib.request

    headers = {"Accept": "application/json", "User-Agent": "shoal"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(models_url(endpoint), headers=headers)
    now = time.time()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read(MAX_PROBE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        return Probe(endpoint, now, error=f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Probe(endpoint, now, error=f"unreachable ({reason})")
    try:
        data = json.loads(body[:MAX_PROBE_BYTES])
        ids = [str(m["id"]) for m in data["data"] if isinstance(m, dict) and m.get("id")]
    except (ValueError, KeyError, TypeError):
        return Probe(endpoint, now, error="the answer is not an OpenAI model list")
    return Probe(endpoint, now, models=list(dict.fromkeys(ids)))  # the server's order


def cached_probes(home: Home) -> dict[str, Probe]:
    try:
        data = json.loads((folder(home) / "probes.json").read_text(encoding="utf-8"))
        return {
            url: Probe(url, float(p["fetched_at"]), list(p.get("models", [])), p.get("error"))
            for url, p in data.get("probes", {}).items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def keep_probe(home: Home, found: Probe) -> None:
    """Remember what an endpoint answered (an error replaces no list it gave before)."""
    probes = cached_probes(home)
    before = probes.get(found.endpoint)
    if found.error and before and before.models:
        before.error = found.error  # keep the list; say the last probe failed
        found = before
    probes[found.endpoint] = found
    data = {
        url: {"fetched_at": p.fetched_at, "models": p.models, "error": p.error}
        for url, p in probes.items()
    }
    try:
        home.ensure()
        write_json(folder(home) / "probes.json", {"probes": data}, private=True)
    except OSError:
        pass


def server_models(
    home: Home, endpoint: str, key: str | None, *, max_age: float | None = None
) -> Probe:
    """The endpoint's models: cached if younger than ``max_age`` seconds (None: any age),
    else probed now and remembered."""
    known = cached_probes(home).get(endpoint)
    if known is not None and known.models and (max_age is None or known.age <= max_age):
        return known
    found = probe(endpoint, key)
    keep_probe(home, found)
    return found


def age_text(seconds: float) -> str:
    """``42 s``, ``5 min``, ``3 h``, ``2 days``: how old a list is, for people."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def environ_value(*names: str) -> str | None:
    """The first of ``names`` set (non-empty) in the environment."""
    return next((os.environ[n] for n in names if os.environ.get(n)), None)
