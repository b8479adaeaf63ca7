"""Running a command in its own process group, to its end or a deadline.

The one runner for everything shoal runs on the user's behalf: the agent's
``shell`` and ``git`` tools, the project's checks, a batch's verify command.

- Output goes to a temporary file, not a pipe: a grandchild that keeps a pipe
  open (a test's leftover server, a daemon) cannot make a finished command look
  hung, and gigabytes of output cost disk, not memory. What is read back is
  bounded: the head and tail of it, or its tail (where summaries are).
- The command's children and grandchildren share its process group
  (``start_new_session``). On timeout the group gets SIGTERM, then SIGKILL
  after :data:`KILL_GRACE`; whatever is still in the group when the command
  itself exits is stopped the same way (``stray_stopped``), so nothing it
  started outlives it.
- The exit is noticed at once: on Linux through a pidfd, elsewhere by polling
  ``waitid`` without reaping, so the leader's pid still names its group.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

KILL_GRACE = 2.0
"""Seconds a group gets between SIGTERM and SIGKILL."""
MAX_OUTPUT = 16 * 1024 * 1024
"""Bytes of output read back by default (the head and tail of it)."""


@dataclass(frozen=True)
class Completed:
    """How a command ended and what it printed (stdout and stderr interleaved)."""

    output: str
    returncode: int
    """As subprocess reports it: the exit code, or minus the signal that ended it."""
    timed_out: bool
    stray_stopped: bool
    """Processes of its group were still running when it exited, and were stopped."""
    duration_s: float
    """Wall time from the start to its exit (or to the kill)."""

    @property
    def exit_code(self) -> int | None:
        """The exit code (negative: a signal), or None if it timed out and was killed."""
        return None if self.timed_out else self.returncode


def run(
    command: Sequence[str] | str,
    *,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    limit: int = MAX_OUTPUT,
    keep: Literal["ends", "tail"] = "ends",
) -> Completed:
    """Run ``command`` (an argv, or a string for /bin/sh) with stdin from /dev/null.

    ``limit`` bounds the output read back: bytes of head and tail (``keep="ends"``) or
    characters of the tail (``"tail"``). Raises OSError (FileNotFoundError, ...) when
    the command cannot be started.
    """
    with tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            command if isinstance(command, str) else list(command),
            cwd=cwd,
            shell=isinstance(command, str),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        pgid = proc.pid  # a new session's leader: its pid is the group's id
        try:
            finished = _wait(proc, start + timeout)
        except BaseException:
            stop_group(pgid)
            proc.wait()
            raise
        stray = finished and bool(group_members(pgid))
        if stray or not finished:
            stop_group(pgid)
        exit_code = proc.wait()
        duration = time.monotonic() - start
        text = _tail(out, limit) if keep == "tail" else _ends(out, limit)
    return Completed(text, exit_code, not finished, stray, duration)


def stop_group(pgid: int) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after :data:`KILL_GRACE` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + KILL_GRACE
    while group_members(pgid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.02)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in group ``pgid``."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        # No /proc: ask the kernel whether the group has anyone (zombies included).
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
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


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait until the process exits or the deadline passes, without reaping it; True if
    it exited."""
    if hasattr(os, "pidfd_open"):
        try:
            return _wait_pidfd(proc.pid, deadline)
        except OSError:  # an old kernel without pidfd_open: poll instead
            pass
    if not hasattr(os, "waitid"):  # macOS
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True
    interval = 0.005
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, 0.1)
    return True


def _wait_pidfd(pid: int, deadline: float) -> bool:
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if poller.poll(min(remaining, 3600.0) * 1000):
                return True
    finally:
        os.close(fd)


def _ends(out: BinaryIO, limit: int) -> str:
    """The output, or its first and last ``limit / 2`` bytes and how many were dropped."""
    size = out.seek(0, os.SEEK_END)
    out.seek(0)
    if size <= limit:
        return out.read().decode("utf-8", errors="replace")
    half = limit // 2
    head = out.read(half)
    out.seek(size - half)
    tail = out.read()
    dropped = f"\n[... {size - 2 * half} bytes of output dropped ...]\n".encode()
    return (head + dropped + tail).decode("utf-8", errors="replace")


def _tail(out: BinaryIO, limit: int) -> str:
    """The output's last ``limit`` characters, saying how much came before."""
    size = out.seek(0, os.SEEK_END)
    # Four bytes per character at most in UTF-8: enough bytes for `limit` characters.
    start = max(0, size - 4 * limit)
    out.seek(start)
    text = out.read().decode(errors="replace")
    if start == 0 and len(text) <= limit:
        return text
    kept = text[-limit:]
    cut = size - len(kept.encode(errors="replace"))
    return f"[... {cut} earlier bytes of output cut ...]\n{kept}"
