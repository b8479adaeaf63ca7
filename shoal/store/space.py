"""A full disk: told apart from other write errors, and remembered while it lasts.

The orchestrator must outlive a full disk (ENOSPC, or a quota: EDQUOT): what it
could not write stays queued in memory and is written once space is back. One
:class:`Space` per orchestrator is shared by the journal's writer (the broker)
and the recorder; it logs one line when the disk fills and one when writes
succeed again, and the broker refuses new work while it says full.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How DuckDB words the same errors (its exceptions carry no errno).
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")
# Below this much free space a new task is refused before it starts writing.
_LOW = 1024 * 1024


class DiskFull(Exception):
    """A write failed for want of space; the message says where and what to do."""

    def __init__(self, path: Path, reason: str = "No space left on device") -> None:
        super().__init__(full_line(path, reason))
        self.path = path
        self.reason = reason


def full_line(path: Path, reason: str = "No space left on device") -> str:
    return f"the disk holding {path} is full ({reason}); free space and retry"


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    return any(text in str(exc) for text in _FULL_TEXTS)


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return next((text for text in _FULL_TEXTS if text in str(exc)), "No space left on device")


class Space:
    """Whether the disk under ``path`` was full at the last write of any of its writers.

    Each writer (``"journal"``, ``"recorder"``) reports its own failures and
    successes; the disk counts as full while any of them still holds back data.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._full: dict[str, str] = {}  # writer -> reason
        self.since: float | None = None

    @property
    def full(self) -> bool:
        return bool(self._full)

    def line(self) -> str:
        with self._lock:
            reason = next(iter(self._full.values()), "No space left on device")
        return full_line(self.path, reason)

    def refusal(self) -> str | None:
        """Why new work is refused now, or None.

        Refused while the disk has less than 1 MiB left (a task started now could not
        record its steps), and while a writer is held by a quota, which the free space
        does not show. Once there is room again, new work is taken at once: the held
        writes go in at their next try, before the new work's.
        """
        with self._lock:
            reasons = set(self._full.values())
        try:
            stat = os.statvfs(self.path)
        except OSError:
            return self.line() if reasons else None
        free = stat.f_bavail * stat.f_frsize
        if free < _LOW:
            return full_line(self.path, reasons.pop() if reasons else f"{free // 1024} KiB left")
        if reasons - {"No space left on device"}:
            return self.line()
        return None

    def failed(self, writer: str, exc: BaseException) -> None:
        """``writer`` could not write for want of space; its data stays queued."""
        with self._lock:
            first = not self._full
            self._full[writer] = reason_of(exc)
            if first:
                self.since = time.time()
        if first:
            log.error(
                "%s: %s could not write; it keeps running, refuses new work and keeps what it "
                "could not write in memory until space is back",
                full_line(self.path, reason_of(exc)),
                writer,
            )

    def wrote(self, writer: str) -> None:
        """``writer`` has written everything it held back."""
        if writer not in self._full:  # the usual case, on every write: no lock taken
            return
        with self._lock:
            if writer not in self._full:
                return
            del self._full[writer]
            last = not self._full
            since, self.since = self.since, (None if last else self.since)
        if last:
            waited = time.time() - (since or time.time())
            log.warning(
                "space is back on the disk holding %s after %.0fs; what was held back is written",
                self.path,
                waited,
            )
