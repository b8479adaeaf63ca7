"""How much of the orchestrator the HTTP API may use, and what it saw under load.

The API runs inside the orchestrator, so every connection a client opens is a
file descriptor out of the budget ZeroMQ, DuckDB, the actors' pipes and the
logs share; libzmq aborts the whole process when it cannot get one. The API
therefore holds at most ``cap`` connections, derived from the process's
``RLIMIT_NOFILE`` with a generous reserve for everything else.

Settings: ``SHOAL_API_<NAME>`` > ``[api]`` in ``$SHOAL_HOME/config.toml`` > defaults.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shoal.paths import Home
from shoal.settings import SettingsError, config_file

log = logging.getLogger(__name__)

RESERVE_MIN = 256
"""File descriptors always left to the rest of the orchestrator (the reserve is at least
half the limit)."""
CAP_MAX = 4096
"""Open connections at most when the cap is derived (a local API needs far fewer)."""
OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_LOG_EVERY = 60.0
RECENT = 600.0
"""Seconds a refusal or an EMFILE stays among the problems ``shoal status`` shows."""


class ApiLimits(BaseModel):
    """``[api]`` in config.toml; each also as ``SHOAL_API_<NAME>``."""

    model_config = ConfigDict(extra="forbid")

    max_connections: int = Field(0, ge=0, le=1_000_000)
    """Open connections the API holds at most; over it a new one is answered 503 and
    closed (0: half the orchestrator's file-descriptor limit, at most 4096)."""
    head_timeout: float = Field(5.0, gt=0, le=300)
    """Seconds a connection has to deliver a complete request head (its first, or its
    next on a kept-alive connection); then it is closed."""
    keepalive_timeout: float = Field(5.0, gt=0, le=300)
    """Seconds a kept-alive connection may stay silent after an answer."""
    body_timeout: float = Field(10.0, gt=0, le=300)
    """Seconds a request body has to arrive in full once its head has (else 408)."""
    heartbeat: float = Field(15.0, gt=0, le=300)
    """Seconds between the comment lines that keep a quiet event stream open."""
    workers: int = Field(16, ge=1, le=256)
    """Threads the endpoints run on (they wait on the orchestrator's mailbox); more
    requests than this wait for a free one."""

    @classmethod
    def load(cls, home: Home) -> ApiLimits:
        values: dict[str, Any] = dict(config_file(home.config_file).table("api"))
        for name in cls.model_fields:
            raw = os.environ.get(f"SHOAL_API_{name.upper()}")
            if raw is not None:
                values[name] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            raise SettingsError(
                f"setting {name!r} (SHOAL_API_{name.upper()} or [api] in {home.config_file}): "
                f"{first['msg']}"
            ) from None

    def cap(self, fd_limit: int | None = None) -> int:
        """The connection cap: as configured, or derived from the fd limit."""
        if self.max_connections:
            return self.max_connections
        limit = fd_limit if fd_limit is not None else nofile()
        reserve = max(RESERVE_MIN, limit // 2)
        return max(16, min(CAP_MAX, limit - reserve))


def nofile() -> int:
    """This process's soft RLIMIT_NOFILE (unlimited counts as 2**20)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY or soft < 0 else soft


class Pressure:
    """What the API refused or closed, for one log line a minute and ``shoal status``.

    Written on the server's event loop, read from the broker's thread: plain counters.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self.out_of_fds = 0
        self.out_of_fds_error = ""
        self.last_out_of_fds = 0.0
        self.last_refused = 0.0
        self._logged: dict[str, float] = {}

    def note_refused(self) -> None:
        self.refused += 1
        self.last_refused = time.time()
        self._log_sometimes(
            "refused",
            "the HTTP API is at its limit of %d open connections: new ones are answered 503 "
            "(%d refused, %d idle ones closed so far; [api] max_connections sets the limit)",
            self.cap,
            self.refused,
            self.evicted + self.timed_out,
        )

    def note_out_of_fds(self, exc: OSError) -> None:
        self.out_of_fds += 1
        self.last_out_of_fds = time.time()
        self.out_of_fds_error = exc.strerror or str(exc)
        self._log_sometimes(
            "fds",
            "the HTTP API could not accept a connection: %s (RLIMIT_NOFILE %d, %d time(s) so "
            "far); it pauses accepting for 1 s and the orchestrator goes on",
            self.out_of_fds_error,
            nofile(),
            self.out_of_fds,
        )

    def problems(self, now: float | None = None) -> list[str]:
        """One line per condition seen in the last ten minutes, for a person to read
        (``shoal status``, ``shoal serve``)."""
        now = time.time() if now is None else now
        found = []
        if now - self.last_out_of_fds < RECENT:
            found.append(
                f"the HTTP API ran out of file descriptors {self.out_of_fds} time(s) "
                f"({self.out_of_fds_error}; last at {_clock(self.last_out_of_fds)}): raise "
                "`ulimit -n` for the orchestrator or lower [api] max_connections"
            )
        if now - self.last_refused < RECENT:
            found.append(
                f"the HTTP API refused {self.refused} connection(s) over its limit of {self.cap} "
                f"(last at {_clock(self.last_refused)})"
            )
        return found

    def _log_sometimes(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._logged.get(key, -_LOG_EVERY) >= _LOG_EVERY:
            self._logged[key] = now
            log.warning(message, *args)


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))
