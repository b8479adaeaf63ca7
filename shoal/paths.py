"""Where shoal keeps its state: one home directory per orchestrator.

``SHOAL_HOME`` overrides everything (tests always set it); the default is
``~/.shoal``. Everything under it is readable by the owner only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# sun_path in struct sockaddr_un is 108 bytes including the NUL.
_MAX_IPC_PATH = 107


class HomeError(Exception):
    """The home directory cannot be used; the message says what to do."""


def default_home() -> Path:
    return Path(os.environ.get("SHOAL_HOME") or "~/.shoal").expanduser().absolute()


@dataclass(frozen=True)
class Home:
    """Every path shoal uses under one home directory."""

    root: Path

    @classmethod
    def resolve(cls, root: str | Path | None = None) -> Home:
        return cls(Path(root).expanduser().absolute() if root else default_home())

    @property
    def run(self) -> Path:
        """Sockets, pid and lock files of the running orchestrator (mode 0700)."""
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def database(self) -> Path:
        return self.root / "shoal.duckdb"

    @property
    def journal(self) -> Path:
        """Write-ahead journal of routed messages not yet flushed to DuckDB."""
        return self.run / "journal.wal"

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def lock_file(self) -> Path:
        return self.run / "orchestrator.lock"

    @property
    def pid_file(self) -> Path:
        return self.run / "orchestrator.pid"

    @property
    def roster_file(self) -> Path:
        """The supervised actors, so a restarted orchestrator can adopt them."""
        return self.run / "actors.json"

    @property
    def mailbox_socket(self) -> Path:
        return self.run / "mailbox.sock"

    @property
    def events_socket(self) -> Path:
        return self.run / "events.sock"

    @property
    def mailbox_endpoint(self) -> str:
        return f"ipc://{self.mailbox_socket}"

    @property
    def events_endpoint(self) -> str:
        return f"ipc://{self.events_socket}"

    def actor_log(self, name: str) -> Path:
        return self.logs / "actors" / f"{name}.log"

    def ensure(self) -> Home:
        """Create the directories with owner-only permissions; fail clearly if unusable."""
        longest = max(self.mailbox_socket, self.events_socket, key=lambda p: len(str(p)))
        if len(str(longest)) > _MAX_IPC_PATH:
            raise HomeError(
                f"SHOAL_HOME {self.root} is too long for a unix socket path "
                f"({len(str(longest))} > {_MAX_IPC_PATH} characters); use a shorter SHOAL_HOME"
            )
        for path in (self.root, self.run, self.logs, self.logs / "actors"):
            try:
                existed = path.exists()
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                if not existed or path == self.run:
                    # Only what we made (and run/, which is ours): never re-mode a
                    # directory someone pointed SHOAL_HOME at. doctor reports it.
                    os.chmod(path, 0o700)
            except OSError as exc:
                raise HomeError(f"cannot use {path}: {exc.strerror}; check SHOAL_HOME") from exc
        return self
