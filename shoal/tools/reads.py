"""What a workspace has read: the content hash and mtime of each file when last seen.

edit_file refuses to change a file the model has not seen, or one that changed
since it was seen: the model's picture of the file would be stale and the edit
could clobber someone else's change.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileStamp:
    """A file as the model last saw it."""

    sha256: str
    """Hash of the whole content (decides whether the file changed)."""
    mtime_ns: int
    """Modification time then; informative only, since mtimes can be coarse or reset."""
    size: int
    """Size in bytes then."""


class ReadTracker:
    """Files read (or written) through the tools, by resolved path."""

    def __init__(self) -> None:
        self._stamps: dict[Path, FileStamp] = {}
        self._lock = threading.Lock()

    def record(self, path: Path, data: bytes, stat: os.stat_result) -> FileStamp:
        stamp = FileStamp(sha256=digest(data), mtime_ns=stat.st_mtime_ns, size=len(data))
        with self._lock:
            self._stamps[path] = stamp
        return stamp

    def get(self, path: Path) -> FileStamp | None:
        with self._lock:
            return self._stamps.get(path)

    def unchanged(self, path: Path, data: bytes) -> bool:
        """Whether ``data`` is what was last read from ``path`` (False if never read)."""
        stamp = self.get(path)
        return stamp is not None and stamp.sha256 == digest(data)

    def forget(self, path: Path) -> None:
        with self._lock:
            self._stamps.pop(path, None)

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return path in self._stamps
