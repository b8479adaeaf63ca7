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

import json

from pydantic import BaseModel, ConfigDict, Field

MSG = b"M"
ACK = b"A"
BEAT = b"B"
PONG = b"P"

# More ids than this in one ACK frame is a malformed frame.
MAX_ACK_IDS = 10_000
# A Beat lists at most this many held ids; held_total says if there were more.
MAX_HELD_IDS = 1_000


class Beat(BaseModel):
    """An actor's heartbeat. The first one also introduces the actor to the broker."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.:@/-]{1,128}$")
    role: str
    pid: int
    instance: str
    """Unique per process start: a new instance means unacked work must be redelivered."""
    held: list[str] = Field(default_factory=list, max_length=MAX_HELD_IDS)
    """Ids the actor has received and not yet acked (queued or being handled)."""
    held_total: int = 0
    busy_since: float | None = None
    progress_at: float | None = None
    """Wall time of the last message the actor sent (its sign of progress while busy)."""


class Pong(BaseModel):
    broker_pid: int
    broker_started_at: float


def encode_acks(ids: list[str]) -> bytes:
    return json.dumps(ids).encode()


def decode_acks(body: bytes) -> list[str]:
    ids = json.loads(body)
    if not isinstance(ids, list) or len(ids) > MAX_ACK_IDS:
        raise ValueError("ACK body must be a list of at most 10,000 ids")
    if not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise ValueError("ACK ids must be strings of 1 to 64 characters")
    return ids
