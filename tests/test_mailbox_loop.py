"""The socket loop shared by the broker, the actors and the API bridge, on real sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from shoal.mailbox import frames
from shoal.mailbox.envelope import Envelope
from shoal.mailbox.loop import SocketLoop
from shoal.messages.actors import EchoRequest
from tests.conftest import wait_for


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    """A ROUTER (the loop's side) and a DEALER sending to it, over ipc."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/loop.sock"
    router.bind(endpoint)
    dealer.setsockopt(zmq.IDENTITY, b"client")
    dealer.connect(endpoint)
    try:
        yield router, dealer
    finally:
        router.close()
        dealer.close()
        ctx.term()


class Running:
    """A loop on a thread of its own, stopped and joined by the test."""

    def __init__(self, loop: SocketLoop) -> None:
        self.loop = loop
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(5)
        assert not self.thread.is_alive(), "the loop did not stop"
        self.loop.close()


def test_a_malformed_message_is_dropped_and_counted_and_the_next_one_handled(pair) -> None:
    router, dealer = pair
    envelopes: list[Envelope] = []

    def on_frames(message: list[bytes]) -> None:
        _identity, body = message
        envelopes.append(Envelope.decode(body))

    loop = SocketLoop(name="test")
    loop.add(router, on_frames)
    running = Running(loop)
    good = Envelope.of(EchoRequest(text="hi"), sender="client", recipient="echo")
    dealer.send(b"{not json")
    dealer.send(b'{"kind": "NOT A KIND", "sender": "client", "recipient": "echo"}')
    dealer.send_multipart([b"one", b"too many"])  # unpacking fails: a ValueError
    dealer.send(good.encode())
    wait_for(lambda: envelopes, what="the good message handled")
    running.stop()
    assert loop.dropped == 3
    assert envelopes == [good]
    assert running.error is None


def test_a_failing_callback_does_not_end_the_loop(pair, caplog) -> None:
    router, dealer = pair
    seen: list[bytes] = []

    def on_frames(message: list[bytes]) -> None:
        if message[1] == b"boom":
            raise RuntimeError("a bug in the handler")
        seen.append(message[1])

    loop = SocketLoop(name="test")
    loop.add(router, on_frames)
    running = Running(loop)
    dealer.send(b"boom")
    dealer.send(b"after")
    wait_for(lambda: seen == [b"after"], what="the message after the failing one")
    assert running.thread.is_alive()
    running.stop()
    assert loop.dropped == 1
    assert "a bug in the handler" in caplog.text  # logged with its traceback
    assert running.error is None


def test_stop_from_another_thread_ends_a_loop_waiting_without_timers(pair) -> None:
    router, _dealer = pair
    loop = SocketLoop()
    loop.add(router, lambda message: None)
    running = Running(loop)
    time.sleep(0.05)  # the loop is blocked in its wait (no timer: no timeout)
    started = time.monotonic()
    running.stop()
    assert time.monotonic() - started < 1.0
    assert running.error is None
    loop.close()  # a second close is harmless
    loop.wake()  # and so is a wake-up after it


def test_wake_runs_a_turn_and_timers_fire(pair) -> None:
    router, _dealer = pair
    turns: list[float] = []
    ticks: list[float] = []
    loop = SocketLoop(lambda: turns.append(time.monotonic()))
    loop.add(router, lambda message: None)
    loop.every(0.05, ticks.append)
    running = Running(loop)
    wait_for(lambda: len(ticks) >= 3, what="three ticks")
    before = len(turns)
    loop.wake()
    wait_for(lambda: len(turns) > before, what="a turn after wake()")
    running.stop()
    assert running.error is None


def test_a_busy_socket_is_taken_in_batches_and_on_turn_runs_between_them(pair) -> None:
    router, dealer = pair
    received: list[int] = []
    batches: list[int] = []

    def on_turn() -> None:
        if received and (not batches or batches[-1] != len(received)):
            batches.append(len(received))

    loop = SocketLoop(on_turn, max_frames=10)
    loop.add(router, lambda message: received.append(int(message[1])))
    for i in range(50):
        frames.send(dealer, (str(i).encode(),))
    running = Running(loop)
    wait_for(lambda: len(received) == 50, what="all 50 messages")
    running.stop()
    assert received == list(range(50))
    assert all(b - a <= 10 for a, b in zip([0, *batches], batches, strict=False))
    assert loop.dropped == 0
