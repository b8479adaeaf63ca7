"""Benchmark shoal's mailbox against raw pyzmq on this machine, and print the figures.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``)::

    python3 scripts/bench_mailbox.py           # a table
    python3 scripts/bench_mailbox.py --json    # one JSON object

What it measures, in one run:

1. Raw pyzmq baselines, every party in its own process, over ``ipc://``:
   a. the median round trip of a 2-frame message through a ROUTER echo server (direct);
   b. the median round trip over the same 4 hops as shoal's routed round trip, with no
      shoal code: client DEALER -> relay ROUTER -> echo DEALER -> relay -> client. The
      relay forwards ``[identity, dest, body]`` as ``[dest, identity, body]``; the echo
      (identity ``echo``) answers ``[src, body]`` with ``[src, body]``. This is the floor
      for any broker-routed round trip on this machine;
   c. PUSH/PULL throughput of small (~200 byte) messages.
2. shoal, with a fresh orchestrator under a temporary ``SHOAL_HOME``:
   a. the median round trip of ``echo.request`` to an echo actor, routed by the broker
      (in blocks alternating with the raw round trips of 1a. and 1b., so that other load
      on the machine weighs on all three figures alike);
   b. routed+recorded throughput: a client sends N one-way ``echo.request`` messages to
      a second client; done when that client has them all and the orchestrator's
      ``recorded`` counter covers them;
   c. actor spawn-to-ready: from ``actor.spawn`` to the new actor's first reply
      (forkserver already warm);
   d. ``shoal --help`` wall time, and ``python3 -c pass`` for reference.

The orchestrator and every helper process are always stopped, and the temporary home
removed, at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import zmq

RAW_WARMUP = 500
RAW_ROUND_TRIPS = 5_000
RAW_PUSH_MESSAGES = 200_000
RAW_MESSAGE_BYTES = 200
SHOAL_WARMUP = 300
SHOAL_ROUND_TRIPS = 3_000
SHOAL_ONE_WAY = 50_000
SPAWNS = 10
RTT_BLOCKS = 5
HELP_RUNS = 10

TARGET_RTT_RATIO = 3.0
TARGET_MSGS_PER_S = 40_000.0  # issue 13
TARGET_HELP_S = 0.15

_STOP = b"stop"
_HELLO = b"hello"
RELAY_ECHO = b"echo"


# --- raw pyzmq helpers (run in spawned child processes) ---------------------------


def _router_echo(endpoint: str, ready: Connection) -> None:
    """A ROUTER that sends every message back to its sender, until a ``stop`` frame."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    ready.send("ready")
    try:
        while True:
            frames = sock.recv_multipart()
            if frames[1] == _STOP:
                return
            sock.send_multipart(frames)
    finally:
        sock.close()
        ctx.term()


def _relay(endpoint: str, validate: bool, ready: Connection) -> None:
    """A ROUTER that forwards ``[identity, dest, body]`` as ``[dest, identity, body]``.

    A message whose destination frame is ``stop`` ends it. With ``validate`` it
    decodes each body as an Envelope first, as shoal's broker must.
    """
    from shoal.mailbox.envelope import Envelope

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 1_000)  # let a forwarded ``stop`` reach the echo
    sock.bind(endpoint)
    ready.send("ready")
    try:
        while True:
            identity, dest, *rest = sock.recv_multipart()
            if dest == _STOP:
                return
            if validate and rest[0] not in (_HELLO, _STOP):
                Envelope.decode(rest[0])
            sock.send_multipart([dest, identity, *rest])
    finally:
        sock.close()
        ctx.term()


