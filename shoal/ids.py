"""Sortable unique ids: 48-bit milliseconds + 80 random bits, in base32hex (26 characters).

base32hex ("0-9A-V") keeps byte order, so sorting ids as strings sorts them by
creation time, and DuckDB's zone maps can prune on them. Ids made in one
process are strictly increasing.
"""

from __future__ import annotations

import base64
import os
import threading
import time

_lock = threading.Lock()
_last = 0


def new_id() -> str:
    """A 26-character id, unique and increasing within this process."""
    global _last
    with _lock:
        value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
        if value <= _last:
            value = _last + 1
        _last = value
    return base64.b32hexencode(value.to_bytes(16, "big"))[:26].decode()


def id_time(identifier: str) -> float:
    """The creation time (unix seconds) encoded in an id from :func:`new_id`."""
    raw = base64.b32hexdecode(identifier[:16])  # 16 characters = the first 10 bytes
    return int.from_bytes(raw[:6], "big") / 1000
