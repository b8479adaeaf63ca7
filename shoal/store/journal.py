"""The write-ahead journal: routed messages and acks, on disk before they are routed.

The recorder writes to DuckDB in batches every few milliseconds; the journal
covers the gap. The broker appends each batch with one ``write`` before routing
it, so a ``kill -9`` of the orchestrator loses nothing the kernel has accepted.
On start the journal is replayed into DuckDB (skipping what is already there)
and emptied; it is also emptied whenever everything in it has been flushed.

A full disk does not stop the broker: records that cannot be written are held
in memory, in order, and written by :meth:`Journal.retry` once there is room; a
record torn by the failed write is cut off, so the file stays a sequence of
whole records.

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

import msgspec

from shoal.store.space import Space, is_disk_full

_HEADER = struct.Struct("<IB")
_MSG_PREFIX = struct.Struct("<Bd")
_ACK_PREFIX = struct.Struct("<d")
# Header and prefix packed at once: a record costs one pack and one copy of the body.
_MSG_HEAD = struct.Struct("<IBBd")
_ACK_HEAD = struct.Struct("<IBd")
MSG, ACK = 1, 2


def message_record(tracked: bool, recorded_at: float, body: bytes) -> bytes:
    return _MSG_HEAD.pack(_MSG_PREFIX.size + len(body), MSG, tracked, recorded_at) + body


def ack_record(acked_at: float, ids: list[str]) -> bytes:
    listed = msgspec.json.encode(ids)
    return _ACK_HEAD.pack(_ACK_PREFIX.size + len(listed), ACK, acked_at) + listed


@dataclass
class Replayed:
    messages: list[tuple[bool, float, bytes]] = field(default_factory=list)
    acks: list[tuple[float, str]] = field(default_factory=list)


class Journal:
    """Append-only; owned by the broker thread (one writer)."""

    def __init__(self, path: Path, space: Space | None = None) -> None:
        self.path = path
        self.space = space or Space(path.parent)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self._fd).st_size
        self.held: list[bytes] = []
        """Records the disk had no room for, oldest first; :meth:`retry` writes them."""

    def append(self, records: list[bytes]) -> bool:
        """Write ``records`` with one ``write``; False if the disk is full and they are held.

        While records are held, new ones queue behind them (order is kept) until
        :meth:`retry` finds room.
        """
        if self.held:
            self.held.extend(records)
            return False
        return self._write(records)

    def retry(self) -> bool:
        """Write the held records; True once none are left."""
        if not self.held:
            return True
        held, self.held = self.held, []
        return self._write(held)

    def _write(self, records: list[bytes]) -> bool:
        data = records[0] if len(records) == 1 else b"".join(records)
        try:
            written = os.write(self._fd, data)
            if written < len(data):  # rare (a signal, a nearly full disk): write the rest
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            # Cut off what part of the batch got in: the next write starts on a record
            # boundary, and the whole batch is written again from the memory copy.
            os.ftruncate(self._fd, self.size)
            self.held = list(records)
            self.space.failed("journal", exc)
            return False
        self.size += len(data)
        self.space.wrote("journal")
        return True

    def truncate(self) -> None:
        """Empty the journal (everything in it, held records too, is in DuckDB)."""
        os.ftruncate(self._fd, 0)
        self.size = 0
        self.held = []
        self.space.wrote("journal")

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
