"""Running a command in its own process group, with a timeout that kills the whole group.

A command's children and grandchildren share its process group
(``start_new_session``), so a timeout stops all of them: SIGTERM first, SIGKILL
after a grace period. Processes still in the group when the command itself
exits are stopped the same way; otherwise a leftover background job would keep
the output pipe open (and the call waiting) and outlive the executor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Seconds a group gets between SIGTERM and SIGKILL.
KILL_GRACE = 2.0
# Output kept in memory per command: the first and the last half of this; the middle is dropped.
MAX_CAPTURE = 16 * 1024 * 1024
# Seconds to wait for the end of output once the command has exited.
DRAIN_WAIT = 0.2


@dataclass(frozen=True)
class Completed:
    """How a command ended and what it printed (stdout and stderr interleaved)."""

    output: str
    exit_code: int | None
    """The exit code; negative for a signal; None if it timed out."""
    timed_out: bool
    stray_stopped: bool
    """Background processes were still running when the command exited, and were stopped."""


def run(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float) -> Completed:
    """Run ``argv`` with stdin from /dev/null; raises FileNotFoundError if it cannot start."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdout is not None
    capture = _Capture(MAX_CAPTURE)
    reader = threading.Thread(target=capture.drain, args=(proc.stdout,), daemon=True)
    reader.start()
    pgid = proc.pid  # a new session's leader: its pid is the group id
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(pgid, proc)
    except BaseException:
        kill_group(pgid, proc)
        raise
    stray = False
    if not timed_out:
        reader.join(DRAIN_WAIT)
        if group_members(pgid):
            stray = True
            kill_group(pgid, proc)
    # A process that left the group (setsid, daemons) may hold the pipe open: stop waiting.
    reader.join(KILL_GRACE)
    return Completed(
        output=capture.text(),
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        stray_stopped=stray,
    )


def kill_group(pgid: int, leader: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after :data:`KILL_GRACE` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()  # reap it, or its zombie would count as a member
        if not group_members(pgid):
            break
        time.sleep(0.02)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if leader is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(timeout=KILL_GRACE)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in group ``pgid``."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        # No /proc: ask the kernel whether the group has anyone (zombies included).
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may contain anything.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


class _Capture:
    """Collects a stream, keeping its head and tail when it exceeds ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def drain(self, stream) -> None:
        fd = stream.fileno()
        try:
            while chunk := os.read(fd, 65536):
                self._add(chunk)
        except OSError:
            pass
        finally:
            stream.close()

    def _add(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            excess = len(self.tail) - self.half
            if excess > 0:
                del self.tail[:excess]
                self.dropped += excess

    def text(self) -> str:
        data = bytes(self.head)
        if self.dropped:
            data += f"\n[... {self.dropped} bytes of output dropped ...]\n".encode()
        return (data + bytes(self.tail)).decode("utf-8", errors="replace")
