"""How an actor process is started: one interface, one module per way.

- :mod:`.local`: a process forked from a warm forkserver (the default).
- :mod:`.tmux`: a team member in its own tmux pane, respawned in place.
- Ray actors plug in here with the same interface.

A launcher turns an :class:`ActorSpec` into an :class:`ActorHandle`; the
supervisor only ever talks to those two. A launcher that keeps something per
actor (a pane) may also have ``released(name, role)``, called once the actor
is stopped for good.
"""

from __future__ import annotations

import contextlib
import os
import select
from typing import Protocol

from shoal.actors.spec import ActorSpec

__all__ = ["ActorHandle", "ActorSpec", "Launcher", "PidHandle", "pid_alive", "signal_group"]


class ActorHandle(Protocol):
    pid: int | None

    def alive(self) -> bool:
        """False once the process has exited."""
        ...

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the actor's whole process group."""
        ...


class Launcher(Protocol):
    name: str

    def launch(self, spec: ActorSpec) -> ActorHandle: ...

    def close(self) -> None: ...


def signal_group(pid: int, sig: int) -> None:
    """Signal a process group led by ``pid``, or the process alone if it has none yet."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    except PermissionError:
        pass


class PidHandle:
    """A process we did not start ourselves (adopted after an orchestrator restart)."""

    def __init__(self, pid: int) -> None:
        self.pid: int | None = pid
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except (OSError, AttributeError):
            self._fd = None

    def alive(self) -> bool:
        if self.pid is None:
            return False
        if self._fd is not None:
            readable, _, _ = select.select([self._fd], [], [], 0)
            if readable:
                os.close(self._fd)
                self._fd = None
                self.pid = None
                return False
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def signal(self, sig: int) -> None:
        if self.pid is not None:
            signal_group(self.pid, sig)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
