"""The broker: the orchestrator's ROUTER loop.

Each turn it takes every waiting frame off the ROUTER, validates it (anything
malformed or oversized is dropped and counted), appends the turn's messages
and acks to the journal with one write, hands them to the recorder, and only
then routes them. ``post`` lets the orchestrator's other threads send too.

On a full disk it keeps routing: the journal holds what it could not write and
tries again every second, and requests that start new work are answered with
a ``disk_full`` error until there is room again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import zmq

from shoal.mailbox import frames, sockets, wire
from shoal.mailbox.envelope import ORCHESTRATOR, PUBLISH, ROLE_PREFIX, Envelope
from shoal.mailbox.loop import SocketLoop
from shoal.messages.actors import ActorSpawn, ErrorReply
from shoal.messages.base import Payload, polled_kinds
from shoal.messages.batch import BatchStart
from shoal.messages.chat import SessionOpen
from shoal.messages.tasks import TaskSubmit
from shoal.messages.teams import TeamUp
from shoal.orchestrator.delivery import Deliveries, Traffic, Unacked, Waiting
from shoal.orchestrator.recorder import MessageRow
from shoal.store import journal as jr

if TYPE_CHECKING:
    from shoal.orchestrator.outbox import Outbox
    from shoal.orchestrator.recorder import Recorder
    from shoal.orchestrator.supervisor import Supervisor
    from shoal.paths import Home
    from shoal.settings import OrchestratorSettings
    from shoal.store.journal import Journal

log = logging.getLogger(__name__)

_MAX_FRAMES_PER_TURN = 5_000
_TICK = 0.1
_REDELIVERY_SCAN = 1.0
_JOURNAL_MAX = 8 * 1024 * 1024
_JOURNAL_RETRY = 1.0  # seconds between tries to write held journal records
# Requests that start work, refused while the disk is full (what runs, runs on).
_NEW_WORK = frozenset(p.kind for p in (TaskSubmit, BatchStart, TeamUp, ActorSpawn, SessionOpen))


def socket_loop() -> SocketLoop:
    """The loop the broker runs on, made before it: the outbox wakes it."""
    return SocketLoop(max_frames=_MAX_FRAMES_PER_TURN, name="broker")


class Handler(Protocol):
    """What messages addressed to ``orchestrator`` go to (the services' router)."""

    def handle(self, env: Envelope) -> None: ...

    def tick(self, now: float) -> None: ...

    def keeps_alive(self) -> bool:
        """Whether the orchestrator must not exit when idle."""
        ...


@dataclass
class Peer:
    role: str
    pid: int
    instance: str
    last_beat: float


@dataclass
class Turn:
    """What one loop turn received, journaled and recorded before it is routed."""

    messages: list[tuple[Envelope, bytes, str | None, bool]] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    # Role messages given to each actor in this turn: tracked (and counted as its load)
    # only once the turn is routed, so without these a burst all went to the same one.
    picked: dict[str, int] = field(default_factory=dict)


class Broker:
    def __init__(
        self,
        home: Home,
        settings: OrchestratorSettings,
        *,
        recorder: Recorder,
        journal: Journal,
        supervisor: Supervisor,
        handler: Handler,
        outbox: Outbox,
        deliveries: Deliveries,
        traffic: Traffic,
        loop: SocketLoop,
    ) -> None:
        self.home = home
        self.settings = settings
        self.recorder = recorder
        self.journal = journal
        self.supervisor = supervisor
        self.handler = handler
        """Where messages to ``orchestrator`` go (the services, by kind)."""
        self.outbox = outbox
        self.traffic = traffic
        self._polled = polled_kinds()
        """Kinds routed between a client and the orchestrator without a record (see
        ``shoal.messages.base.message``); an actor's are recorded, part of its work."""
        self.ctx = zmq.Context()
        self.router = sockets.router(self.ctx, home.mailbox_endpoint, settings.max_frame_bytes)
        self.pub = sockets.publisher(self.ctx, home.events_endpoint)
        for path in (home.mailbox_socket, home.events_socket):
            os.chmod(path, 0o600)
        self.tcp_endpoint: str | None = None
        """The mailbox on TCP (always CurveZMQ), for actors on other hosts; None if not bound."""
        self._auth = None
        # Only actors on other hosts need TCP: Ray actors of a joined cluster, or an explicit
        # mailbox_tcp. A ray_address kept in the settings for batches opens no port.
        remote_ray = settings.backend == "ray" and bool(settings.ray_address)
        tcp = settings.mailbox_tcp or ("0.0.0.0:0" if remote_ray else None)
        if tcp:
            from shoal.mailbox.curve import bind_tcp, tcp_file

            self.tcp_endpoint, self._auth = bind_tcp(self.ctx, self.router, home, tcp)
            tcp_file(home).write_text(self.tcp_endpoint + "\n")
        self.deliveries = deliveries
        self.peers: dict[str, Peer] = {}
        self.waiting = deliveries.waiting
        self._seq = 0
        self._posted = outbox.queue  # what the orchestrator's threads post (they wake the loop)
        self._loop = loop
        loop.add(self.router, self._frame)
        loop.every(_TICK, self._on_tick)
        loop.each_turn(self._end_turn)
        self._turn = Turn()
        self._next_scan = 0.0
        self._journal_retry_at = 0.0
        self._last_activity = time.monotonic()
        self._pong = wire.Pong(broker_pid=os.getpid(), broker_started_at=traffic.started_at)
        self._pong_body = self._pong.encode()

    # --- called from other threads -----------------------------------------

    def post(
        self,
        payload: Payload,
        recipient: str,
        *,
        reply_to: str | None = None,
        task_id: str | None = None,
    ) -> Envelope:
        """Send a message from the orchestrator itself (thread-safe)."""
        return self.outbox.post(payload, recipient, reply_to=reply_to, task_id=task_id)

    def stop(self, drain: float = 10.0) -> None:
        """Stop after the supervisor has stopped the actors (at most ``drain`` seconds)."""
        self.outbox.stop(drain)

    @property
    def _draining_until(self) -> float | None:
        return self.outbox.draining_until

    @property
    def dropped(self) -> int:
        """Frames dropped: malformed, oversized, of an unknown tag, or failing in ``_frame``."""
        return self._loop.dropped

    @property
    def submitted_seq(self) -> int:
        """The last turn handed to the recorder (compare with its ``flushed_seq``)."""
        return self._seq

    # --- the loop ------------------------------------------------------------

    def load_unacked(self, items: list[tuple[Envelope, bytes]]) -> None:
        """Messages unacked when the last orchestrator died: delivered when their actor beats."""
        far = time.monotonic() + self.settings.ack_timeout
        for env, body in items:
            if env.recipient.startswith(ROLE_PREFIX):
                self.waiting.setdefault(env.recipient, []).append(Waiting(env, body, far))
            else:
                self.deliveries.track(env, body, env.recipient)

    def serve(self) -> None:
        self._loop.run()

    def _end_turn(self) -> None:
        """After the loop took the ROUTER's waiting frames: journal, record, then route."""
        turn = self._turn
        self._take_posted(turn)
        if turn.messages or turn.acks:
            self._turn = Turn()
            self._commit(turn)
            self._route(turn, self._loop.now)
        if self._draining_until is not None and not self.supervisor.stopping:
            self.supervisor.stop_all()

    def _on_tick(self, now: float) -> None:
        scan = now >= self._next_scan
        if scan:
            self._next_scan = now + _REDELIVERY_SCAN
        self._tick(now, scan=scan)

    def close(self) -> None:
        for sock in (self.router, self.pub):
            sock.close()
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()
        self._loop.close()

    # --- receiving -------------------------------------------------------------

    def _frame(self, parts: list[bytes]) -> None:
        """One message off the ROUTER; raising ValueError drops it (the loop counts it)."""
        if len(parts) != 3:
            raise ValueError(f"{len(parts) - 1} frames after the identity, expected 2")
        identity, tag, body = parts
        if len(body) > self.settings.max_frame_bytes:
            raise ValueError(f"body of {len(body)} bytes over the limit")
        if tag == wire.MSG:
            env = Envelope.decode(body)
            if env.sender.encode() != identity:
                raise ValueError(f"sender {env.sender!r} is not the connection's identity")
            self._last_activity = self._loop.now
            self._classify(env, body, self._turn)
        elif tag == wire.ACK:
            for message_id in wire.decode_acks(body):
                if self.deliveries.ack(message_id, by=identity.decode()):
                    self._turn.acks.append(message_id)
        elif tag == wire.BEAT:
            self._beat(identity, wire.Beat.decode(body), self._loop.now)
        else:
            raise ValueError(f"unknown tag {tag[:8]!r}")

    def _take_posted(self, turn: Turn) -> None:
        if self._posted.empty():  # most turns: cheaper than raising queue.Empty
            return
        while True:
            try:
                env = self._posted.get_nowait()
            except queue.Empty:
                return
            self._classify(env, env.encode(), turn)

    def _classify(self, env: Envelope, body: bytes, turn: Turn) -> None:
        """Decide where a message goes and whether it is tracked until acked."""
        if env.reply_to and self.deliveries.ack(env.reply_to, by=env.sender):
            turn.acks.append(env.reply_to)
        recipient = env.recipient
        if recipient in (ORCHESTRATOR, PUBLISH):
            turn.messages.append((env, body, recipient, False))
        elif recipient.startswith(ROLE_PREFIX):
            target = self._pick(recipient[len(ROLE_PREFIX) :], turn.picked)
            if target is not None:
                turn.picked[target] = turn.picked.get(target, 0) + 1
            turn.messages.append((env, body, target, target is not None))
        else:
            durable = recipient in self.peers or self.supervisor.is_actor(recipient)
            turn.messages.append((env, body, recipient, durable))

    def _pick(self, role: str, picked: dict[str, int]) -> str | None:
        """The actor of ``role`` with the least unacked work (``picked``: what this turn
        gave each, not tracked yet); on a tie, a connected one.

        An actor still starting counts too: work for it waits until it connects,
        which beats queueing behind a busy one (whose handler may be waiting for it).
        """
        connected = {
            n for n, p in self.peers.items() if p.role == role and self.supervisor.is_actor(n)
        }
        starting = [n for n in self.supervisor.taking_work(role) if n not in connected]
        names = [*connected, *starting]
        if not names:
            return None
        load = self.deliveries.load
        return min(names, key=lambda n: (load(n) + picked.get(n, 0), n not in connected, n))

    # --- journal, record, route -------------------------------------------------

    def _commit(self, turn: Turn) -> None:
        now = time.time()
        polled = self._polled
        kept = [m for m in turn.messages if m[3] or m[0].kind not in polled or self._actor(m[0])]
        self.traffic.unrecorded += len(turn.messages) - len(kept)
        if not (kept or turn.acks):
            return  # only polled reads: nothing to journal or record
        records = [jr.message_record(tracked, now, body) for _, body, _, tracked in kept]
        if turn.acks:
            records.append(jr.ack_record(now, turn.acks))
        self.journal.append(records)
        self._seq += 1
        self.recorder.submit(
            self._seq,
            [MessageRow(env, body, now, tracked) for env, body, _, tracked in kept],
            [(now, message_id) for message_id in turn.acks],
        )

    def _actor(self, env: Envelope) -> bool:
        """Whether an actor sent ``env`` (one that beats, or one the supervisor runs)."""
        return env.sender in self.peers or self.supervisor.is_actor(env.sender)

    def _route(self, turn: Turn, now: float) -> None:
        flow = self.traffic.flow.counts  # one dict update a message; see orchestrator/flow.py
        for env, body, target, tracked in turn.messages:
            self.traffic.routed += 1
            edge = (env.sender, target or env.recipient, env.kind)
            flow[edge] = flow.get(edge, 0) + 1
            if target == ORCHESTRATOR:
                self._to_services(env)
            elif target == PUBLISH:
                frames.send(self.pub, (env.kind.encode(), body))
            elif tracked and target is not None:
                self._deliver(self.deliveries.track(env, body, target), now)
            elif target is None or not self._send(target, body):
                self._wait(env, body, target or env.recipient, now)

    def _to_services(self, env: Envelope) -> None:
        if env.kind in _NEW_WORK and (full := self.journal.space.refusal()) is not None:
            self.post(ErrorReply(code="disk_full", message=full), env.sender, reply_to=env.id)
            return
        try:
            self.handler.handle(env)
        except Exception as exc:  # a bug in one request must not stop routing
            log.exception("request %s to the orchestrator failed", env.kind)
            self.post(
                ErrorReply(code="handler_failed", message=f"{type(exc).__name__}: {exc}"),
                env.sender,
                reply_to=env.id,
            )

    def _send(self, target: str, body: bytes) -> bool:
        try:
            frames.send(self.router, (target.encode(), wire.MSG, body), frames.NOBLOCK)
        except zmq.ZMQError:  # EHOSTUNREACH (not connected) or EAGAIN (peer full)
            return False
        return True

    def _deliver(self, item: Unacked, now: float) -> None:
        if self._send(item.target, item.body):
            self.deliveries.delivered(item, now)

    def _wait(self, env: Envelope, body: bytes, key: str, now: float) -> None:
        self.waiting.setdefault(key, []).append(Waiting(env, body, now + self.settings.pending_ttl))

    # --- heartbeats -----------------------------------------------------------

    def _beat(self, identity: bytes, beat: wire.Beat, now: float) -> None:
        name = identity.decode()
        if beat.name != name:
            raise ValueError(f"beat for {beat.name!r} from identity {name!r}")
        peer = self.peers.get(name)
        new_instance = peer is None or peer.instance != beat.instance
        self.peers[name] = Peer(beat.role, beat.pid, beat.instance, now)
        self.supervisor.on_beat(name, beat, new_instance)
        with contextlib.suppress(zmq.ZMQError):
            frames.send(self.router, (identity, wire.PONG, self._pong_body), frames.NOBLOCK)
        if new_instance:
            self._redeliver_to(name, now)
            # Messages that waited for this actor (or its role) are now tracked for it.
            for key in (name, ROLE_PREFIX + beat.role):
                for item in self.waiting.pop(key, []):
                    self._deliver(self.deliveries.track(item.env, item.body, name), now)
        else:
            self.deliveries.held(name, beat.held, beat.held_total, now)

    def _redeliver_to(self, name: str, now: float) -> None:
        for item in self.deliveries.for_target(name):
            if item.delivered:
                item.next_attempt()
                self.traffic.redelivered += 1
            self._deliver(item, now)

    # --- periodic work ----------------------------------------------------------

    def _tick(self, now: float, *, scan: bool) -> None:
        self._expire_waiting(now)
        if scan:
            self._forget_gone(now)
            for item in self.deliveries.overdue(now):
                if item.target in self.peers:
                    item.next_attempt()
                    self.traffic.redelivered += 1
                    self._deliver(item, now)
            for item in self.deliveries.undelivered():
                if item.target in self.peers:
                    self._deliver(item, now)
        self.handler.tick(now)
        self._publish_flow(now)
        if self.journal.size > _JOURNAL_MAX and self.recorder.flushed_seq >= self._seq:
            self.journal.truncate()
        elif self.journal.held and now >= self._journal_retry_at:
            self._journal_retry_at = now + _JOURNAL_RETRY
            self.journal.retry()
        self._check_stop(now)

    def _publish_flow(self, now: float) -> None:
        """The message flow's summary, at most once a second while messages flow: straight
        onto the bus, since counts of messages that are recorded need no record of their own."""
        if self.traffic.flow.due(now):
            env = Envelope.of(self.traffic.flow.take(now), sender=ORCHESTRATOR, recipient=PUBLISH)
            frames.send(self.pub, (env.kind.encode(), env.encode()))

    def _forget_gone(self, now: float) -> None:
        """Drop peers that went silent and are not supervised; refuse their unacked messages."""
        silent = 3 * self.settings.heartbeat_timeout
        for name in [n for n, p in self.peers.items() if now - p.last_beat > silent]:
            if not self.supervisor.is_actor(name):
                del self.peers[name]
        for item in self.deliveries.all():
            if self.supervisor.is_actor(item.target) or self.supervisor.is_stopping(item.target):
                continue  # a stopping actor finishes what it holds
            if item.target in self.peers and not self.supervisor.knows(item.target):
                continue  # an actor started by hand, not supervised, still beating
            self.deliveries.ack(item.env.id)
            self.traffic.undeliverable += 1
            self.post(
                ErrorReply(code="undeliverable", message=f"actor {item.target!r} is gone"),
                item.env.sender,
                reply_to=item.env.id,
            )

    def _expire_waiting(self, now: float) -> None:
        """Retry waiting messages to plain names; refuse those that waited too long."""
        for key in list(self.waiting):
            keep = []
            for item in self.waiting[key]:
                if not key.startswith(ROLE_PREFIX) and self._send(key, item.body):
                    continue  # a client that connected late, or whose queue had room again
                if item.expires > now:
                    keep.append(item)
                    continue
                self.traffic.undeliverable += 1
                if item.env.kind != ErrorReply.kind:
                    ttl = self.settings.pending_ttl
                    reason = f"no actor or client {key!r} took the message in {ttl:g}s"
                    self.post(
                        ErrorReply(code="undeliverable", message=reason),
                        item.env.sender,
                        reply_to=item.env.id,
                    )
            if keep:
                self.waiting[key] = keep
            else:
                del self.waiting[key]

    def _check_stop(self, now: float) -> None:
        if self._draining_until is not None:
            if self.supervisor.all_stopped() or now >= self._draining_until:
                self._loop.stop()
            return
        idle = self.settings.idle_timeout
        if (
            idle
            and now - self._last_activity > idle
            and not self.waiting
            and not len(self.deliveries)
            and not self.handler.keeps_alive()
            and not self.supervisor.pinned()  # a team that is up waits for work
            and not (self.journal.held or self.recorder.holding)  # written before exiting
        ):
            log.info("idle for %.0fs; exiting", now - self._last_activity)
            self.supervisor.stop_all()
            self.stop()
