"""The orchestrator's lifecycle, seen from a client: is it running, start it, stop it, ask it.

Running means holding ``run/orchestrator.lock`` (flock): the kernel drops the
lock when the process dies, however it dies, so a stale pid file or socket
can never make a dead orchestrator look alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from shoal.paths import Home

if TYPE_CHECKING:
    from shoal.mailbox.client import MailboxClient
    from shoal.messages.actors import OrchestratorStatusResult
    from shoal.messages.store import StoreQueryResult


class OrchestratorError(Exception):
    """The orchestrator could not be started, reached or stopped; the message says why."""


def running_pid(home: Home) -> int | None:
    """The running orchestrator's pid, or None if none holds the home's lock."""
    try:
        fd = os.open(home.lock_file, os.O_RDONLY)
    except OSError:  # no home, no run dir, or not a directory: nothing runs there
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_from_file(home)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _pid_from_file(home: Home) -> int | None:
    for _ in range(50):  # the pid file is written just after the lock is taken
        with contextlib.suppress(OSError, ValueError):
            return int(home.pid_file.read_text())
        time.sleep(0.01)
    return None


def child_env(env: dict[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment with ``env`` over it (None: unset the variable)."""
    merged = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def start(
    home: Home, *, timeout: float = 20.0, env: dict[str, str | None] | None = None
) -> tuple[int, bool]:
    """Start the orchestrator unless one runs. Returns (pid, started_by_this_call).
    ``env``: over this process's environment for it (None: unset the variable)."""
    pid = running_pid(home)
    if pid is not None:
        return pid, False
    from shoal.settings import OrchestratorSettings
    from shoal.workspace.git import without_redirects

    home.ensure()
    OrchestratorSettings.load(home)  # a bad setting fails here, in the user's terminal
    read_fd, write_fd = os.pipe()
    log = open(home.logs / "orchestrator.out", "ab")  # noqa: SIM115 - handed to the child
    try:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shoal.orchestrator.server",
                "--home",
                str(home.root),
                "--ready-fd",
                str(write_fd),
            ],
            pass_fds=[write_fd],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            # Actors inherit this environment: a GIT_DIR of the shell that happened to start
            # the orchestrator must not point their git at that repository.
            env={**without_redirects(child_env(env)), "SHOAL_HOME": str(home.root)},
        )
    finally:
        os.close(write_fd)
        log.close()
    line = _read_line(read_fd, timeout)
    word, _, rest = line.partition(" ")
    if word == "ready":
        return int(rest), True
    if word == "busy":
        pid = running_pid(home)
        if pid is not None:
            return pid, False
    detail = rest or f"it exited without a word; see {home.logs / 'orchestrator.out'}"
    raise OrchestratorError(f"the orchestrator did not start: {detail}")


def _read_line(fd: int, timeout: float) -> str:
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return "timeout did not report ready in time"
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return data.decode(errors="replace").strip()


def ensure(home: Home) -> int:
    """The running orchestrator's pid, starting one if needed (auto-start)."""
    return start(home)[0]


def stop(home: Home, timeout: float = 20.0) -> int | None:
    """Stop the orchestrator gracefully (SIGTERM: drain and flush), killing it after ``timeout``."""
    pid = running_pid(home)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(home) is None:
            return pid
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    raise OrchestratorError(f"orchestrator {pid} did not stop in {timeout:g}s and was killed")


def connect(home: Home, name: str | None = None) -> MailboxClient:
    from shoal.mailbox.client import MailboxClient

    return MailboxClient(home.mailbox_endpoint, name)


def request(home: Home, payload: Any, timeout: float = 10.0, *, to: str | None = None) -> Any:
    """One request to the orchestrator (or, ``to``, an actor or a role through it); returns
    the reply's validated payload."""
    from shoal.mailbox.envelope import ORCHESTRATOR
    from shoal.mailbox.errors import MailboxTimeout

    with connect(home) as client:
        try:
            return client.request(to or ORCHESTRATOR, payload, timeout=timeout).parse_payload()
        except MailboxTimeout as exc:
            raise OrchestratorError(f"the orchestrator did not answer: {exc}") from exc


def status(home: Home, timeout: float = 10.0) -> OrchestratorStatusResult:
    from shoal.messages.actors import OrchestratorStatus

    return request(home, OrchestratorStatus(), timeout)


def query(home: Home, name: str, params: dict[str, Any], timeout: float = 10.0) -> StoreQueryResult:
    from shoal.messages.store import StoreQuery

    return request(home, StoreQuery(name=name, params=params), timeout)
