"""Sending and receiving multipart frames on the hot path, below pyzmq's conveniences.

pyzmq's ``send_multipart``/``recv_multipart`` cost 3-4 µs a message on top of
ZeroMQ itself: type checks of every part, and flags that are ``enum.IntFlag``
members, whose ``|`` and ``&`` run in Python. Every message crosses four sockets
on a routed round trip, so shoal's loops and clients call the socket's own
methods (``zmq.backend.Socket``, which every ``zmq.Socket`` is) with plain int
flags instead: the same ZeroMQ calls, about a tenth of the time.

Only for ``bytes`` frames on synchronous sockets (not ``zmq.asyncio`` ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import zmq
from zmq.backend import Socket as _Socket
from zmq.backend import zmq_poll

__all__ = ["NOBLOCK", "POLLIN", "readable", "recv", "send", "zmq_poll"]

NOBLOCK = int(zmq.NOBLOCK)
POLLIN = int(zmq.POLLIN)
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_send = _Socket.send
_recv = _Socket.recv
_get = _Socket.get


def send(sock: zmq.Socket, frames: Sequence[bytes], flags: int = 0) -> None:
    """Send ``frames`` as one message (``flags``: 0 or :data:`NOBLOCK`).

    ZeroMQ sends a multipart message whole or not at all: an error (a ROUTER's
    unknown peer, a full queue with NOBLOCK) is raised on the first frame.
    """
    more = flags | _SNDMORE
    last = len(frames) - 1
    for i in range(last):
        _send(sock, frames[i], more)
    _send(sock, frames[last], flags)


def recv(sock: zmq.Socket, flags: int = NOBLOCK) -> list[bytes]:
    """The next message's frames (zmq.Again if none is waiting and ``flags`` is NOBLOCK)."""
    frame = _recv(sock, flags, False)
    parts = [frame.bytes]
    while frame.more:  # the rest of a multipart message is already here
        frame = _recv(sock, flags, False)
        parts.append(frame.bytes)
    return parts


def readable(sock: zmq.Socket) -> bool:
    """A message waits on ``sock`` (cheaper than a poll, and than a failed receive)."""
    return bool(_get(sock, _EVENTS) & POLLIN)
