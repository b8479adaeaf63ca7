"""The write-ahead journal: routed messages and acks, on disk before they are routed.

The recorder writes to DuckDB in batches every few milliseconds; the journal
covers the gap. The broker appends each batch with one ``write`` before routing
it, so a ``kill -9`` of the orchestrator loses nothing the kernel has accepted.
On start the journal is replayed into DuckDB (skipping what is already there)
and emptied; it is also emptied whenever everything in it has been flushed.

Record layout: ``<u32 length><u8 type><payload>``; a torn last record is ignored.
    type M: <u8 tracked><f64 recorded_at><envelope JSON>
    type A: <f64 acked_at><JSON list of message ids>
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = struct.Struct("<IB")
_MSG_PREFIX = struct.Struct("<Bd")
_ACK_PREFIX = struct.Struct("<d")
MSG, ACK = 1, 2


def message_record(tracked: bool, recorded_at: float, body: bytes) -> bytes:
    payload = _MSG_PREFIX.pack(tracked, recorded_at) + body
    return _HEADER.pack(len(payload), MSG) + payload


def ack_record(acked_at: float, ids: list[str]) -> bytes:
    payload = _ACK_PREFIX.pack(acked_at) + json.dumps(ids).encode()
    return _HEADER.pack(len(payload), ACK) + payload


@dataclass
class Replayed:
    messages: list[tuple[bool, float, bytes]] = field(default_factory=list)
    acks: list[tuple[float, str]] = field(default_factory=list)


class Journal:
    """Append-only; owned by the broker thread (one writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self._fd).st_size

    def append(self, records: list[bytes]) -> None:
        data = b"".join(records)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += len(data)

    def truncate(self) -> None:
        os.ftruncate(self._fd, 0)
        self.size = 0

    def close(self) -> None:
        os.close(self._fd)

    @staticmethod
    def replay(path: Path) -> Replayed:
        out = Replayed()
        if not path.exists():
            return out
        data = path.read_bytes()
        pos = 0
        while pos + _HEADER.size <= len(data):
            length, kind = _HEADER.unpack_from(data, pos)
            start, end = pos + _HEADER.size, pos + _HEADER.size + length
            if end > len(data):
                break  # torn write at the tail
            if kind == MSG:
                tracked, recorded_at = _MSG_PREFIX.unpack_from(data, start)
                out.messages.append(
                    (bool(tracked), recorded_at, data[start + _MSG_PREFIX.size : end])
                )
            elif kind == ACK:
                (acked_at,) = _ACK_PREFIX.unpack_from(data, start)
                ids = json.loads(data[start + _ACK_PREFIX.size : end])
                out.acks.extend((acked_at, i) for i in ids)
            pos = end
        return out
