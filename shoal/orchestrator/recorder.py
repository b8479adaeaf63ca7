"""The recorder: the only writer of the DuckDB file, batching rows through Arrow.

The broker hands over rows with :meth:`Recorder.submit` (never blocks); a
thread flushes them at least every ``flush_interval`` seconds and on stop.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from shoal.mailbox.envelope import Envelope

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

_INSERT_MESSAGES = """
    INSERT INTO messages
    SELECT id, kind, sender, recipient, task_id, reply_to, attempt,
           make_timestamp(sent_us), make_timestamp(recorded_us), tracked, body
    FROM batch {where}
"""
_INSERT_ACKS = "INSERT INTO acks SELECT message_id, make_timestamp(acked_us) FROM batch {where}"


class MessageRow(NamedTuple):
    env: Envelope
    body: bytes
    recorded_at: float
    tracked: bool


class EventRow(NamedTuple):
    at: float
    name: str
    role: str
    pid: int | None
    event: str
    detail: str


@dataclass
class _Batch:
    seq: int = 0
    messages: list[MessageRow] = field(default_factory=list)
    acks: list[tuple[float, str]] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    statements: list[tuple[str, list[Any]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages) + len(self.acks) + len(self.events) + len(self.statements)


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def insert_messages(
    cur: duckdb.DuckDBPyConnection, rows: list[MessageRow], *, skip_known: bool = False
) -> None:
    import pyarrow as pa

    envs = [r.env for r in rows]
    table = pa.table(
        {
            "id": pa.array([e.id for e in envs], pa.string()),
            "kind": pa.array([e.kind for e in envs], pa.string()),
            "sender": pa.array([e.sender for e in envs], pa.string()),
            "recipient": pa.array([e.recipient for e in envs], pa.string()),
            "task_id": pa.array([e.task_id for e in envs], pa.string()),
            "reply_to": pa.array([e.reply_to for e in envs], pa.string()),
            "attempt": pa.array([e.attempt for e in envs], pa.int32()),
            "sent_us": pa.array([_us(e.sent_at) for e in envs], pa.int64()),
            "recorded_us": pa.array([_us(r.recorded_at) for r in rows], pa.int64()),
            "tracked": pa.array([r.tracked for r in rows], pa.bool_()),
            "body": pa.array([r.body.decode() for r in rows], pa.string()),
        }
    )
    where = (
        "WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = batch.id)" if skip_known else ""
    )
    cur.register("batch", table)
    try:
        cur.execute(
            _INSERT_MESSAGES.format(where=where)
        ).fetchall()  # DuckDB refuses more work on a
        # connection whose last result was not consumed
    finally:
        cur.unregister("batch")


def insert_acks(
    cur: duckdb.DuckDBPyConnection, acks: list[tuple[float, str]], *, skip_known: bool = False
) -> None:
    import pyarrow as pa

    table = pa.table(
        {
            "message_id": pa.array([a[1] for a in acks], pa.string()),
            "acked_us": pa.array([_us(a[0]) for a in acks], pa.int64()),
        }
    )
    where = (
        "WHERE NOT EXISTS (SELECT 1 FROM acks a WHERE a.message_id = batch.message_id)"
        if skip_known
        else ""
    )
    cur.register("batch", table)
    try:
        cur.execute(_INSERT_ACKS.format(where=where)).fetchall()
    finally:
        cur.unregister("batch")


def insert_events(cur: duckdb.DuckDBPyConnection, events: list[EventRow]) -> None:
    import datetime as dt

    cur.executemany(
        "INSERT INTO actor_events VALUES (?, ?, ?, ?, ?, ?)",
        [(dt.datetime.fromtimestamp(e.at, dt.UTC).replace(tzinfo=None), *e[1:]) for e in events],
    )


class Recorder:
    def __init__(self, con: duckdb.DuckDBPyConnection, flush_interval: float) -> None:
        self._con = con
        self._interval = flush_interval
        self._queue: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._barriers: queue.SimpleQueue[threading.Event] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.recorded = 0
        self.flushed_seq = 0
        self.failures = 0
        self.rejected = 0

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
        """Queue one low-volume statement (task rows); run in order with the next flush."""
        self._queue.put(_Batch(0, statements=[(sql, params)]))

    def barrier(self, timeout: float = 2.0) -> bool:
        """Wait until everything submitted before this call is written (read your writes).

        It wakes the recorder for an early flush; False if that took longer than ``timeout``.
        """
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
        cur = self._con.cursor()
        pending = _Batch()
        stopping = False
        while not stopping:
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stop.is_set()
            # Barriers taken before draining the queue: what they wait for is in this flush.
            barriers = []
            while True:
                try:
                    barriers.append(self._barriers.get_nowait())
                except queue.Empty:
                    break
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                pending.seq = max(pending.seq, item.seq)
                pending.messages += item.messages
                pending.acks += item.acks
                pending.events += item.events
                pending.statements += item.statements
            if pending:
                self._flush(cur, pending)
                pending = _Batch(seq=pending.seq)
            for done in barriers:
                done.set()
        cur.close()

    def _flush(self, cur: duckdb.DuckDBPyConnection, batch: _Batch) -> None:
        """Write the batch in one transaction (a commit costs DuckDB more than most rows).

        If DuckDB refuses any of it, the rows go in on their own (row by row if need
        be), then each statement alone: one bad row never holds back the message log.
        """
        if self._in_one(cur, batch, batch.statements):
            return
        if not self._in_one(cur, batch, []):
            self.failures += 1
            self._flush_rows(cur, batch)
        self._statements(cur, batch.statements)

    def _in_one(
        self, cur: duckdb.DuckDBPyConnection, batch: _Batch, statements: list[tuple[str, list[Any]]]
    ) -> bool:
        try:
            cur.execute("BEGIN")
            if batch.messages:
                insert_messages(cur, batch.messages)
            if batch.acks:
                insert_acks(cur, batch.acks)
            if batch.events:
                insert_events(cur, batch.events)
            for sql, params in statements:
                cur.execute(sql, params)
            cur.execute("COMMIT")
        except Exception:
            log.exception("recorder flush failed; writing its parts on their own")
            cur.execute("ROLLBACK")
            return False
        self.recorded += len(batch.messages)
        self.flushed_seq = batch.seq
        return True

    def _flush_rows(self, cur: duckdb.DuckDBPyConnection, batch: _Batch) -> None:
        """Insert one row at a time, setting aside the rows DuckDB refuses (they are logged)."""
        for row in batch.messages:
            try:
                insert_messages(cur, [row])
                self.recorded += 1
            except Exception as exc:
                self.rejected += 1
                log.error("message %s could not be recorded and was set aside: %s", row.env.id, exc)
        for ack in batch.acks:
            try:
                insert_acks(cur, [ack])
            except Exception as exc:
                log.error("ack of %s could not be recorded: %s", ack[1], exc)
        if batch.events:
            try:
                insert_events(cur, batch.events)
            except Exception as exc:
                log.error("actor events could not be recorded: %s", exc)
        self.flushed_seq = batch.seq

    def _statements(
        self, cur: duckdb.DuckDBPyConnection, statements: list[tuple[str, list[Any]]]
    ) -> None:
        for sql, params in statements:
            try:
                cur.execute(sql, params)
            except Exception:
                log.exception("recorder statement failed and was skipped: %s", sql.split()[:4])
