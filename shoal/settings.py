"""Runtime settings of the orchestrator and its actors.

Order: environment (``SHOAL_<NAME>``) > ``$SHOAL_HOME/config.toml`` section
``[orchestrator]`` > defaults. A bad value is reported with where it came from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shoal.paths import Home


@dataclass(frozen=True)
class ConfigFile:
    """A config.toml as read: its bytes (for a content hash) and its tables."""

    path: Path
    data: bytes
    """Empty when the file does not exist."""
    tables: dict[str, Any]

    @property
    def exists(self) -> bool:
        return bool(self.data) or self.path.is_file()

    def table(self, name: str) -> dict[str, Any]:
        """The ``[name]`` table ({} if there is none); SettingsError if it is not a table."""
        found = self.tables.get(name, {})
        if not isinstance(found, dict):
            raise SettingsError(f"{self.path}: [{name}] must be a table; fix or remove the file")
        return found


_READ: dict[Path, tuple[tuple[int, int], ConfigFile]] = {}


def config_file(path: Path) -> ConfigFile:
    """``path`` parsed, once per change of it (every section is read from the one parse);
    a file that is not valid TOML is a SettingsError in one line."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ConfigFile(path, b"", {})
    except OSError as exc:
        raise SettingsError(f"{path}: {exc.strerror or exc}; fix or remove the file") from exc
    key = (stat.st_mtime_ns, stat.st_size)
    known = _READ.get(path)
    if known is not None and known[0] == key:
        return known[1]
    try:
        data = path.read_bytes()
        tables = tomllib.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}; fix or remove the file") from exc
    read = ConfigFile(path, data, tables)
    _READ[path] = (key, read)
    return read


class SettingsError(Exception):
    """A setting has a bad value; the message names it and its source."""


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], values: dict[str, Any], where: str) -> M:
    """``model`` from ``values``, or a SettingsError naming the first bad setting."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise SettingsError(
            f"setting {field!r} (SHOAL_{field.upper()} or {where}): {first['msg']}"
        ) from exc


class OrchestratorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idle_timeout: float = Field(900.0, ge=0)
    """Seconds without routed traffic after which the orchestrator exits (0: never)."""
    actor_idle_retire: float = Field(300.0, ge=0)
    """Seconds without a task after which the loop's own actors (planner, executor,
    evaluator, learner, pattern-miner, lead) are stopped to give their memory back; the
    next task forks them again from the forkserver in milliseconds (0: never). A team's
    members are never stopped this way."""

    heartbeat_interval: float = Field(1.0, gt=0)
    """Seconds between an actor's heartbeats."""

    heartbeat_timeout: float = Field(10.0, gt=0)
    """Seconds without a heartbeat after which the supervisor restarts an actor."""

    ack_timeout: float = Field(300.0, gt=0)
    """Seconds a delivered, unacked message not held by its actor waits before redelivery."""

    pending_ttl: float = Field(30.0, gt=0)
    """Seconds a message to an unknown recipient waits for it before it is refused."""

    orphan_timeout: float = Field(30.0, gt=0)
    """Seconds an actor waits for a lost orchestrator before it exits."""

    flush_interval: float = Field(0.1, gt=0, le=0.1)
    """Seconds between recorder flushes to DuckDB (at most 0.1)."""

    max_frame_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Largest accepted message body; larger frames are dropped and counted."""

    restart_backoff_max: float = Field(10.0, gt=0)
    """Upper bound of the supervisor's exponential restart backoff, in seconds."""

    stall_timeout: float = Field(900.0, ge=0)
    """Seconds an actor may stay busy without sending anything (a tool call event, a
    reply, a message) before it is flagged stalled and restarted (0: never)."""

    mine_every: int = Field(5, ge=0)
    """The pattern-miner looks at the history after this many finished tasks, once no
    task is running (0: only on ``shoal learn --mine``)."""

    preload: list[str] = Field(
        default_factory=lambda: [
            # litellm, what it imports lazily on a first call, and its TLS context.
            "shoal.llm.warm",
        ]
    )
    """Modules the actor forkserver imports once, so new actors start warm."""

    backend: Literal["local", "ray"] = "local"
    """How new actors are launched: local processes, or Ray actors (``--backend ray``)."""

    ray_address: str | None = None
    """A Ray cluster to join (``host:port``); unset: a private local Ray under SHOAL_HOME."""

    ray_num_cpus: int | None = Field(None, ge=1, le=4096)
    """CPUs the private local Ray offers (default: this machine's)."""

    mailbox_tcp: str | None = None
    """``host:port`` to bind the mailbox on TCP too, for actors on other hosts (always
    CurveZMQ; port 0 picks one). Joining a Ray cluster binds it on its own."""

    @classmethod
    def load(cls, home: Home) -> OrchestratorSettings:
        values: dict[str, Any] = dict(config_file(home.config_file).table("orchestrator"))
        for name in cls.model_fields:
            raw = os.environ.get(f"SHOAL_{name.upper()}")
            if raw is not None:
                values[name] = [m for m in raw.split(",") if m] if name == "preload" else raw
        return validated(cls, values, f"[orchestrator] in {home.config_file}")