def _relay_echo(endpoint: str, validate: bool, ready: Connection) -> None:
    """A DEALER with identity ``echo`` behind the relay: answers ``[src, body]`` in kind.

    With ``validate`` it answers the way shoal's echo actor does, but with none of its
    loop: decode the envelope, validate the payload, make the reply envelope, encode it.
    """
    from shoal.mailbox.envelope import Envelope
    from shoal.messages.actors import EchoReply

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, RELAY_ECHO)
    sock.connect(endpoint)
    try:
        # A message to ourselves through the relay: once it is back, the relay knows us
        # and routes to ``echo``; anything sent to us before that would be dropped.
        sock.send_multipart([RELAY_ECHO, _HELLO])
        if not sock.poll(10_000):
            ready.send("no hello back from the relay in 10s")
            return
        sock.recv_multipart()
        ready.send("ready")
        while True:
            src, body = sock.recv_multipart()
            if body == _STOP:
                return
            if validate:
                env = Envelope.decode(body)
                asked = env.parse_payload()
                answer = EchoReply(text=asked.text, seq=asked.seq, handled_by="echo")
                body = env.reply(answer).encode()
            sock.send_multipart([src, body])
    finally:
        sock.close()
        ctx.term()


def _pull_sink(endpoint: str, count: int, ready: Connection) -> None:
    """A PULL socket that receives ``count`` messages, then reports when it got the last."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.bind(endpoint)
    ready.send("ready")
    try:
        sock.recv()  # warm-up message
        ready.send("warm")
        for _ in range(count):
            sock.recv()
        ready.send(time.monotonic())
    finally:
        sock.close()
        ctx.term()


@contextlib.contextmanager
def _child(
    target: Callable[..., None], *args: Any, timeout: float = 30.0
) -> Iterator[tuple[Connection, Any]]:
    """Run ``target(*args, conn)`` in a spawned process.

    Yields our end of the pipe and the first thing the child sent on it (it is ready).
    """
    mp = multiprocessing.get_context("spawn")
    ours, theirs = mp.Pipe()
    proc = mp.Process(target=target, args=(*args, theirs), daemon=True)
    proc.start()
    theirs.close()
    try:
        if not ours.poll(timeout):
            raise RuntimeError(f"{target.__name__} did not start in {timeout:g}s")
        yield ours, ours.recv()
    finally:
        proc.join(5.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(5.0)
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)
        ours.close()


class RawEcho:
    """A DEALER here and a ROUTER echo server in a spawned process, over ``ipc://``."""

    def __init__(self, tmp: Path) -> None:
        self.endpoint = f"ipc://{tmp / 'raw-rtt.sock'}"
        self._stack = contextlib.ExitStack()
        self._body = b"x" * RAW_MESSAGE_BYTES

    def __enter__(self) -> RawEcho:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_child(_router_echo, self.endpoint))
            self._ctx = zmq.Context()
            stack.callback(self._ctx.term)
            self._sock = self._ctx.socket(zmq.DEALER)
            stack.callback(self._sock.close)
            self._sock.setsockopt(zmq.LINGER, 1_000)
            self._sock.setsockopt(zmq.IDENTITY, b"bench-dealer")
            self._sock.connect(self.endpoint)
            self.round_trips(RAW_WARMUP)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._stack:
            self._sock.send_multipart([b"M", _STOP])

    def round_trips(self, count: int) -> list[float]:
        """Seconds of each of ``count`` round trips of a 2-frame message."""
        times = []
        for _ in range(count):
            start = time.perf_counter()
            self._sock.send_multipart([b"M", self._body])
            self._sock.recv_multipart()
            times.append(time.perf_counter() - start)
        return times


