"""The envelope every message travels in.

One envelope for every message (DESIGN.md §2): ``id``, ``kind``, ``sender``,
``recipient``, ``task_id``, ``reply_to``, ``attempt``, ``sent_at`` and the
``payload``, a JSON object whose shape the kind's payload class fixes
(:mod:`shoal.messages`; a receiver validates it with :meth:`Envelope.parse_payload`).
The envelope is a msgspec Struct and travels as JSON: decoding and validating it
runs in C, and nothing is ever unpickled from the wire. The transport knows no
domain: it looks payload classes up by kind.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from shoal.ids import new_id
from shoal.messages.base import InvalidMessage, Payload, payload_type, to_dict

__all__ = [
    "ORCHESTRATOR",
    "PUBLISH",
    "ROLE_PREFIX",
    "Envelope",
    "InvalidMessage",
    "UnknownKind",
]

# Recipient that is not an actor but the orchestrator itself (its services answer).
ORCHESTRATOR = "orchestrator"
# Recipient meaning "publish on the event bus" (topic = kind).
PUBLISH = "*"
# Prefix of a recipient that names a role: the broker picks a ready actor of it.
ROLE_PREFIX = "role:"

_KIND = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
_ADDRESS = r"^[A-Za-z0-9_.:*@/-]{1,128}$"
_ID = Annotated[str, Meta(max_length=64)]


class UnknownKind(ValueError):
    """A message's kind has no registered payload class."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One message, exactly as it travels and as it is recorded."""

    kind: Annotated[str, Meta(pattern=_KIND)]
    """What the message is, e.g. ``echo.request``; selects the payload class and handler."""
    sender: Annotated[str, Meta(pattern=_ADDRESS)]
    """Address of the sending actor or client (its DEALER identity)."""
    recipient: Annotated[str, Meta(pattern=_ADDRESS)]
    """An actor or client address, ``role:<role>``, ``orchestrator``, or ``*`` to publish."""
    id: Annotated[str, Meta(min_length=1, max_length=64)] = msgspec.field(default_factory=new_id)
    """Sortable unique id; handlers are idempotent by it."""
    task_id: _ID | None = None
    """The task this message belongs to, if any."""
    reply_to: _ID | None = None
    """Id of the message this one answers; a reply also acks that message."""
    attempt: Annotated[int, Meta(ge=1)] = 1
    """Delivery attempt, raised by the broker on each redelivery."""
    sent_at: Annotated[float, Meta(ge=0, lt=1e11)] = msgspec.field(default_factory=time.time)
    """Unix time at which the sender made the message."""
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    """The kind's payload as a JSON object."""

    @classmethod
    def of(cls, payload: Payload, *, sender: str, recipient: str, **fields: Any) -> Envelope:
        return cls(
            kind=payload.kind,
            sender=sender,
            recipient=recipient,
            payload=to_dict(payload),
            **fields,
        )

    def reply(self, payload: Payload, *, sender: str | None = None) -> Envelope:
        """A message answering this one, addressed to its sender."""
        return Envelope.of(
            payload,
            sender=sender or self.recipient,
            recipient=self.sender,
            task_id=self.task_id,
            reply_to=self.id,
        )

    def parse_payload(self) -> Payload:
        """The payload validated against its kind's class (InvalidMessage if it is not)."""
        cls = payload_type(self.kind)
        if cls is None:
            raise UnknownKind(f"no payload class for message kind {self.kind!r}")
        return msgspec.convert(self.payload, cls)

    def again(self) -> Envelope:
        """This message as its next delivery attempt."""
        return msgspec.structs.replace(self, attempt=self.attempt + 1)

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """An envelope from the wire; InvalidMessage if ``data`` is not a valid one."""
        return _DECODER.decode(data)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Envelope)
