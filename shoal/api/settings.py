"""What the API and its webhooks are set up with, and the files that hold it.

- ``$SHOAL_HOME/config.toml``: ``[[webhooks]]`` tables, read when the orchestrator starts.
- ``$SHOAL_HOME/api.json``: written by ``shoal serve`` (host, port, its ``--webhook``\\s);
  while it exists, the orchestrator serves the API, also after a restart.
- ``$SHOAL_HOME/api.token``: the bearer token, when one is set.

The files are owner-only (0600). Secrets live in them or in the orchestrator's
environment, never in messages (every message is recorded) or in the database.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from shoal.paths import Home
from shoal.settings import SettingsError, config_file

EVENTS = ("task.complete", "task.failed", "budget.warning")
Event = Literal["task.complete", "task.failed", "budget.warning"]
DEFAULT_PORT = 9742


class WebhookConfig(BaseModel):
    """One ``[[webhooks]]`` table (or one ``shoal serve --webhook URL``)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    """Where events are POSTed (http or https)."""
    events: list[Event] = Field(default_factory=lambda: list(EVENTS), min_length=1)
    """Which events this webhook gets."""
    secret: SecretStr | None = None
    """Key of the ``X-Shoal-Signature`` HMAC."""
    secret_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the orchestrator's environment variable holding the key instead."""
    name: str | None = Field(None, max_length=64)
    """Name in the delivery records (default: the URL's host)."""
    max_attempts: int = Field(5, ge=1, le=10)
    """Attempts before a delivery is given up (the first one included)."""
    backoff: float = Field(1.0, gt=0, le=60)
    """Longest wait before the first retry, in seconds; doubled for each further one (the
    wait is drawn at random below it: full jitter)."""
    backoff_cap: float = Field(60.0, gt=0, le=3600)
    """Longest wait before any retry, in seconds."""
    max_retry_after: float = Field(300.0, ge=0, le=3600)
    """Longest ``Retry-After`` (on 429 or 503) honoured; a receiver asking for more gets no
    further attempt."""
    timeout: float = Field(10.0, gt=0, le=120)
    """Seconds to wait for the receiver's answer."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @property
    def label(self) -> str:
        return self.name or (urlsplit(self.url).hostname or "webhook")

    @property
    def target(self) -> str:
        """scheme://host:port: what may be recorded (paths and queries can hold secrets)."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{parts.hostname}:{port}"

    def key(self, environ: dict[str, str] | None = None) -> bytes:
        """The signing key; SettingsError when there is none."""
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        env = os.environ if environ is None else environ
        if self.secret_env and env.get(self.secret_env):
            return env[self.secret_env].encode()
        raise SettingsError(
            f"webhook {self.label}: {self.secret_env} is not set in the orchestrator's environment"
            if self.secret_env
            else f"webhook {self.label}: give it a secret or a secret_env to sign with"
        )

    def stored(self) -> dict[str, object]:
        """As written to api.json (the secret in clear: the file is owner-only)."""
        data = self.model_dump(mode="json", exclude_none=True)
        if self.secret is not None:
            data["secret"] = self.secret.get_secret_value()
        return data


class ServeSettings(BaseModel):
    """``$SHOAL_HOME/api.json``: what ``shoal serve`` asked for."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    """0 picks a free port (written back here once bound, so a restart keeps it)."""
    webhooks: list[WebhookConfig] = Field(default_factory=list)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def _where(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "value"
    return f"{field}: {first['msg']}"  # never the input: it may be a secret


def config_webhooks(home: Home, environ: dict[str, str] | None = None) -> list[WebhookConfig]:
    """The ``[[webhooks]]`` of config.toml, each checked to have its signing key."""
    path = home.config_file
    tables = config_file(path).tables.get("webhooks", [])
    if not isinstance(tables, list):
        raise SettingsError(f"{path}: webhooks must be [[webhooks]] tables")
    hooks = []
    for n, table in enumerate(tables, 1):
        try:
            hook = WebhookConfig.model_validate(table)
        except ValidationError as exc:
            raise SettingsError(f"{path}: [[webhooks]] #{n}: {_where(exc)}") from None
        hook.key(environ)  # fail at start, in the user's terminal, not at the first event
        hooks.append(hook)
    return hooks


def _api_json(home: Home) -> Path:
    return home.root / "api.json"


def token_file(home: Home) -> Path:
    return home.root / "api.token"


def _write_private(path: Path, text: str) -> None:
    """Owner-only, and whole or not at all (a crash mid-write must not leave half a file)."""
    part = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(part, 0o600)  # the file may have existed with other bits
    os.replace(part, path)


def save(home: Home, settings: ServeSettings, token: str | None) -> None:
    """Write api.json and api.token (or remove a stale token) for the orchestrator to read."""
    home.ensure()
    if token:
        _write_private(token_file(home), token + "\n")
    else:
        token_file(home).unlink(missing_ok=True)
    data = settings.model_dump(mode="json", exclude={"webhooks"})
    data["webhooks"] = [hook.stored() for hook in settings.webhooks]
    _write_private(_api_json(home), json.dumps(data, indent=2) + "\n")


def remember_port(home: Home, asked: ServeSettings, port: int) -> None:
    """Write the port a ``--port 0`` server got into api.json, so that an orchestrator
    restarted after a crash serves on the same one. Only while api.json still asks for
    port 0 on that host: a ``shoal serve --stop`` or another ``shoal serve`` meanwhile wins."""
    path = _api_json(home)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and data.get("port") == 0 and data.get("host") == asked.host:
        data["port"] = port
        _write_private(path, json.dumps(data, indent=2) + "\n")


def load(home: Home) -> tuple[ServeSettings, str | None] | None:
    """What ``shoal serve`` last asked for, or None when the API should not be served."""
    path = _api_json(home)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError(f"{path}: {exc.strerror}") from exc
    try:
        settings = ServeSettings.model_validate_json(text)
    except ValidationError as exc:
        raise SettingsError(f"{path}: {_where(exc)}; run `shoal serve` again") from None
    try:
        token = token_file(home).read_text().strip() or None
    except FileNotFoundError:
        token = None
    if token is None and not is_loopback(settings.host):
        raise SettingsError(
            f"{path}: serving on {settings.host} needs a bearer token ({token_file(home)} is empty)"
        )
    return settings, token


def forget(home: Home) -> None:
    """Stop the API from coming back with the next orchestrator."""
    _api_json(home).unlink(missing_ok=True)
    token_file(home).unlink(missing_ok=True)