class RawRelay:
    """The 4-hop path of a routed round trip in pure pyzmq, over ``ipc://``.

    A DEALER here, a relay ROUTER and an echo DEALER, each in its own spawned process.
    With ``validate``, each process also does the envelope work shoal's does at its
    place on the path (make and encode, decode and validate), and nothing else.
    """

    def __init__(self, tmp: Path, *, validate: bool = False) -> None:
        self.validate = validate
        self.endpoint = f"ipc://{tmp / ('valid-relay.sock' if validate else 'raw-relay.sock')}"
        self._stack = contextlib.ExitStack()
        self._body = b"x" * RAW_MESSAGE_BYTES

    def __enter__(self) -> RawRelay:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_child(_relay, self.endpoint, self.validate))
            _, word = stack.enter_context(_child(_relay_echo, self.endpoint, self.validate))
            if word != "ready":
                raise RuntimeError(f"relay echo: {word}")
            self._ctx = zmq.Context()
            stack.callback(self._ctx.term)
            self._sock = self._ctx.socket(zmq.DEALER)
            stack.callback(self._sock.close)
            self._sock.setsockopt(zmq.LINGER, 1_000)
            self._sock.setsockopt(zmq.RCVTIMEO, 10_000)  # a lost message raises zmq.Again
            self._sock.setsockopt(zmq.IDENTITY, b"bench-relay-client")
            self._sock.connect(self.endpoint)
            stack.callback(self._stop)  # first thing on the way out, error or not
            self.round_trips(RAW_WARMUP)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _stop(self) -> None:
        # In order on one connection: the relay forwards the echo's stop, then stops.
        # (Whatever is not stopped here is terminated when its process is joined.)
        with contextlib.suppress(zmq.ZMQError):
            self._sock.send_multipart([RELAY_ECHO, _STOP], zmq.NOBLOCK)
            self._sock.send_multipart([_STOP], zmq.NOBLOCK)

    def round_trips(self, count: int) -> list[float]:
        """Seconds of each of ``count`` round trips client -> relay -> echo -> relay -> client."""
        from shoal.mailbox.envelope import Envelope
        from shoal.messages.actors import EchoRequest

        times = []
        text = "x" * 100
        for i in range(count):
            start = time.perf_counter()
            if self.validate:
                env = Envelope.of(EchoRequest(text=text, seq=i), sender="bench", recipient="echo")
                self._sock.send_multipart([RELAY_ECHO, env.encode()])
                Envelope.decode(self._sock.recv_multipart()[1])
            else:
                self._sock.send_multipart([RELAY_ECHO, self._body])
                self._sock.recv_multipart()
            times.append(time.perf_counter() - start)
        return times


def raw_push_pull(tmp: Path) -> float:
    """Messages per second from a PUSH process to a PULL process (send start to last receipt)."""
    endpoint = f"ipc://{tmp / 'raw-push.sock'}"
    with _child(_pull_sink, endpoint, RAW_PUSH_MESSAGES) as (conn, _):
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 1_000)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(endpoint)
        body = b"x" * RAW_MESSAGE_BYTES
        try:
            sock.send(body)
            if not conn.poll(10.0):
                raise RuntimeError("the PULL process did not get the warm-up message")
            conn.recv()
            start = time.monotonic()
            for _ in range(RAW_PUSH_MESSAGES):
                sock.send(body)
            if not conn.poll(60.0):
                raise RuntimeError("the PULL process did not get every message in 60s")
            end: float = conn.recv()
        finally:
            sock.close()
            ctx.term()
    return RAW_PUSH_MESSAGES / (end - start)


# --- shoal ------------------------------------------------------------------------


def _shoal_sink(endpoint: str, count: int, conn: Connection) -> None:
    """A plain shoal client that receives ``count`` messages, then reports when it got the last.

    It runs in its own process so that decoding what it receives does not take the GIL
    from the sending client.
    """
    from shoal.mailbox.client import MailboxClient
    from shoal.mailbox.envelope import ORCHESTRATOR
    from shoal.messages.actors import OrchestratorStatus

    with MailboxClient(endpoint) as client:
        # A request makes sure the broker knows our identity before anyone sends to us.
        client.request(ORCHESTRATOR, OrchestratorStatus(), timeout=30.0)
        conn.send(client.name)
        if client.recv(timeout=30.0) is None:
            conn.send("the warm-up message never reached the sink")
            return
        conn.send("warm")
        for got in range(count):
            if client.recv(timeout=60.0) is None:
                conn.send(f"the sink received {got} of {count} messages")
                return
        conn.send(time.monotonic())


