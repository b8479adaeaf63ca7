"""``@file`` mentions: completing repository paths, and attaching the files mentioned."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from shoal.messages.chat import Attachment

MENTION = re.compile(r"(?<![\w@])@([^\s@]+)")
MAX_ATTACHMENT = 256 * 1024
"""Bytes of one file attached; a longer file is cut, and the message says so."""
MAX_ATTACHED = 1024 * 1024
"""Bytes attached to one message in all (a message must fit in one mailbox frame)."""
_MAX_LISTED = 20_000


class RepoFiles:
    """The files of a directory (git's view when it is a repository), cached for a few seconds."""

    def __init__(self, root: Path, ttl: float = 5.0) -> None:
        self.root = root
        self.ttl = ttl
        self._files: list[str] = []
        self._at = -1e9

    def list(self) -> list[str]:
        if time.monotonic() - self._at > self.ttl:
            self._files, self._at = self._scan(), time.monotonic()
        return self._files

    def _scan(self) -> list[str]:
        try:
            out = subprocess.run(
                ["git", "ls-files", "-co", "--exclude-standard"],
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=10,
            )
            if out.returncode == 0:
                return sorted(out.stdout.splitlines())[:_MAX_LISTED]
        except (OSError, subprocess.TimeoutExpired):
            pass
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "node_modules")
            base = Path(folder).relative_to(self.root)
            found += [str(base / f) if str(base) != "." else f for f in sorted(files)]
            if len(found) >= _MAX_LISTED:
                break
        return found[:_MAX_LISTED]

    def matching(self, prefix: str, limit: int = 50) -> list[str]:
        """Paths starting with ``prefix``, then paths containing it."""
        files = self.list()
        starts = [f for f in files if f.startswith(prefix)]
        if len(starts) >= limit:
            return starts[:limit]
        lowered = prefix.lower()
        contains = [f for f in files if lowered in f.lower() and not f.startswith(prefix)]
        return (starts + contains)[:limit]


def attachments(text: str, root: Path) -> tuple[list[Attachment], list[str]]:
    """The files ``text`` mentions with ``@path`` (inside ``root``), and why others are not."""
    found: list[Attachment] = []
    missing: list[str] = []
    seen: set[str] = set()
    total = 0
    base = root.resolve()
    for match in MENTION.finditer(text):
        mention = match.group(1).rstrip(".,;:!?)")
        path = (base / mention).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            missing.append(f"{mention}: no such file here")
            continue
        rel = str(path.relative_to(base))
        if rel in seen:
            continue
        seen.add(rel)
        if total >= MAX_ATTACHED:
            missing.append(f"{mention}: {MAX_ATTACHED // 1024} KB are attached already")
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            missing.append(f"{mention}: a binary file")
            continue
        content = data[:MAX_ATTACHMENT].decode("utf-8", errors="replace")
        if len(data) > MAX_ATTACHMENT:
            content += f"\n[... cut: the file has {len(data):,} bytes; read_file shows the rest]"
        total += len(content)
        found.append(Attachment(path=rel, content=content))
    return found, missing
