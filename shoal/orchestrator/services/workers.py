"""Work a request hands off the broker's thread: DuckDB queries, embedding, tmux.

Each job gets a cursor of its own from the database's writer (the orchestrator's one
connection, so the single-writer rule holds) and its result is posted as the reply.
Most jobs get a thread to themselves at once (:class:`Threads`: an idle one, else a new
one), so a slow query never stalls routing or another request; ``serial`` jobs share one
thread and run in the order they came, so a team task list's claim can never interleave
with another claim, nor two imports of learnings with each other.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shoal.messages.actors import ErrorReply
from shoal.messages.base import Payload

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.router import Post
    from shoal.store.database import Writer

log = logging.getLogger(__name__)

Job = Callable[[Any], Payload]
"""Work on a cursor; its result is the reply."""


class Threads:
    """Threads that each take a job as soon as it comes: an idle one if there is one, else a
    new one, never a wait behind another job; one idle for ``idle_for`` seconds ends.

    Not a thread per job: starting one made the broker's thread wait for it to run (and
    took a tenth of the GIL) on every named query a polled ``GET /status`` asks.
    """

    def __init__(self, idle_for: float = 30.0) -> None:
        self._idle_for = idle_for
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        """Threads waiting for a job, less the jobs queued for them (never negative)."""

    @property
    def idle(self) -> int:
        """Threads waiting for a job that none is queued for yet."""
        return self._idle

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread's: it takes this job (or an equal one)
                self._jobs.put(job)
                return
        threading.Thread(target=self._run, args=(job,), name="worker", daemon=True).start()

    def _run(self, job: Callable[[], None]) -> None:
        while True:
            job()
            with self._lock:
                self._idle += 1
            job = self._next()
            if job is None:
                return

    def _next(self) -> Callable[[], None] | None:
        """The next job; None when none came for ``idle_for`` (this thread then ends)."""
        while True:
            try:
                return self._jobs.get(timeout=self._idle_for)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():  # none is queued for this thread: leave
                        self._idle -= 1
                        return None


class Workers:
    def __init__(self, db: Writer, post: Post) -> None:
        self._db = db
        self._post = post
        self._serial = ThreadPoolExecutor(1, thread_name_prefix="serial")
        self._threads = Threads()

    def run(self, env: Envelope, job: Job, *, serial: bool = False) -> None:
        """Do ``job`` off the broker's thread and reply to ``env`` with what it returns.

        A ``LookupError`` or ``ValueError`` is a ``refused`` reply; anything else is
        logged and replied as ``handler_failed``.
        """

        def work() -> None:
            threading.current_thread().name = env.kind  # what a profiler or a dump shows
            cur = self._db.cursor()
            try:
                reply: Payload = job(cur)
            except (LookupError, ValueError) as exc:
                reply = ErrorReply(code="refused", message=str(exc.args[0] if exc.args else exc))
            except Exception as exc:
                log.exception("%s failed", env.kind)
                reply = ErrorReply(code="handler_failed", message=f"{type(exc).__name__}: {exc}")
            finally:
                cur.close()
            self._post(reply, env.sender, reply_to=env.id, task_id=env.task_id)

        if serial:
            self._serial.submit(work)
        else:
            self._threads.submit(work)