@dataclass
class ShoalFigures:
    raw_rtt_s: float
    relay_rtt_s: float
    valid_relay_rtt_s: float
    routed_rtt_s: float
    one_way_msgs_per_s: float
    one_way_send_msgs_per_s: float
    one_way_recorded_after_s: float
    spawn_to_ready_s: float
    spawn_to_ready_max_s: float
    first_spawn_s: float


def shoal_figures(one_way: int, raw: RawEcho, relay: RawRelay, valid: RawRelay) -> ShoalFigures:
    from shoal import daemon
    from shoal.mailbox.client import MailboxClient
    from shoal.mailbox.envelope import ORCHESTRATOR
    from shoal.messages.actors import (
        ActorRetire,
        ActorSpawn,
        ActorSpawnResult,
        EchoRequest,
        OrchestratorStatus,
        OrchestratorStatusResult,
    )
    from shoal.paths import Home

    home = Home.resolve()

    def status(client: MailboxClient) -> OrchestratorStatusResult:
        reply = client.request(ORCHESTRATOR, OrchestratorStatus(), timeout=30.0).parse_payload()
        assert isinstance(reply, OrchestratorStatusResult)
        return reply

    daemon.start(home)
    with MailboxClient(home.mailbox_endpoint) as client:
        # Warm-up: the first spawn waits for the forkserver to import its preloads.
        start = time.monotonic()
        spawned = daemon.request(home, ActorSpawn(role="echo", count=1), timeout=30.0)
        assert isinstance(spawned, ActorSpawnResult)
        echo = spawned.names[0]
        client.request(echo, EchoRequest(text="warm-up"), timeout=60.0)
        first_spawn = time.monotonic() - start

        # a. routed round trip, in blocks alternating with raw direct and raw relay round
        # trips so that whatever else the machine is doing weighs on all three alike.
        text = "x" * 100
        for i in range(SHOAL_WARMUP):
            client.request(echo, EchoRequest(text=text, seq=i), timeout=10.0)
        raw_times: list[float] = []
        relay_times: list[float] = []
        valid_times: list[float] = []
        times = []
        for _ in range(RTT_BLOCKS):
            raw_times += raw.round_trips(RAW_ROUND_TRIPS // RTT_BLOCKS)
            relay_times += relay.round_trips(RAW_ROUND_TRIPS // RTT_BLOCKS)
            valid_times += valid.round_trips(RAW_ROUND_TRIPS // RTT_BLOCKS)
            for i in range(SHOAL_ROUND_TRIPS // RTT_BLOCKS):
                t0 = time.perf_counter()
                client.request(echo, EchoRequest(text=text, seq=i), timeout=10.0)
                times.append(time.perf_counter() - t0)
        routed_rtt = statistics.median(times)
        raw_rtt = statistics.median(raw_times)
        relay_rtt = statistics.median(relay_times)
        valid_rtt = statistics.median(valid_times)

        # b. routed + recorded one-way throughput
        with _child(_shoal_sink, home.mailbox_endpoint, one_way, timeout=60.0) as (
            sink,
            sink_name,
        ):
            client.send(sink_name, EchoRequest(text="warm-up"))
            word = sink.recv() if sink.poll(30.0) else "no word in 30s"
            if word != "warm":
                raise RuntimeError(f"sink: {word}")
            start = time.monotonic()
            for i in range(one_way):
                client.send(sink_name, EchoRequest(text=text, seq=i))
            sent = time.monotonic()
            if not sink.poll(300.0):
                raise RuntimeError("the sink did not receive every message in 300s")
            received = sink.recv()
            if not isinstance(received, float):
                raise RuntimeError(f"sink: {received}")
        # Every message routed before this status was submitted to the recorder first,
        # in order, except the polled reads (these status calls among them), which are
        # routed unrecorded; once ``recorded`` reaches the rest, all N are in DuckDB.
        counts = status(client).messages
        to_record = counts.routed - counts.unrecorded
        deadline = time.monotonic() + 120.0
        while status(client).messages.recorded < to_record:
            if time.monotonic() > deadline:
                raise RuntimeError("the orchestrator did not record every message in 120s")
            time.sleep(0.005)
        recorded_at = time.monotonic()
        one_way_rate = one_way / (max(received, recorded_at) - start)
        send_rate = one_way / (sent - start)
        recorded_after = recorded_at - received

        # c. spawn-to-ready, forkserver warm
        spawn_times = []
        names = []
        try:
            for i in range(SPAWNS):
                name = f"bench-{i}"
                t0 = time.perf_counter()
                client.request(ORCHESTRATOR, ActorSpawn(role="echo", name=name), timeout=30.0)
                names.append(name)
                client.request(name, EchoRequest(text="ready?"), timeout=60.0)
                spawn_times.append(time.perf_counter() - t0)
        finally:
            for name in names:
                with contextlib.suppress(Exception):
                    client.request(ORCHESTRATOR, ActorRetire(name=name), timeout=10.0)

    return ShoalFigures(
        raw_rtt_s=raw_rtt,
        relay_rtt_s=relay_rtt,
        valid_relay_rtt_s=valid_rtt,
        routed_rtt_s=routed_rtt,
        one_way_msgs_per_s=one_way_rate,
        one_way_send_msgs_per_s=send_rate,
        one_way_recorded_after_s=recorded_after,
        spawn_to_ready_s=statistics.median(spawn_times),
        spawn_to_ready_max_s=max(spawn_times),
        first_spawn_s=first_spawn,
    )


def median_wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- main -------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--messages", type=int, default=SHOAL_ONE_WAY, help="one-way messages sent through shoal"
    )
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="sb", dir="/tmp"))
    os.environ["SHOAL_HOME"] = str(tmp)  # short: ipc paths are limited to 107 bytes
    try:
        say("raw pyzmq PUSH/PULL ...")
        raw_rate = raw_push_pull(tmp)
        say("shoal (orchestrator, echo actor, RTT vs raw and relay RTT, one-way, spawns) ...")
        try:
            with (
                RawEcho(tmp) as raw,
                RawRelay(tmp) as relay,
                RawRelay(tmp, validate=True) as valid,
            ):
                fig = shoal_figures(args.messages, raw, relay, valid)
        finally:
            from shoal import daemon
            from shoal.paths import Home

            daemon.stop(Home.resolve())
        say("shoal --help ...")
        shoal_exe = shutil.which("shoal")
        if shoal_exe is None:
            raise RuntimeError("no `shoal` on PATH; run `pip install -e .` first")
        help_s = median_wall([shoal_exe, "--help"], HELP_RUNS)
        # pyenv puts a bash shim first on PATH; the installed entry point is next to python.
        direct = Path(sys.executable).parent / "shoal"
        direct_help_s = (
            median_wall([str(direct), "--help"], HELP_RUNS)
            if direct.exists() and direct.resolve() != Path(shoal_exe).resolve()
            else None
        )
        python_pass_s = median_wall([sys.executable, "-c", "pass"], HELP_RUNS)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    figures: dict[str, Any] = {
        "raw_rtt_s": fig.raw_rtt_s,
        "raw_push_pull_msgs_per_s": raw_rate,
        "routed_rtt_s": fig.routed_rtt_s,
        "routed_rtt_ratio": fig.routed_rtt_s / fig.raw_rtt_s,
        "relay_rtt_s": fig.relay_rtt_s,
        "routed_vs_relay_ratio": fig.routed_rtt_s / fig.relay_rtt_s,
        "valid_relay_rtt_s": fig.valid_relay_rtt_s,
        "valid_relay_rtt_ratio": fig.valid_relay_rtt_s / fig.raw_rtt_s,
        "routed_recorded_msgs_per_s": fig.one_way_msgs_per_s,
        "routed_recorded_messages": args.messages,
        "one_way_send_msgs_per_s": fig.one_way_send_msgs_per_s,
        "recorded_after_received_s": fig.one_way_recorded_after_s,
        "spawn_to_ready_s": fig.spawn_to_ready_s,
        "spawn_to_ready_max_s": fig.spawn_to_ready_max_s,
        "first_spawn_to_reply_s": fig.first_spawn_s,
        "shoal_help_s": help_s,
        "shoal_help_direct_s": direct_help_s,
        "python_pass_s": python_pass_s,
        "shoal_exe": shoal_exe,
        "targets": {
            "routed_rtt_ratio_max": TARGET_RTT_RATIO,
            "routed_recorded_msgs_per_s_min": TARGET_MSGS_PER_S,
            "shoal_help_s_max": TARGET_HELP_S,
        },
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(figures))
        return 0

    ratio = figures["routed_rtt_ratio"]
    relay_ratio = figures["routed_vs_relay_ratio"]
    rows = [
        ("raw pyzmq RTT (median)", _ms(fig.raw_rtt_s), f"{RAW_ROUND_TRIPS:,} round trips"),
        (
            "raw pyzmq relay RTT (median)",
            _ms(fig.relay_rtt_s),
            f"4 hops via a pure-pyzmq ROUTER relay; {fig.relay_rtt_s / fig.raw_rtt_s:.1f}x raw",
        ),
        (
            "relay + envelope work RTT (median)",
            _ms(fig.valid_relay_rtt_s),
            f"the relay, each hop decoding/encoding envelopes as shoal's must; "
            f"{fig.valid_relay_rtt_s / fig.raw_rtt_s:.1f}x raw",
        ),
        ("raw PUSH/PULL", f"{raw_rate:,.0f} msg/s", ""),
        (
            "shoal routed RTT (median)",
            _ms(fig.routed_rtt_s),
            f"{ratio:.1f}x raw (target <= {TARGET_RTT_RATIO:g}x) "
            f"{_verdict(ratio <= TARGET_RTT_RATIO)}",
        ),
        (
            "shoal routed / raw relay (4-hop floor)",
            f"{relay_ratio:.2f}x",
            "same path, shoal's broker, client and actor vs pure pyzmq",
        ),
        (
            "shoal routed+recorded",
            f"{fig.one_way_msgs_per_s:,.0f} msg/s",
            f"target >= {TARGET_MSGS_PER_S:,.0f} "
            f"{_verdict(fig.one_way_msgs_per_s >= TARGET_MSGS_PER_S)}; "
            f"{fig.one_way_msgs_per_s / raw_rate:.1%} of raw PUSH/PULL",
        ),
        (
            "  client send rate",
            f"{fig.one_way_send_msgs_per_s:,.0f} msg/s",
            f"N={args.messages:,}; recorded {_ms(fig.one_way_recorded_after_s)} "
            "after the last receipt",
        ),
        (
            "shoal spawn-to-ready (median)",
            _ms(fig.spawn_to_ready_s),
            f"max {_ms(fig.spawn_to_ready_max_s)}; first spawn (cold) {fig.first_spawn_s:.2f} s",
        ),
        (
            "shoal --help (median)",
            _ms(help_s),
            f"target <= {TARGET_HELP_S * 1000:.0f} ms {_verdict(help_s <= TARGET_HELP_S)}; "
            f"{shoal_exe}",
        ),
    ]
    if direct_help_s is not None:
        rows.append(
            (
                "  entry point, no shim",
                _ms(direct_help_s),
                f"{_verdict(direct_help_s <= TARGET_HELP_S)}; {direct}",
            )
        )
    rows.append(("python3 -c pass (median)", _ms(python_pass_s), ""))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"shoal mailbox benchmark ({os.cpu_count()} CPUs, python {sys.version.split()[0]})")
    for label, value, note in rows:
        print(f"{label:<{width}}  {value:>{value_width}}  {note}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
