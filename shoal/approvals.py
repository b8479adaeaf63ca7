"""What the user approved of the files a repository brings, kept under ``$SHOAL_HOME``.

A repository's own files (its MCP servers, its ``.shoal/config.toml``) come
with whoever wrote the repository, so what they would let shoal do beyond the
user's own settings waits until the user approves that exact content once.
An approval is a key: a hash of where the thing is and everything it says,
so any change to it needs a new approval. Every kind of approval lives in one
store, ``$SHOAL_HOME/approvals.json`` (0600); each record says what it
approved (``kind``, ``path`` …) so a changed file can be told from a new one.
Approvals made before the store was shared, in ``mcp-approvals.json``, still
count. A damaged store approves nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from shoal.paths import Home

PROJECT_CONFIG = "project-config"
"""The kind of an approval of a repository's ``.shoal/config.toml``."""


def store_file(home: Home) -> Path:
    return home.root / "approvals.json"


def _legacy_file(home: Home) -> Path:
    return home.root / "mcp-approvals.json"


def key(**parts: Any) -> str:
    """The approval key of a thing described by ``parts`` (JSON-able values)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def records(home: Home) -> dict[str, dict[str, Any]]:
    """Every approval, by key."""
    found: dict[str, dict[str, Any]] = {}
    for path in (_legacy_file(home), store_file(home)):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # missing or damaged: it approves nothing
        entries = data.get("approvals") if isinstance(data, dict) else None
        if isinstance(entries, dict):
            found.update({k: v for k, v in entries.items() if isinstance(v, dict)})
    return found


def approved(home: Home, approval: str) -> bool:
    return approval in records(home)


def approve(home: Home, approval: str, record: dict[str, Any]) -> None:
    """Keep ``approval``, with ``record`` saying what it approved and when."""
    entries = records(home)
    entries[approval] = {
        **record,
        "approved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    home.ensure()
    write_json(store_file(home), {"approvals": entries}, private=True)


def file_key(path: Path, data: bytes) -> str:
    """The approval key of one file's exact content at one place."""
    return key(kind=PROJECT_CONFIG, path=str(path), sha256=content_hash(data))


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def approved_before(home: Home, path: Path) -> bool:
    """True if some other content of the file at ``path`` was approved (it changed since)."""
    return any(
        r.get("kind") == PROJECT_CONFIG and r.get("path") == str(path)
        for r in records(home).values()
    )


def approve_file(home: Home, path: Path, data: bytes) -> None:
    approve(
        home,
        file_key(path, data),
        {"kind": PROJECT_CONFIG, "path": str(path), "sha256": content_hash(data)},
    )


def write_json(path: Path, data: dict[str, Any], *, private: bool) -> None:
    """Write atomically; ``private`` files are 0600 (their directory 0700 when created)."""
    path.parent.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = 0o600 if private else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
