"""The orchestrator's log file, written so that a full disk loses no line of it.

``logging.FileHandler`` drops what a full disk refuses (and reports the error on
stderr, which is on the same disk). Here each line goes out with ``os.write`` on
an append-only descriptor; what the disk has no room for waits in memory (the
newest 4 MiB of it) and is written, in order, before the next line once space is
back. The line saying the disk is full is usually one of them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

_MAX_WAITING = 4 * 1024 * 1024


class LogFile(logging.Handler):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._waiting = bytearray()
        self._lost = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._waiting += line.encode(errors="replace")
        if len(self._waiting) > _MAX_WAITING:
            self._forget_oldest()
        self._write()

    def _write(self) -> None:
        if self._lost:
            note = f"[{self._lost} log lines were lost to a full disk]\n".encode()
            self._waiting[:0] = note
            self._lost = 0
        try:
            while self._waiting:
                del self._waiting[: os.write(self._fd, self._waiting)]
        except OSError:
            pass  # the rest waits for the next line

    def _forget_oldest(self) -> None:
        cut = self._waiting.find(b"\n", len(self._waiting) - _MAX_WAITING // 2) + 1
        self._lost += self._waiting[:cut].count(b"\n")
        del self._waiting[:cut]

    def close(self) -> None:
        self.acquire()
        try:
            if self._fd >= 0:
                self._write()
                os.close(self._fd)
                self._fd = -1
        finally:
            self.release()
        super().close()
