"""The envelope every message travels in.

One envelope for every message (DESIGN.md §2): ``id``, ``kind``, ``sender``,
``recipient``, ``task_id``, ``reply_to``, ``attempt``, ``sent_at`` and the
``payload``, a JSON object whose shape the kind's payload class fixes
(:mod:`shoal.messages`; a receiver validates it with :meth:`Envelope.parse_payload`).
The envelope is a msgspec Struct and travels as JSON: decoding and validating it
runs in C, and nothing is ever unpickled from the wire. The transport knows no
domain: it looks payload classes up by kind.

Every process a message passes decodes it, so :meth:`Envelope.decode` is on the
hot path four times a round trip. The shapes of ``kind``, ``sender`` and
``recipient`` are checked once per distinct string (a few hundred in a daemon's
life): msgspec's own pattern constraints ran the regular expressions on every
decode, which cost three quarters of the decode.
"""

from __future__ import annotations

import re
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
# Strings whose shape is known to be right; cleared when full (client names are many).
_CHECKED_MAX = 4096


class UnknownKind(ValueError):
    """A message's kind has no registered payload class."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One message, exactly as it travels and as it is recorded."""

    kind: Annotated[str, Meta(min_length=3, max_length=256)]
    """What the message is, e.g. ``echo.request``; selects the payload class and handler.
    Shape ``_KIND``, checked by :meth:`decode`."""
    sender: Annotated[str, Meta(min_length=1, max_length=128)]
    """Address of the sending actor or client (its DEALER identity). Shape ``_ADDRESS``."""
    recipient: Annotated[str, Meta(min_length=1, max_length=128)]
    """An actor or client address, ``role:<role>``, ``orchestrator``, or ``*`` to publish.
    Shape ``_ADDRESS``."""
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
        env = _DECODER.decode(data)
        if env.kind not in _checked or env.sender not in _checked or env.recipient not in _checked:
            _check_shapes(env)
        return env


def _check_shapes(env: Envelope) -> None:
    """Raise InvalidMessage, as the patterns on the fields would, for a wrong shape."""
    for field, value, shape in (
        ("kind", env.kind, _KIND_RE),
        ("sender", env.sender, _ADDRESS_RE),
        ("recipient", env.recipient, _ADDRESS_RE),
    ):
        if value in _checked:
            continue
        if shape.match(value) is None:
            raise msgspec.ValidationError(
                f"Expected `str` matching regex {shape.pattern!r} - at `$.{field}`"
            )
        if len(_checked) >= _CHECKED_MAX:
            _checked.clear()
        _checked.add(value)


_KIND_RE = re.compile(_KIND)
_ADDRESS_RE = re.compile(_ADDRESS)
_checked: set[str] = set()
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Envelope)
