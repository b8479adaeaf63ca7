"""The frames on shoal's ZeroMQ sockets.

A DEALER sends ``[tag, body]``; the broker's ROUTER sees ``[identity, tag, body]``
and sends ``[identity, tag, body]`` back. Bodies are JSON, never pickles.

    tag    direction          body
    MSG    both ways          an Envelope
    ACK    peer -> broker     JSON list of message ids the peer has handled
    BEAT   actor -> broker    a Beat: who the actor is and what it holds
    PONG   broker -> actor    a Pong: the broker is alive

On the event bus (PUB/SUB) a frame is ``[topic, envelope]`` with topic = kind.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

MSG = b"M"
ACK = b"A"
BEAT = b"B"
PONG = b"P"

# More ids than this in one ACK frame is a malformed frame.
MAX_ACK_IDS = 10_000
# A Beat lists at most this many held ids; held_total says if there were more.
MAX_HELD_IDS = 1_000


class Beat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An actor's heartbeat. The first one also introduces the actor to the broker."""

    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:@/-]{1,128}$")]
    role: str
    pid: int
    instance: str
    """Unique per process start: a new instance means unacked work must be redelivered."""
    held: Annotated[list[str], Meta(max_length=MAX_HELD_IDS)] = msgspec.field(default_factory=list)
    """Ids the actor has received and not yet acked (queued or being handled)."""
    held_total: int = 0
    busy_since: float | None = None
    progress_at: float | None = None
    """Wall time of the last message the actor sent (its sign of progress while busy)."""

    def encode(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def decode(cls, body: bytes) -> Beat:
        """A Beat from the wire; msgspec.DecodeError if it is not one."""
        return _BEAT.decode(body)


class Pong(msgspec.Struct, kw_only=True):
    broker_pid: int
    broker_started_at: float

    def encode(self) -> bytes:
        return msgspec.json.encode(self)


_BEAT = msgspec.json.Decoder(Beat)
_ACKS = msgspec.json.Decoder(
    Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=MAX_ACK_IDS)]
)


def encode_acks(ids: list[str]) -> bytes:
    return msgspec.json.encode(ids)


def decode_acks(body: bytes) -> list[str]:
    """The ids of an ACK frame; ValueError if it is not a list of at most 10,000 ids of 1 to
    64 characters."""
    try:
        return _ACKS.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"ACK body must be a list of at most 10,000 ids: {exc}") from None
