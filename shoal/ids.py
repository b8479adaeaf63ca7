"""Sortable unique ids: 48-bit milliseconds + 80 random bits, in base32hex (26 characters).

base32hex ("0-9A-V") keeps byte order, so sorting ids as strings sorts them by
creation time, and DuckDB's zone maps can prune on them. Ids made in one
process are strictly increasing.

Every message gets an id, so making one is on the path of every round trip:
the random bits come from a per-process generator seeded from the OS (and
reseeded in a forked child, which would otherwise repeat its parent's), not
from a system call per id. Ids are unique, not secret; tokens use ``secrets``.
"""

from __future__ import annotations

import base64
import os
import random
import threading
import time

_lock = threading.Lock()
_last = 0
_random = random.Random(os.urandom(32))
_BITS = 80

# base32hex of every 10-bit value: 26 characters = 130 bits = the 128-bit id and 2 zero bits.
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _reseed() -> None:
    global _last
    _random.seed(os.urandom(32))
    _last = 0


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A 26-character id, unique and increasing within this process."""
    global _last
    with _lock:
        value = (time.time_ns() // 1_000_000) << _BITS | _random.getrandbits(_BITS)
        if value <= _last:
            value = _last + 1
        _last = value
    return encode(value)


def encode(value: int) -> str:
    """The 26 base32hex characters of a 128-bit value (what ``b32hexencode`` gives, unpadded)."""
    v, p = value << 2, _PAIRS
    return (
        p[v >> 120]
        + p[v >> 110 & 1023]
        + p[v >> 100 & 1023]
        + p[v >> 90 & 1023]
        + p[v >> 80 & 1023]
        + p[v >> 70 & 1023]
        + p[v >> 60 & 1023]
        + p[v >> 50 & 1023]
        + p[v >> 40 & 1023]
        + p[v >> 30 & 1023]
        + p[v >> 20 & 1023]
        + p[v >> 10 & 1023]
        + p[v & 1023]
    )


def id_time(identifier: str) -> float:
    """The creation time (unix seconds) encoded in an id from :func:`new_id`."""
    raw = base64.b32hexdecode(identifier[:16])  # 16 characters = the first 10 bytes
    return int.from_bytes(raw[:6], "big") / 1000
