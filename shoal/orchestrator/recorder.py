"""The recorder: the only writer of the DuckDB file, batching rows through Arrow.

The broker hands over rows with :meth:`Recorder.submit` (never blocks); a
thread flushes them at least every ``flush_interval`` seconds and on stop.

A full disk loses nothing queued: what DuckDB could not write is held, in
order, and tried again every second until it goes in. When a failed checkpoint
has made DuckDB invalidate the database, the recorder opens it again (DuckDB
refuses everything until then).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal.store import actor_events, statements
from shoal.store import messages as message_rows
from shoal.store.actor_events import EventRow
from shoal.store.messages import MessageRow
from shoal.store.space import Space, is_disk_full
from shoal.store.statements import Statement

if TYPE_CHECKING:
    import duckdb

    from shoal.store.database import Writer

log = logging.getLogger(__name__)

# Seconds between attempts while writes are held (a full disk, a database to reopen).
_RETRY = 1.0


@dataclass
class _Batch:
    seq: int = 0
    messages: list[MessageRow] = field(default_factory=list)
    acks: list[tuple[float, str]] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages) + len(self.acks) + len(self.events) + len(self.statements)

    def merge(self, item: _Batch) -> None:
        self.seq = max(self.seq, item.seq)
        self.messages += item.messages
        self.acks += item.acks
        self.events += item.events
        self.statements += item.statements

    def written(self, statements: list[Statement]) -> None:
        """Forget the rows one transaction wrote (and ``statements``, if they went with it)."""
        self.messages, self.acks, self.events = [], [], []
        del statements[:]


class _Held(Exception):
    """DuckDB wrote nothing for want of space (or a database to reopen): hold and retry."""

    def __init__(self, cause: BaseException, reopen: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.reopen = reopen


def _fault(exc: BaseException) -> str | None:
    """How a write failed, when it is not DuckDB refusing the data itself (None).

    ``durable``: committed, but the checkpoint after it failed and the database must be
    reopened; ``reopen``: the database was invalidated earlier, nothing written;
    ``full``: nothing written, no room.
    """
    import duckdb

    text = str(exc)
    if "COMMIT succeeded" in text:
        return "durable"
    if isinstance(exc, duckdb.FatalException) or "invalidated" in text:
        return "reopen"
    return "full" if is_disk_full(exc) else None


class Recorder:
    def __init__(self, db: Writer, flush_interval: float, space: Space | None = None) -> None:
        self._db = db
        self._interval = flush_interval
        self._space = space or Space(db.path.parent)
        self._queue: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._barriers: queue.SimpleQueue[threading.Event] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.recorded = 0
        self.flushed_seq = 0
        self.failures = 0
        self.rejected = 0
        self.holding = False
        """Whether writes are held (a full disk): the pending rows go in at the next try."""
        self._reopen = False
        self._faulted = False
        self._flushing = False
        """Set by the thread before it takes the queue, cleared after writing what it took."""

    def start(self) -> None:
        self._thread.start()

    def submit(
        self,
        seq: int,
        messages: list[MessageRow],
        acks: list[tuple[float, str]] | None = None,
    ) -> None:
        self._queue.put(_Batch(seq, messages, acks or []))

    def event(self, row: EventRow) -> None:
        self._queue.put(_Batch(0, events=[row]))

    def write(self, sql: str, params: list[Any]) -> None:
        """Queue one low-volume statement (task rows; built by its table's module in
        ``shoal.store``: ``recorder.write(*tasks.update(...))``); run in order with the next
        flush."""
        self._queue.put(_Batch(0, statements=[(sql, params)]))

    def barrier(self, timeout: float = 2.0) -> bool:
        """Wait until everything submitted before this call is written (read your writes).

        It wakes the recorder for an early flush; False if that took longer than ``timeout``.
        While writes are held (a full disk) it returns after the attempt, written or not.
        """
        # Nothing queued and no flush under way: all submitted so far is written, so no
        # wake-up (a named query asks for one; polled, they cost the GIL two thread switches
        # each). The queue first: a flush sets ``_flushing`` before it takes the queue.
        if self._queue.empty() and not self._flushing and not self.holding:
            return True
        done = threading.Event()
        self._barriers.put(done)
        self._wake.set()
        return done.wait(timeout)

    def stop(self) -> None:
        """Flush everything submitted so far, then end the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        # Sleep between flushes instead of waking on every submit: a wake-up per
        # message would hand the GIL back and forth with the broker thread.
        cur: duckdb.DuckDBPyConnection | None = self._db.cursor()
        pending = _Batch()
        stopping = False
        while not stopping:
            self._wake.wait(_RETRY if self.holding else self._interval)
            self._wake.clear()
            stopping = self._stop.is_set()
            self._flushing = True
            # Barriers taken before draining the queue: what they wait for is in this flush.
            barriers = _drain(self._barriers)
            for item in _drain(self._queue):
                pending.merge(item)
            if pending:  # what it writes is taken out of it; what is held stays
                cur = self._attempt(cur, pending)
            self._flushing = False
            for done in barriers:
                done.set()
        if pending:
            log.error(
                "stopping with %d messages, %d acks and %d statements not written (%s); "
                "the messages the journal holds are recovered at the next start",
                len(pending.messages),
                len(pending.acks),
                len(pending.statements),
                self._space.line() if self._space.full else "the database refused them",
            )
        if cur is not None:
            with contextlib.suppress(Exception):
                cur.close()

    def _attempt(
        self, cur: duckdb.DuckDBPyConnection | None, batch: _Batch
    ) -> duckdb.DuckDBPyConnection | None:
        """One try at writing ``batch``; what is not written stays in it. Returns the cursor."""
        self._faulted = False
        if self._reopen or cur is None:
            cur = self._reopened(cur)
        if cur is not None:
            try:
                self._flush(cur, batch)
            except _Held as held:
                self._faulted = True
                self._reopen = self._reopen or held.reopen
                self._failed(held.cause)
            if self._reopen:
                cur = self._reopened(cur)
        self.holding = bool(batch) or self._faulted or cur is None
        if not self.holding:
            self._space.wrote("recorder")
        return cur

    def _failed(self, exc: BaseException) -> None:
        if is_disk_full(exc):
            self._space.failed("recorder", exc)
        elif not self.holding:  # once per episode, not at every retry
            log.error("the database failed (%s); records are held and retried", exc)

    def _reopened(self, cur: duckdb.DuckDBPyConnection | None) -> duckdb.DuckDBPyConnection | None:
        """Open the database again after DuckDB invalidated it; None if it cannot be yet."""
        if cur is not None:
            with contextlib.suppress(Exception):
                cur.close()
        try:
            self._db.reopen()
            cur = self._db.cursor()
        except Exception as exc:
            if not self.holding:
                log.error("the database could not be opened again yet: %s", exc)
            return None
        self._reopen = False
        if not self.holding:  # once per episode: while the disk is full it may recur
            log.warning("the database was opened again after DuckDB invalidated it")
        return cur

    def _flush(self, cur: duckdb.DuckDBPyConnection, batch: _Batch) -> None:
        """Write the batch in one transaction (a commit costs DuckDB more than most rows).

        If DuckDB refuses any of it, the rows go in on their own (row by row if need
        be), then each statement alone: one bad row never holds back the message log.
        Whatever is written is taken out of ``batch``; :class:`_Held` leaves the rest.
        """
        if self._in_one(cur, batch, batch.statements):
            return
        if not self._in_one(cur, batch, []):
            self.failures += 1
            self._flush_rows(cur, batch)
        self._one_by_one(batch.statements, lambda st: statements.run(cur, st), _skipped)

    def _in_one(
        self, cur: duckdb.DuckDBPyConnection, batch: _Batch, queued: list[Statement]
    ) -> bool:
        try:
            statements.begin(cur)
            if batch.messages:
                message_rows.insert(cur, batch.messages)
            if batch.acks:
                message_rows.insert_acks(cur, batch.acks)
            if batch.events:
                actor_events.insert(cur, batch.events)
            for statement in queued:
                statements.run(cur, statement)
            statements.commit(cur)
        except Exception as exc:
            fault = _fault(exc)
            if fault != "durable":
                with contextlib.suppress(Exception):  # DuckDB may have ended it already
                    statements.rollback(cur)
                if fault is not None:
                    raise _Held(exc, reopen=fault == "reopen") from None
                log.exception("recorder flush failed; writing its parts on their own")
                return False
            self._checkpoint_failed(exc)
        self.recorded += len(batch.messages)
        self.flushed_seq = batch.seq
        batch.written(queued)
        return True

    def _checkpoint_failed(self, exc: BaseException) -> None:
        """Committed, but DuckDB invalidated the database: open it again before the next write."""
        self._reopen = self._faulted = True
        self._failed(exc)

    def _flush_rows(self, cur: duckdb.DuckDBPyConnection, batch: _Batch) -> None:
        """Insert one row at a time, setting aside the rows DuckDB refuses (they are logged)."""
        rejected = self.rejected

        def refused(row: MessageRow, exc: BaseException) -> None:
            self.rejected += 1
            log.error("message %s could not be recorded and was set aside: %s", row.env.id, exc)

        before = len(batch.messages)
        try:
            self._one_by_one(batch.messages, lambda row: message_rows.insert(cur, [row]), refused)
        finally:
            self.recorded += before - len(batch.messages) - (self.rejected - rejected)
        self._one_by_one(
            batch.acks,
            lambda ack: message_rows.insert_acks(cur, [ack]),
            lambda ack, exc: log.error("ack of %s could not be recorded: %s", ack[1], exc),
        )
        events = [batch.events] if batch.events else []
        self._one_by_one(
            events,
            lambda rows: actor_events.insert(cur, rows),
            lambda _, exc: log.error("actor events could not be recorded: %s", exc),
        )
        batch.events = []
        self.flushed_seq = batch.seq

    def _one_by_one(
        self,
        items: list[Any],
        write: Callable[[Any], object],
        refused: Callable[[Any, BaseException], None],
    ) -> None:
        """Write each item alone, taking it off ``items`` once written or refused.

        A full disk stops at the item it hit (:class:`_Held`): it and those after it stay.
        """
        while items:
            try:
                write(items[0])
            except Exception as exc:
                fault = _fault(exc)
                if fault in ("full", "reopen"):
                    raise _Held(exc, reopen=fault == "reopen") from None
                if fault == "durable":
                    self._checkpoint_failed(exc)
                else:
                    refused(items[0], exc)
            items.pop(0)


def _skipped(statement: Statement, exc: BaseException) -> None:
    log.error("recorder statement failed and was skipped: %s: %s", statement[0].split()[:4], exc)


def _drain(source: queue.SimpleQueue[Any]) -> list[Any]:
    out = []
    while True:
        try:
            out.append(source.get_nowait())
        except queue.Empty:
            return out
