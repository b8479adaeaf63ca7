"""The options shoal sets on every ZeroMQ socket, in one place.

- LINGER small: closing never hangs on undeliverable messages.
- SNDTIMEO: a blocking send fails instead of hanging forever.
- ROUTER_MANDATORY: a ROUTER otherwise drops messages to unknown peers silently.
- ROUTER_HANDOVER: a restarted actor takes over its identity from the dead one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:
    from shoal.mailbox.curve import CurveClientKeys

LINGER_MS = 100
SEND_TIMEOUT_MS = 2_000
HIGH_WATER_MARK = 100_000


def dealer(
    ctx: zmq.Context, identity: str, endpoint: str, curve: CurveClientKeys | None = None
) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity.encode())
    _common(sock)
    if curve is not None:
        from shoal.mailbox.curve import secure_client

        secure_client(sock, curve)
    sock.setsockopt(zmq.RECONNECT_IVL, 50)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1_000)
    sock.connect(endpoint)
    return sock


def router(ctx: zmq.Context, endpoint: str, max_frame_bytes: int) -> zmq.Socket:
    sock = ctx.socket(zmq.ROUTER)
    _common(sock)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    # The transport refuses frames far beyond the limit (memory safety); frames
    # just over it still arrive so the broker can count them as dropped.
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes * 4)
    sock.bind(endpoint)
    return sock


def publisher(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.PUB)
    _common(sock)
    sock.bind(endpoint)
    return sock


def subscriber(ctx: zmq.Context, endpoint: str, topics: list[str]) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    _common(sock)
    for topic in topics or [""]:
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    sock.connect(endpoint)
    return sock


def _common(sock: zmq.Socket) -> None:
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    sock.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
    sock.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
