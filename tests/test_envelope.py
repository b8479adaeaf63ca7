"""The envelope, ids and wire frames: what may and may not travel."""

from __future__ import annotations

import base64
import os

import pytest

from shoal.ids import encode, id_time, new_id
from shoal.mailbox import wire
from shoal.mailbox.envelope import Envelope, UnknownKind
from shoal.messages.actors import EchoReply, EchoRequest
from shoal.messages.base import PAYLOADS, InvalidMessage


def test_round_trip_keeps_every_field() -> None:
    env = Envelope.of(
        EchoRequest(text="hi", seq=3), sender="a-1", recipient="role:echo", task_id="t1"
    )
    back = Envelope.decode(env.encode())
    assert back == env
    assert isinstance(back.parse_payload(), EchoRequest)
    assert back.parse_payload().seq == 3


def test_reply_is_addressed_to_the_sender_and_answers_the_id() -> None:
    env = Envelope.of(EchoRequest(text="x"), sender="client-1", recipient="echo-1", task_id="t")
    reply = env.reply(EchoReply(text="x", handled_by="echo-1"))
    assert (reply.sender, reply.recipient, reply.reply_to, reply.task_id) == (
        "echo-1",
        "client-1",
        env.id,
        "t",
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"kind": "echo.request"}',
        b'{"kind": "NoDots", "sender": "a", "recipient": "b"}',
        b'{"kind": "echo.request", "sender": "a b", "recipient": "b"}',
        b'{"kind": "echo.request", "sender": "a", "recipient": "b", "attempt": 0}',
        b'{"kind": "echo.request", "sender": "a", "recipient": "b", "extra": 1}',
        b'{"kind": "echo.request", "sender": "a", "recipient": "b", "payload": [1]}',
    ],
)
def test_malformed_envelopes_are_rejected(body: bytes) -> None:
    with pytest.raises(InvalidMessage):
        Envelope.decode(body)


def test_payload_is_validated_per_kind() -> None:
    env = Envelope(kind="echo.request", sender="a", recipient="b", payload={"seq": "x"})
    with pytest.raises(InvalidMessage):
        env.parse_payload()
    with pytest.raises(UnknownKind):
        Envelope(kind="no.such", sender="a", recipient="b").parse_payload()
    assert "echo.request" in PAYLOADS and "orchestrator.status" in PAYLOADS


def test_ids_are_unique_increasing_and_carry_their_time() -> None:
    ids = [new_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)
    import time

    assert abs(id_time(ids[-1]) - time.time()) < 5


def test_id_encoding_is_base32hex_so_ids_sort_as_their_values() -> None:
    values = [
        0,
        1,
        2**127,
        2**128 - 1,
        *(int.from_bytes(os.urandom(16), "big") for _ in range(2000)),
    ]
    for value in values:
        assert encode(value) == base64.b32hexencode(value.to_bytes(16, "big"))[:26].decode()


def test_a_forked_child_makes_ids_of_its_own() -> None:
    # Without a reseed the child's generator would repeat the parent's next ids.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids to the parent, then out without cleanup
        os.write(write, " ".join(new_id()[10:] for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    parent = {new_id()[10:] for _ in range(5)}
    assert len(child) == 5 and not child & parent


def test_ack_frames_are_checked() -> None:
    assert wire.decode_acks(wire.encode_acks(["a", "b"])) == ["a", "b"]
    for bad in (b"{}", b"[1]", b'["' + b"x" * 65 + b'"]', b"nope"):
        with pytest.raises(ValueError):
            wire.decode_acks(bad)


def test_shapes_are_checked_for_each_new_string_even_after_good_ones_were_seen() -> None:
    good = Envelope.of(EchoRequest(text="x"), sender="client-1", recipient="echo-1").encode()
    for _ in range(3):  # the good strings are now known
        Envelope.decode(good)
    for before, after in (
        (b'"sender":"client-1"', b'"sender":"client 1"'),
        (b'"recipient":"echo-1"', b'"recipient":"echo\\n1"'),
        (b'"kind":"echo.request"', b'"kind":"Echo.request"'),
    ):
        bad = good.replace(before, after)
        assert bad != good
        with pytest.raises(InvalidMessage):
            Envelope.decode(bad)
