"""Delivery through the real broker: request/reply, acks, redelivery, malformed traffic."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal

import pytest
import zmq

from shoal import daemon
from shoal.client import query as read
from shoal.mailbox import wire
from shoal.mailbox.aio import AsyncMailboxClient
from shoal.mailbox.client import MailboxClient
from shoal.mailbox.envelope import Envelope
from shoal.mailbox.errors import RemoteError
from shoal.mailbox.events import Subscriber
from shoal.messages.actors import ActorRetire, ActorSpawn, EchoRequest
from shoal.messages.base import from_dict
from shoal.paths import Home
from tests.conftest import wait_for
from tests.roles import (
    CountReply,
    CountRequest,
    KeepRequest,
    KeptReply,
    KeptRequest,
    PingRequest,
    PingResult,
)


def spawn(home: Home, role: str, count: int = 1, name: str | None = None) -> list[str]:
    return daemon.request(home, ActorSpawn(role=role, count=count, name=name)).names


def actor(home: Home, name: str):
    return next(a for a in daemon.status(home).actors if a.name == name)


def test_two_actors_exchange_10000_requests_none_lost_none_duplicated(orchestrator: Home) -> None:
    spawn(orchestrator, "echo")
    spawn(orchestrator, "tests.roles:PingerActor", name="pinger")
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        reply = client.request("pinger", PingRequest(target="echo-1", count=10_000), timeout=120)
    result = reply.parse_payload()
    assert isinstance(result, PingResult)
    assert result.missing == []
    assert result.duplicates == 0
    assert result.received == 10_000

    def counts() -> dict[str, list[int]]:
        return {row[0]: row[1:3] for row in read(orchestrator, "messages.summary").rows}

    # The recorder batches; on a busy machine the last batch can trail the replies.
    done = {"echo.request": [10_000, 10_000], "echo.reply": [10_000, 10_000]}
    wait_for(lambda: all(counts().get(k) == v for k, v in done.items()), timeout=60, what="records")
    assert {k: counts()[k] for k in done} == done


def test_kill_9_of_an_actor_mid_stream_loses_nothing(orchestrator: Home) -> None:
    spawn(orchestrator, "echo")
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        client.request("echo-1", EchoRequest(text="warm"), timeout=30)
        for seq in range(1000):
            client.send("echo-1", EchoRequest(text="m", seq=seq, delay=0.002))
        seen: set[int] = set()
        killed_pid = None
        while len(seen) < 1000:
            env = client.recv(timeout=60)
            assert env is not None, f"stream stalled after {len(seen)} replies"
            seen.add(env.payload["seq"])
            if killed_pid is None and len(seen) >= 250:
                killed_pid = actor(orchestrator, "echo-1").pid
                os.kill(killed_pid, signal.SIGKILL)
    assert seen == set(range(1000))
    status = daemon.status(orchestrator)
    echo = next(a for a in status.actors if a.name == "echo-1")
    assert echo.restarts == 1 and echo.pid != killed_pid and echo.state == "ready"
    assert status.messages.redelivered >= 1


def test_an_actor_that_stops_heartbeating_is_restarted(orchestrator: Home) -> None:
    spawn(orchestrator, "echo")
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        client.request("echo-1", EchoRequest(text="warm"), timeout=30)
        frozen = actor(orchestrator, "echo-1").pid
        os.kill(frozen, signal.SIGSTOP)
        reply = client.request("echo-1", EchoRequest(text="still there?"), timeout=30)
    assert reply.payload["text"] == "still there?"
    echo = actor(orchestrator, "echo-1")
    assert echo.restarts == 1 and echo.pid != frozen
    wait_for(lambda: not os.path.exists(f"/proc/{frozen}"), what="frozen actor killed")


def test_an_aside_handler_answers_while_the_actor_works(orchestrator: Home) -> None:
    from tests.stall_roles import AsideRequest, AsideResult, SleepRequest

    # As an executor's workspace.restore beside its next task: never behind that work.
    spawn(orchestrator, "tests.stall_roles:AsideSleeperActor", name="sleeper")
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        assert client.request("sleeper", AsideRequest(), timeout=30).payload["sleeping"] is False
        client.send("sleeper", SleepRequest(seconds=20))

        def asleep() -> bool:  # answered within seconds, not after the 20 s of work
            reply = client.request("sleeper", AsideRequest(), timeout=5)
            return from_dict(AsideResult, reply.payload).sleeping

        wait_for(asleep, timeout=10, what="an answer while the work runs")


def test_handlers_are_idempotent_by_message_id(orchestrator: Home) -> None:
    spawn(orchestrator, "tests.roles:CounterActor", name="counter")
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        env = Envelope.of(CountRequest(), sender=client.name, recipient="counter")
        client.send_envelope(env)
        first = client.recv(timeout=30)
        client.send_envelope(env)  # the same id again: answered again, not handled again
        second = client.recv(timeout=30)
        assert first is not None and second is not None
        assert first.payload["total"] == second.payload["total"] == 1
        assert first.id == second.id  # the very same reply, resent
        again = client.request("counter", CountRequest(), timeout=10)
        assert from_dict(CountReply, again.payload).total == 2


def test_a_kept_message_survives_kill_9_until_released(orchestrator: Home) -> None:
    spawn(orchestrator, "tests.roles:KeeperActor", name="keeper")
    with MailboxClient(orchestrator.mailbox_endpoint) as client:

        def kept(release: bool = False) -> KeptReply:
            reply = client.request("keeper", KeptRequest(release=release), timeout=30)
            return from_dict(KeptReply, reply.payload)

        client.send("keeper", KeepRequest(text="steer left"))
        first = kept()
        assert first.texts == ["steer left"]
        os.kill(first.pid, signal.SIGKILL)
        # Not acked: the broker hands it to the next instance.
        wait_for(lambda: kept().pid != first.pid, timeout=30, what="the keeper restarted")
        second = kept(release=True)
        assert second.texts == ["steer left"] and second.pid != first.pid
        assert actor(orchestrator, "keeper").restarts == 1
        os.kill(second.pid, signal.SIGKILL)
        # Released = acked: the third instance never sees it.
        wait_for(lambda: kept().pid not in (first.pid, second.pid), timeout=30, what="restart")
        assert kept().texts == []


def test_errors_come_back_as_remote_errors(orchestrator: Home) -> None:
    spawn(orchestrator, "tests.roles:CounterActor", name="counter")
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        with pytest.raises(RemoteError) as failed:
            client.request("counter", CountRequest(fail=True), timeout=30)
        assert failed.value.code == "handler_failed" and "asked to fail" in failed.value.message
        with pytest.raises(RemoteError) as unhandled:
            client.request("counter", EchoRequest(text="?"), timeout=10)
        assert unhandled.value.code == "no_handler"
        with pytest.raises(RemoteError) as refused:
            client.request("orchestrator", ActorSpawn(role="no-such-role"), timeout=10)
        assert refused.value.code == "refused" and "unknown actor role" in refused.value.message


def test_message_to_nobody_is_refused_after_the_pending_ttl(home: Home, monkeypatch) -> None:
    monkeypatch.setenv("SHOAL_PENDING_TTL", "0.5")
    daemon.start(home)
    with MailboxClient(home.mailbox_endpoint) as client, pytest.raises(RemoteError) as failed:
        client.request("nobody-here", EchoRequest(text="?"), timeout=10)
    assert failed.value.code == "undeliverable"
    assert daemon.status(home).messages.undeliverable == 1


def test_role_addressing_reaches_an_actor_started_later(orchestrator: Home) -> None:
    spawn(orchestrator, "echo", count=2)
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        handled_by = {
            client.request("role:echo", EchoRequest(text="r"), timeout=30).payload["handled_by"]
            for _ in range(20)
        }
    assert handled_by <= {"echo-1", "echo-2"} and handled_by


def test_1000_malformed_frames_are_dropped_and_counted(home: Home, monkeypatch) -> None:
    monkeypatch.setenv("SHOAL_MAX_FRAME_BYTES", "65536")
    daemon.start(home)
    spawn(home, "echo")
    rng = random.Random(7)
    ctx = zmq.Context()
    fuzzer = ctx.socket(zmq.DEALER)
    fuzzer.setsockopt(zmq.IDENTITY, b"fuzzer")
    fuzzer.setsockopt(zmq.LINGER, 0)
    fuzzer.connect(home.mailbox_endpoint)
    spoofed = Envelope.of(EchoRequest(text="x"), sender="echo-1", recipient="echo-1").encode()
    makers = [
        lambda: [rng.randbytes(rng.randint(0, 64))],
        lambda: [wire.MSG, rng.randbytes(rng.randint(1, 200))],
        lambda: [wire.MSG, json.dumps({"kind": "echo.request"}).encode()],
        lambda: [b"Z", b"{}"],
        lambda: [wire.ACK, b"not json"],
        lambda: [wire.BEAT, b"{}"],
        lambda: [wire.MSG, spoofed],
        lambda: [wire.MSG, b"{" + b" " * 70_000 + b"}"],
        lambda: [wire.MSG, b"{}", b"extra"],
    ]
    try:
        with MailboxClient(home.mailbox_endpoint) as client:
            client.request("echo-1", EchoRequest(text="warm"), timeout=30)
            for i in range(1000):
                fuzzer.send_multipart(makers[i % len(makers)]())
                if i % 50 == 0:
                    reply = client.request("echo-1", EchoRequest(text="ok", seq=i), timeout=10)
                    assert reply.payload["seq"] == i
            wait_for(lambda: daemon.status(home).messages.dropped >= 1000, what="drops counted")
            assert daemon.status(home).messages.dropped == 1000
            assert client.request("echo-1", EchoRequest(text="after"), timeout=10)
    finally:
        fuzzer.close()
        ctx.term()


def test_async_client_and_event_bus(orchestrator: Home) -> None:
    with Subscriber(orchestrator.events_endpoint, ["actor."]) as events:
        wait_for(lambda: True)  # a SUB needs a moment before it receives

        async def run() -> str:
            async with AsyncMailboxClient(orchestrator.mailbox_endpoint) as client:
                await client.request("orchestrator", ActorSpawn(role="echo"), timeout=10)
                replies = await asyncio.gather(
                    *(
                        client.request("echo-1", EchoRequest(text=str(i)), timeout=30)
                        for i in range(50)
                    )
                )
                assert sorted(int(r.payload["text"]) for r in replies) == list(range(50))
                return "ok"

        assert asyncio.run(run()) == "ok"
        started = events.recv(timeout=10)
    assert started is not None and started.kind == "actor.started"
    assert started.payload["name"] == "echo-1"


def test_a_message_waits_for_a_client_that_connects_later(orchestrator: Home) -> None:
    with MailboxClient(orchestrator.mailbox_endpoint) as sender:
        sent = sender.send("late-client", EchoRequest(text="for later"))
        with MailboxClient(orchestrator.mailbox_endpoint, name="late-client") as late:
            got = late.recv(timeout=10)
    assert got is not None and got.id == sent.id


def test_work_for_a_retired_actor_is_refused_not_kept_forever(orchestrator: Home) -> None:
    spawn(orchestrator, "echo")
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        client.request("echo-1", EchoRequest(text="warm"), timeout=30)
        pid = actor(orchestrator, "echo-1").pid
        os.kill(pid, signal.SIGSTOP)  # it holds the next message without answering
        sent = client.send("echo-1", EchoRequest(text="lost cause"))
        daemon.request(orchestrator, ActorRetire(name="echo-1"))
        reply = client.recv(timeout=30)
    assert reply is not None and reply.reply_to == sent.id
    assert reply.kind == "mailbox.error" and reply.payload["code"] == "undeliverable"
    assert daemon.status(orchestrator).messages.pending == 0


def test_an_answer_nobody_takes_does_not_bounce_errors(home: Home, monkeypatch) -> None:
    import time

    monkeypatch.setenv("SHOAL_PENDING_TTL", "0.3")
    daemon.start(home)
    with MailboxClient(home.mailbox_endpoint, name="gone-soon") as client:
        client.send("orchestrator", ActorSpawn(role="no-such-role"))  # answered later
    time.sleep(1.5)  # the answer waits, expires, and its error goes to the orchestrator
    before = daemon.status(home).messages.routed
    time.sleep(1.0)
    after = daemon.status(home).messages.routed
    assert after - before < 10  # only the status requests themselves
