"""One thread's loop over ZeroMQ sockets: the broker's, an actor's and the API bridge's.

A turn of the loop:

1. waits (``zmq_poll``) until a socket has a message, another thread wakes it,
   or the next timer is due;
2. takes up to ``max_frames`` messages off each socket that has some, handing
   each to that socket's callback (batching: a busy loop does its per-turn work,
   such as one journal write, for many messages at once);
3. calls ``on_turn`` (work queued by other threads, replies, dispatching, ...);
4. calls the timers that are due (ticks, heartbeats).

A message its callback cannot take (it raises ``ValueError``, which msgspec's
decode and validation errors are, or ``UnicodeDecodeError``) is dropped and
counted in :attr:`SocketLoop.dropped`; any other exception from a callback is
logged and the message dropped and counted too: one bad frame never ends the
loop. Exceptions from ``on_turn`` and the timers do end it (they are the
owner's own state, not the wire's).

Other threads (and signal handlers) call :meth:`SocketLoop.wake` after queueing
work for the loop. A wake-up costs one byte on a pipe, and only when none is
pending already; on the loop's own thread, during a turn, it costs nothing (the
next turn just starts without waiting).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from shoal.mailbox import frames

__all__ = ["SocketLoop"]

log = logging.getLogger(__name__)

OnFrames = Callable[[list[bytes]], None]


@dataclass
class _Timer:
    every: float
    due: float
    callback: Callable[[float], None]


class SocketLoop:
    """Poll sockets and a wake-up pipe on one thread; see the module's docstring.

    ``add`` and ``every`` are called before :meth:`run` (or on the loop's thread);
    :meth:`wake` and :meth:`stop` from any thread.
    """

    def __init__(
        self,
        on_turn: Callable[[], None] | None = None,
        *,
        max_frames: int = 5_000,
        name: str = "loop",
    ) -> None:
        self.max_frames = max_frames
        self.name = name
        self.dropped = 0
        """Messages dropped: malformed, oversized, unknown, or their callback failed."""
        self.now = time.monotonic()
        """``time.monotonic()`` when the current turn's wait ended."""
        self._on_turn = on_turn
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full pipe wakes the loop already
        self._items: list[tuple[zmq.Socket | int, int]] = [(self._wake_r, frames.POLLIN)]
        self._callbacks: dict[zmq.Socket, OnFrames] = {}
        # Per socket, the item to ask "more waiting?" with a poll of 0 ms: a little cheaper
        # than reading ZMQ_EVENTS, whose getter makes an enum member on every call.
        self._own_items: dict[zmq.Socket, list[tuple[zmq.Socket, int]]] = {}
        self._timers: list[_Timer] = []
        self._running = True
        self._signalled = False  # a wake-up byte is in the pipe, or about to be
        self._again = False  # start the next turn without waiting
        self._in_turn = False
        self._owner: int | None = None
        self._closed = False

    def add(self, sock: zmq.Socket, on_frames: OnFrames) -> None:
        """Give each message received on ``sock`` (its frames) to ``on_frames``."""
        self._items.append((sock, frames.POLLIN))
        self._callbacks[sock] = on_frames
        self._own_items[sock] = [(sock, frames.POLLIN)]

    def each_turn(self, on_turn: Callable[[], None]) -> None:
        """Call ``on_turn()`` after each turn's messages (instead of the one given at init)."""
        self._on_turn = on_turn

    def every(self, seconds: float, callback: Callable[[float], None]) -> None:
        """Call ``callback(now)`` every ``seconds``, the first time in the first turn."""
        self._timers.append(_Timer(seconds, 0.0, callback))

    def wake(self) -> None:
        """Start a turn soon (thread-safe, and safe in a signal handler)."""
        if self._in_turn and self._owner == threading.get_ident():
            self._again = True  # on_turn or a timer queued work: one more turn, no syscall
            return
        if self._signalled or self._closed:
            return
        self._signalled = True
        # BlockingIOError: the pipe is full, so the loop wakes anyway. EBADF: closed meanwhile.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def again(self) -> None:
        """From the loop's thread: start the next turn without waiting."""
        self._again = True

    def stop(self) -> None:
        """End :meth:`run` after the current turn (thread-safe)."""
        self._running = False
        self.wake()

    @property
    def running(self) -> bool:
        return self._running

    def run(self) -> None:
        self._owner = threading.get_ident()
        callbacks, items = self._callbacks, self._items
        while self._running:
            self._in_turn = False  # from here a wake-up must write (a signal may come in the wait)
            timeout = 0 if self._again else self._wait_ms()
            self._again = False
            ready = frames.zmq_poll(items, timeout)
            self._in_turn = True
            self.now = time.monotonic()
            for sock, _ in ready:
                on_frames = callbacks.get(sock)
                if on_frames is None:  # the wake-up pipe
                    self._drain_wake()
                else:
                    self._drain(sock, on_frames)
            if self._on_turn is not None:
                self._on_turn()
            if self._running:
                self._run_timers()

    def close(self) -> None:
        """Close the wake-up pipe (after :meth:`run` returned)."""
        if not self._closed:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _wait_ms(self) -> int:
        if not self._timers:
            return -1
        due = min(t.due for t in self._timers)
        return max(0, int((due - time.monotonic()) * 1000) + 1)

    def _drain(self, sock: zmq.Socket, on_frames: OnFrames) -> None:
        more = self._own_items[sock]
        poll = frames.zmq_poll
        for _ in range(self.max_frames):
            try:
                message = frames.recv(sock)
            except zmq.Again:  # polled readable, but nothing whole to take
                return
            try:
                on_frames(message)
            except (ValueError, UnicodeDecodeError) as exc:  # the wire's fault
                self.drop(message, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            except Exception:  # ours: logged in full, and the loop goes on
                log.exception("%s: unexpected error on a message; dropped", self.name)
                self.drop(message, "internal error")
            if not poll(more, 0):
                return

    def drop(self, message: list[bytes], reason: str) -> None:
        """Count a message as dropped (the first ten, then every 1000th, logged)."""
        self.dropped += 1
        if self.dropped <= 10 or self.dropped % 1000 == 0:
            log.warning(
                "%s: dropped message #%d (%d frames): %s",
                self.name,
                self.dropped,
                len(message),
                reason,
            )

    def _drain_wake(self) -> None:
        # A wake-up between the read and the clear finds the flag set and writes
        # nothing; that is safe because its work was queued before it, and on_turn,
        # which runs after this in the same turn, takes it.
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        self._signalled = False

    def _run_timers(self) -> None:
        now = time.monotonic()
        for timer in self._timers:
            if now >= timer.due:
                timer.due = now + timer.every
                timer.callback(now)
