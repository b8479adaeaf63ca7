"""What every message is made of: msgspec Structs, the kind registry, and conversions.

A payload is a :class:`Payload` registered for its kind with :func:`message`; the
nested parts of payloads are :class:`Model` s. Both are msgspec Structs: decoding and
validation run in C (a message crosses several processes on every hop), and no field
that is not declared is accepted. Constructing a Struct does not validate it (the
code that builds a message is trusted); decoding and :func:`from_dict` do.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, TypeVar

import msgspec

InvalidMessage = msgspec.DecodeError
"""What a frame, an envelope or a payload that does not validate raises (its subclass
``msgspec.ValidationError`` for a wrong field)."""


class Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of the parts payloads are made of."""


class Payload(Model):
    """Base of every payload; ``kind`` is the message kind it travels as."""

    kind: ClassVar[str]


PAYLOADS: dict[str, type[Payload]] = {}
P = TypeVar("P", bound=Payload)
S = TypeVar("S", bound=msgspec.Struct)


_POLLED: set[str] = set()


def message(kind: str, *, polled: bool = False):
    """Register a payload class as the payload of ``kind``.

    ``polled``: a read a dashboard, ``status --live`` or a script asks again and again (or
    its answer). The broker routes those between a client and the orchestrator without
    journaling or recording them: they start no work, nothing is resumed or redelivered
    for them, and recorded they would grow the database for as long as someone polls.
    """

    def register(cls: type[P]) -> type[P]:
        if kind in PAYLOADS:
            raise ValueError(f"message kind {kind!r} registered twice")
        cls.kind = kind
        PAYLOADS[kind] = cls
        if polled:
            _POLLED.add(kind)
        return cls

    return register


def polled_kinds() -> frozenset[str]:
    """Every kind registered with ``polled=True``."""
    if not _all_registered:
        _register_all()
    return frozenset(_POLLED)


def payload_type(kind: str) -> type[Payload] | None:
    """The payload class of ``kind`` (every domain's messages are registered first)."""
    if not _all_registered:
        _register_all()
    return PAYLOADS.get(kind)


_all_registered = False


def _register_all() -> None:
    global _all_registered
    from shoal.messages import DOMAINS

    for domain in DOMAINS:  # importing a domain's module registers its kinds
        importlib.import_module(f"shoal.messages.{domain}")
    _all_registered = True


def to_dict(struct: msgspec.Struct) -> dict[str, Any]:
    """``struct`` as JSON-ready builtins (nested Structs included)."""
    return msgspec.to_builtins(struct)


def from_dict(cls: type[S], data: Any) -> S:
    """``data`` (builtins, e.g. decoded JSON) validated as a ``cls``; ValidationError if not."""
    return msgspec.convert(data, cls)


def to_json(struct: msgspec.Struct) -> bytes:
    return msgspec.json.encode(struct)


def from_json(cls: type[S], data: bytes | str) -> S:
    return msgspec.json.decode(data, type=cls)


def replace(struct: S, **changes: Any) -> S:
    """A copy of ``struct`` with ``changes``."""
    return msgspec.structs.replace(struct, **changes)


def json_schema(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON schema of ``cls`` (for a model's tool arguments), definitions inlined."""
    return _inline(msgspec.json.schema(cls))


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its ``$ref``s to ``$defs`` replaced by the definitions (providers
    differ in what references they accept; none refuses a plain nested object)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items() if k not in ("$defs", "title")}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(schema)
