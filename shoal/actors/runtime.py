"""The actor process: one mailbox loop around one actor.

The loop (main thread, a :class:`~shoal.mailbox.loop.SocketLoop`) owns the
DEALER socket: it receives messages, drops duplicates by id, dispatches them to
handlers, sends replies and acks, and heartbeats. ``@inline`` handlers run on the
loop itself; the others run on worker threads and hand their results back
through a queue and a wake-up, so the loop keeps heartbeating during long calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq

from shoal.actors import registry
from shoal.actors.base import KEEP, Actor, ActorContext, is_aside, is_inline
from shoal.actors.spec import ActorSpec
from shoal.mailbox import frames, sockets, wire
from shoal.mailbox.envelope import Envelope, UnknownKind
from shoal.mailbox.loop import SocketLoop
from shoal.messages.actors import ErrorReply
from shoal.messages.base import InvalidMessage, Payload
from shoal.paths import Home

log = logging.getLogger(__name__)

# Remember this many handled ids (and their replies) to answer redeliveries.
_DONE_MEMORY = 20_000
# Seconds of inline handling per loop turn before the loop beats and receives again.
_TURN_BUDGET = 0.05


def run_actor(spec_json: str) -> None:
    """Entry point of an actor process (whatever launched it)."""
    spec = ActorSpec.model_validate_json(spec_json)
    home = Home.resolve(spec.home)
    if os.getpid() != os.getpgid(0):
        os.setsid()  # own process group: the supervisor stops the actor and its children at once
    _log_to(home.actor_log(spec.name))
    code = ActorRuntime(spec, registry.load(spec.role)).run()
    sys.stdout.flush()
    os._exit(code)


def _log_to(path: os.PathLike[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,
    )


Observer = Callable[[str, Envelope], None]
"""Called on the mailbox loop with ("in", message) for each new message taken and
("out", message) for each one sent (replies included); it must be quick (a tmux pane
renders its transcript from these)."""


class ActorRuntime:
    def __init__(
        self, spec: ActorSpec, actor_cls: type[Actor], observer: Observer | None = None
    ) -> None:
        self.spec = spec
        self.observer = observer
        self.home = Home.resolve(spec.home)
        self.instance = f"{os.getpid()}-{secrets.token_hex(4)}"
        # (request, handler's result, ids it released while it ran)
        self._results: queue.SimpleQueue[tuple[Envelope, Any, list[str]]] = queue.SimpleQueue()
        self._handler = threading.local()
        self._outgoing: queue.SimpleQueue[Envelope] = queue.SimpleQueue()
        self._released: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._loop = SocketLoop(self._turn, name=f"actor {spec.name}")
        self._held: dict[str, Envelope] = {}
        self._waiting: deque[Envelope] = deque()  # work for the handler threads
        # Inline handlers and unhandled kinds: replies a running handler waits for,
        # cancels, steering. They never queue behind work waiting for a free thread.
        self._quick: deque[Envelope] = deque()
        # @aside handlers: on a thread of their own, never behind the work waiting above.
        self._asides: deque[Envelope] = deque()
        self._aside_running = 0
        self._done: OrderedDict[str, bytes | None] = OrderedDict()
        self._acks: list[str] = []
        self._running = 0
        self._busy_since: float | None = None
        self._progress_at: float | None = None
        self._stopping = False
        self._last_pong = time.monotonic()
        ctx = ActorContext(
            spec.name, spec.role, self.home, self._post, spec.mailbox_address(), self._release
        )
        self.actor = actor_cls(ctx)
        self._pool = ThreadPoolExecutor(max(1, actor_cls.concurrency), thread_name_prefix="handler")
        self._aside_pool = ThreadPoolExecutor(1, thread_name_prefix="aside")

    # --- process lifetime --------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        zctx = zmq.Context()
        address = self.spec.mailbox_address()
        self._sock = sockets.dealer(zctx, self.spec.name, address.endpoint, address.curve)
        try:
            self.actor.setup()
            log.info(
                "actor %s (%s) ready, instance %s", self.spec.name, self.spec.role, self.instance
            )
            self._loop.add(self._sock, self._on_frames)
            self._loop.every(self.spec.heartbeat_interval, self._on_beat)
            self._loop.run()
            return 0
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._aside_pool.shutdown(wait=False, cancel_futures=True)
            try:
                self.actor.teardown()
            finally:
                self._sock.close()
                zctx.term()
                self._loop.close()

    def _request_stop(self, *_: Any) -> None:
        self._stopping = True
        self._loop.wake()

    def _post(self, env: Envelope) -> None:
        self._outgoing.put(env)
        self._loop.wake()

    def _release(self, message_ids: list[str]) -> None:
        pending = getattr(self._handler, "released", None)
        if pending is not None:
            # From a running handler: acked with its reply, never before it (a kill in
            # between would lose the kept message while the request is run again).
            pending.extend(message_ids)
            return
        self._released.put(message_ids)
        self._loop.wake()

    # --- the loop ------------------------------------------------------------

    def _turn(self) -> None:
        """After the loop took the waiting messages (or was woken by a handler thread)."""
        self._collect_results()
        self._send_outgoing()
        self._ack_released()
        self._dispatch()
        self._flush_acks()
        if self._stopping and self._running == 0 and self._aside_running == 0:
            self._loop.stop()

    def _on_beat(self, now: float) -> None:
        self._beat()
        if now - self._last_pong > self.spec.orphan_timeout:
            log.warning("no orchestrator for %.0fs; exiting", now - self._last_pong)
            self._loop.stop()

    def _on_frames(self, message: list[bytes]) -> None:
        """One message off the socket; raising ValueError drops it (the loop counts it)."""
        if len(message) != 2:
            raise ValueError(f"{len(message)} frames, expected 2")
        tag, body = message
        if tag == wire.MSG:
            self._accept(body)
        elif tag == wire.PONG:
            self._last_pong = self._loop.now

    def _accept(self, body: bytes) -> None:
        env = Envelope.decode(body)  # InvalidMessage (a ValueError): dropped by the loop
        if env.id in self._done:
            # Handled before (our ack or reply was lost): answer again, never re-run.
            reply = self._done[env.id]
            if reply is not None:
                frames.send(self._sock, (wire.MSG, reply))
            self._acks.append(env.id)
            return
        if env.id in self._held:
            return  # already queued or running
        self._held[env.id] = env
        handler = self.actor.handler_for(env.kind)
        quick = handler is None or is_inline(handler)
        if handler is not None and is_aside(handler):
            self._asides.append(env)
        else:
            (self._quick if quick else self._waiting).append(env)
        if self.observer is not None:
            self.observer("in", env)

    def _dispatch(self) -> None:
        # Bounded per turn, so a long queue of inline work never starves heartbeats.
        budget_end = time.monotonic() + _TURN_BUDGET
        while self._quick and not self._stopping and time.monotonic() < budget_end:
            self._handle_quick(self._quick.popleft())
        if self._quick and not self._stopping:
            self._loop.again()  # the rest in the next turn, after a look at the socket
        while self._asides and not self._stopping:
            env = self._asides.popleft()
            payload = self._payload(env)
            if payload is not None:
                self._aside_running += 1
                self._aside_pool.submit(self._call, self.actor.handler_for(env.kind), env, payload)
        while (
            self._waiting and not self._stopping and self._running < max(1, self.actor.concurrency)
        ):
            env = self._waiting.popleft()
            payload = self._payload(env)
            if payload is not None:
                self._running += 1
                self._busy_since = self._busy_since or time.time()
                self._pool.submit(self._call, self.actor.handler_for(env.kind), env, payload)

    def _handle_quick(self, env: Envelope) -> None:
        handler = self.actor.handler_for(env.kind)
        if handler is None:
            # Never answer a reply or an error with an error: two parties without
            # handlers for each other's answers would bounce errors forever.
            unanswerable = env.reply_to is not None or env.kind == ErrorReply.kind
            message = f"{self.spec.name} has no handler for {env.kind}"
            if unanswerable:
                log.warning("dropped %s from %s: %s", env.kind, env.sender, message)
            self._finish(
                env, None if unanswerable else ErrorReply(code="no_handler", message=message)
            )
            return
        payload = self._payload(env)
        if payload is not None:
            self._finish(env, self._invoke(handler, env, payload))

    def _payload(self, env: Envelope) -> Payload | None:
        try:
            return env.parse_payload()
        except (InvalidMessage, UnknownKind) as exc:
            self._finish(env, ErrorReply(code="bad_payload", message=f"{env.kind}: {exc}"))
            return None

    def _invoke(self, handler: Any, env: Envelope, payload: Payload) -> Payload | None:
        try:
            return handler(env, payload)
        except Exception as exc:
            log.exception("handler for %s failed", env.kind)
            return ErrorReply(code="handler_failed", message=f"{type(exc).__name__}: {exc}")

    def _call(self, handler: Any, env: Envelope, payload: Payload) -> None:
        self._handler.released = released = []
        try:
            result = self._invoke(handler, env, payload)
        finally:
            self._handler.released = None
        self._results.put((env, result, released))
        self._loop.wake()

    def _collect_results(self) -> None:
        while not self._results.empty():
            env, result, released = self._results.get_nowait()  # only this thread takes
            if is_aside(self.actor.handler_for(env.kind)):
                self._aside_running -= 1
            else:
                self._running -= 1
                if self._running == 0:
                    self._busy_since = None
            self._finish(env, result)
            if released:
                # Right behind the reply, before anything else this turn: whoever has
                # the reply may kill us next, and the released messages must stay acked.
                self._ack(released)
                self._flush_acks()

    def _finish(self, env: Envelope, result: Payload | None) -> None:
        if result is KEEP:
            return  # held (and reported in beats) until the actor releases it
        reply_body = None
        if result is not None:
            reply = env.reply(result, sender=self.spec.name)
            reply_body = reply.encode()
            frames.send(self._sock, (wire.MSG, reply_body))  # a reply acks the request
            self._sent(reply)
        else:
            self._acks.append(env.id)
        self._held.pop(env.id, None)
        self._remember(env.id, reply_body)

    def _remember(self, message_id: str, reply_body: bytes | None) -> None:
        """Handled: a redelivery of it is answered again (or acked), never run again."""
        self._done[message_id] = reply_body
        if len(self._done) > _DONE_MEMORY:
            self._done.popitem(last=False)

    def _ack_released(self) -> None:
        while not self._released.empty():
            self._ack(self._released.get_nowait())  # only this thread takes from it

    def _ack(self, kept: list[str]) -> None:
        for message_id in kept:
            if self._held.pop(message_id, None) is not None:
                self._acks.append(message_id)
                self._remember(message_id, None)

    def _send_outgoing(self) -> None:
        while not self._outgoing.empty():
            env = self._outgoing.get_nowait()  # only this thread takes from it
            frames.send(self._sock, (wire.MSG, env.encode()))
            self._sent(env)

    def _sent(self, env: Envelope) -> None:
        self._progress_at = time.time()
        if self.observer is not None:
            self.observer("out", env)

    def _flush_acks(self) -> None:
        if self._acks:
            frames.send(self._sock, (wire.ACK, wire.encode_acks(self._acks)))
            self._acks = []

    def _beat(self) -> None:
        held = list(self._held)
        beat = wire.Beat(
            name=self.spec.name,
            role=self.spec.role,
            pid=os.getpid(),
            instance=self.instance,
            held=held[: wire.MAX_HELD_IDS],
            held_total=len(held),
            busy_since=self._busy_since,
            progress_at=self._progress_at,
        )
        # Not connected yet (zmq.Again): the next beat tries again.
        with contextlib.suppress(zmq.Again):
            frames.send(self._sock, (wire.BEAT, beat.encode()), frames.NOBLOCK)
