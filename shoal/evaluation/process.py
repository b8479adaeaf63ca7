"""Run one command to completion or a deadline, in its own process group, keeping its output tail.

Output goes to a temporary file, not a pipe: a grandchild that keeps the pipe
open (a test's leftover server) cannot make a finished run look hung, and a
run that prints gigabytes costs disk, not memory.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

NOT_RUNNABLE = 127
"""The exit code reported when the command could not be started (as a shell would)."""


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    """The command's exit code; negative: killed by that signal."""
    output: str
    """The tail of stdout and stderr, interleaved as written."""
    duration_s: float
    """Wall time from start to exit (or to the kill), in seconds."""
    timed_out: bool
    """The deadline passed and the group was killed."""
    started: bool = True
    """False: the command could not be started at all (no such program, no directory)."""


def run_command(
    command: list[str] | str,
    cwd: Path,
    timeout: float,
    *,
    env: Mapping[str, str] | None = None,
    output_limit: int = 20_000,
) -> Outcome:
    """Run ``command`` (an argv, or a string for /bin/sh) with stdin from /dev/null.

    On timeout the whole process group is killed; whatever the command left
    running in its group is killed when it ends, too.
    """
    if not cwd.is_dir():
        return Outcome(NOT_RUNNABLE, f"cannot run: {cwd} is not a directory", 0.0, False, False)
    with tempfile.TemporaryFile() as out:
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                shell=isinstance(command, str),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
            )
        except OSError as exc:
            program = command if isinstance(command, str) else command[0]
            reason = exc.strerror or str(exc)
            return Outcome(NOT_RUNNABLE, f"cannot run {program}: {reason}", 0.0, False, False)
        try:
            finished = _wait(proc, start + timeout)
        finally:
            # With waitid the leader is a zombie or still running here, so its pid still
            # names the group; without it the group's other members keep the id taken.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            exit_code = proc.wait()
        duration = time.monotonic() - start
        return Outcome(exit_code, _tail(out, output_limit), duration, not finished)


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait until the process exits or the deadline passes; True if it exited.

    The process is not reaped, so its pid keeps naming its group for the kill: on
    Linux a pidfd wakes the wait the moment it exits; elsewhere with waitid, a poll
    with WNOWAIT; on macOS ``proc.wait``.
    """
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
    while True:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, 0.1)


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


def _tail(out: BinaryIO, limit: int) -> str:
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
