"""The orchestrator daemon's main: one per SHOAL_HOME.

Start-up order matters: take the home's lock (a second orchestrator stops
here), clean what a crashed predecessor left, replay its journal into DuckDB,
then start the recorder, the broker and the supervisor, and only then tell the
starting client we are ready. SIGTERM drains: actors stop, records flush.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal.paths import Home

if TYPE_CHECKING:
    import duckdb

    from shoal.api.service import ApiService
    from shoal.mailbox.envelope import Envelope
    from shoal.messages.actors import MessageCounters
    from shoal.orchestrator.broker import Broker
    from shoal.orchestrator.delivery import Deliveries, Traffic
    from shoal.orchestrator.outbox import Outbox
    from shoal.orchestrator.recorder import Recorder
    from shoal.orchestrator.router import Router
    from shoal.orchestrator.scheduler import Scheduler
    from shoal.orchestrator.supervisor import Supervisor
    from shoal.store.database import Writer

log = logging.getLogger("shoal.orchestrator")

# Unacked messages older than this are not redelivered after a crash.
_REDELIVER_WINDOW = dt.timedelta(days=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoal-orchestrator")
    parser.add_argument("--home", required=True)
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    os.umask(0o077)
    _raise_fd_limit()
    home = Home.resolve(args.home).ensure()
    ready = os.fdopen(args.ready_fd, "w") if args.ready_fd is not None else None

    lock_fd = os.open(home.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _tell(ready, f"busy {_read_pid(home)}")
        return 3
    try:
        return _serve(home, ready)
    except Exception as exc:
        _tell(ready, f"error {_failure(exc, home)}")
        return 1
    finally:
        with contextlib.suppress(OSError):
            home.pid_file.unlink()
        os.close(lock_fd)


def _raise_fd_limit() -> None:
    """Take every file descriptor the hard limit allows: clients of the HTTP API share this
    process's budget with ZeroMQ (which aborts without one), DuckDB and the actors' pipes.
    The API caps its share from the limit (shoal/api/limits.py)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # macOS: an unlimited hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _serve(home: Home, ready: object) -> int:
    from shoal.api.settings import config_webhooks
    from shoal.launchers.local import LocalLauncher
    from shoal.llm.env import set_litellm_env
    from shoal.settings import OrchestratorSettings

    _setup_logging(home)
    settings = OrchestratorSettings.load(home)
    webhooks = config_webhooks(home)  # a bad [[webhooks]] table stops the start, in one line
    set_litellm_env()  # before the forkserver imports litellm
    # First: the forkserver's imports (litellm, ~2 s) are what the first task's actors
    # wait for; they run in their own process while the records are opened.
    local = LocalLauncher(settings.preload)
    local.warm()
    try:
        return _serve_warm(home, ready, settings, webhooks, local)
    except BaseException:
        local.close()
        raise


def _serve_warm(home: Home, ready: object, settings: Any, webhooks: Any, local: Any) -> int:
    from shoal.orchestrator.recorder import Recorder
    from shoal.orchestrator.resume import resume
    from shoal.store.journal import Journal
    from shoal.store.space import Space

    home.pid_file.write_text(f"{os.getpid()}\n")
    for stale in (home.mailbox_socket, home.events_socket):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    db, unacked = _open_records(home)
    space = Space(home.root)  # a full disk: held writes, refused new work (one shared view)
    recorder = Recorder(db, settings.flush_interval, space)
    journal = Journal(home.journal, space)
    parts = _assemble(home, settings, db, recorder, journal, local)
    resumed = resume(parts.scheduler, db.con)
    parts.broker.load_unacked(unacked)
    parts.supervisor.adopt()
    recorder.start()
    parts.api.boot(webhooks)
    if resumed:
        log.info("resumed %d running task(s)", resumed)
    parts.supervisor.start()
    _drain_on_signals(parts.broker)
    _tell(ready, f"ready {os.getpid()}")
    try:
        parts.broker.serve()
    finally:
        _shutdown(home, parts, recorder, journal, db)
    return 0


def _open_records(home: Home) -> tuple[Any, list[Any]]:
    """The database, with what the journal held replayed into it; the unacked messages."""
    from shoal.store.database import Writer

    db = Writer(home.database)
    recovered = _recover(db.con, home)
    unacked = _unacked(db.con)
    log.info(
        "started pid %d; recovered %d journaled records; %d unacked messages",
        os.getpid(),
        recovered,
        len(unacked),
    )
    return db, unacked


@dataclass
class Parts:
    """The orchestrator's pieces, as ``_assemble`` put them together."""

    broker: Broker
    supervisor: Supervisor
    launchers: dict[str, Any]
    scheduler: Scheduler
    api: ApiService
    traffic: Traffic


def _assemble(home: Home, settings: Any, db: Any, recorder: Any, journal: Any, local: Any) -> Parts:
    """The supervisor and its launchers, the services behind their router, and the broker
    that routes to them. Nothing here needs the broker: what the services send goes
    through the outbox, which the broker empties."""
    from shoal.api.service import ApiService
    from shoal.launchers.ray import RayLauncher
    from shoal.launchers.tmux import TmuxLauncher
    from shoal.orchestrator.broker import Broker, socket_loop
    from shoal.orchestrator.delivery import Deliveries, Traffic
    from shoal.orchestrator.outbox import Outbox
    from shoal.orchestrator.scheduler import Scheduler
    from shoal.orchestrator.supervisor import Supervisor

    launchers: dict[str, Any] = {
        "local": local,
        "tmux": TmuxLauncher(home, settings.preload, lambda row: _store_transcript(recorder, row)),
    }
    loop = socket_loop()
    outbox, traffic = Outbox(loop.wake), Traffic(dropped=lambda: loop.dropped)
    deliveries = Deliveries(settings.ack_timeout)
    supervisor = Supervisor(home, settings, launchers, recorder, outbox.publish)
    scheduler = Scheduler(outbox, settings, supervisor, recorder)
    api = ApiService(home, recorder.write)
    router = _router(home, db, recorder, outbox, supervisor, scheduler, api, deliveries, traffic)
    broker = Broker(
        home,
        settings,
        recorder=recorder,
        journal=journal,
        supervisor=supervisor,
        handler=router,
        outbox=outbox,
        deliveries=deliveries,
        traffic=traffic,
        loop=loop,
    )
    # Ray starts on its first launch (or at once when it is the backend), never here.
    launchers["ray"] = RayLauncher(home, settings, broker.tcp_endpoint)
    return Parts(broker, supervisor, launchers, scheduler, api, traffic)


def _router(
    home: Home,
    db: Writer,
    recorder: Recorder,
    outbox: Outbox,
    supervisor: Supervisor,
    scheduler: Scheduler,
    api: ApiService,
    deliveries: Deliveries,
    traffic: Traffic,
) -> Router:
    """Every service, each for the kinds it lists (a kind listed twice stops the start)."""
    from shoal.orchestrator.members import TeamMembers
    from shoal.orchestrator.router import Router
    from shoal.orchestrator.services.admin import Admin
    from shoal.orchestrator.services.batches import Batches
    from shoal.orchestrator.services.flow import Flows
    from shoal.orchestrator.services.memory import Memory
    from shoal.orchestrator.services.patterns import Patterns
    from shoal.orchestrator.services.records import Records
    from shoal.orchestrator.services.sessions import Sessions
    from shoal.orchestrator.services.team_tasks import TeamTasks
    from shoal.orchestrator.services.workers import Workers

    workers = Workers(db, outbox.post)  # db: its cursor() only, one per job

    def counters() -> MessageCounters:
        return traffic.counters(recorder.recorded, deliveries.pending())

    services = [
        Admin(home, outbox, supervisor, scheduler, api, counters, traffic.started_at),
        scheduler,
        TeamMembers(home, supervisor, scheduler, deliveries, workers),
        TeamTasks(workers),
        Memory(home, workers),
        Patterns(workers),
        Records(home, recorder, workers),
        Sessions(supervisor, workers, outbox.publish),
        Batches(workers, outbox.publish),
        Flows(traffic.flow),
    ]
    return Router(services, outbox.post)


def _drain_on_signals(broker: Any) -> None:
    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: draining", signum)
        broker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _shutdown(home: Home, parts: Parts, recorder: Any, journal: Any, db: Any) -> None:
    """In order: the API stops, actors stop, the forkserver goes, sockets close, records flush."""
    broker, supervisor, launchers = parts.broker, parts.supervisor, parts.launchers
    parts.api.close()
    supervisor.stop_all()
    supervisor.wait_stopped(6.0)
    for launcher in launchers.values():
        launcher.close()
    broker.close()
    recorder.stop()
    if recorder.flushed_seq >= broker.submitted_seq:
        journal.truncate()  # everything in it is in DuckDB now
    elif not journal.retry():  # a last try for what a full disk held back
        log.error("%d journal records are lost: %s", len(journal.held), journal.space.line())
    journal.close()
    db.close()
    from shoal.mailbox.curve import tcp_file

    for path in (home.mailbox_socket, home.events_socket, home.roster_file, tcp_file(home)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    traffic = parts.traffic
    log.info(
        "stopped; routed %d, recorded %d, dropped %d (and %d polled reads, routed only)",
        traffic.routed - traffic.unrecorded,
        recorder.recorded,
        parts.broker.dropped,
        traffic.unrecorded,
    )


def _failure(exc: Exception, home: Home) -> str:
    """The start-up error in one line, for the log and the starting client."""
    from shoal.store.database import DatabaseError
    from shoal.store.space import DiskFull, is_disk_full, reason_of

    if is_disk_full(exc) and not isinstance(exc, DiskFull):  # the pid file, the journal...
        exc = DiskFull(home.root, reason_of(exc))
    if isinstance(exc, DatabaseError | DiskFull):  # a line written for the user
        line = str(exc)
        log.error("orchestrator failed to start: %s", line)
    else:
        line = f"{type(exc).__name__}: {exc}"
        log.exception("orchestrator failed")
    return " ".join(line.split("\n"))


def _store_transcript(recorder: Any, row: Any) -> None:
    from shoal.store import teams

    recorder.write(*teams.transcript(row))


def _recover(con: duckdb.DuckDBPyConnection, home: Home) -> int:
    """Put what the last run journaled but never flushed into DuckDB, then empty the journal.

    A full disk stops the start (DiskFull) with the journal kept for the next one.
    """
    from shoal.mailbox.envelope import Envelope, InvalidMessage
    from shoal.store.journal import Journal
    from shoal.store.messages import MessageRow, insert_acks
    from shoal.store.space import DiskFull, is_disk_full, reason_of

    replayed = Journal.replay(home.journal)
    rows = []
    for tracked, recorded_at, body in replayed.messages:
        with contextlib.suppress(InvalidMessage):
            rows.append(MessageRow(Envelope.decode(body), body, recorded_at, tracked))
    try:
        _recover_rows(con, rows)
        if replayed.acks:
            insert_acks(con, replayed.acks, skip_known=True)
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFull(home.root, reason_of(exc)) from None
        raise
    with contextlib.suppress(FileNotFoundError):
        os.truncate(home.journal, 0)
    return len(rows) + len(replayed.acks)


def _recover_rows(con: duckdb.DuckDBPyConnection, rows: list[Any]) -> None:
    from shoal.store import messages
    from shoal.store.space import is_disk_full

    try:
        if rows:
            messages.insert(con, rows, skip_known=True)
    except Exception as exc:
        if is_disk_full(exc):
            raise
        for row in rows:  # one by one: a row DuckDB refuses must not block the start
            try:
                messages.insert(con, [row], skip_known=True)
            except Exception as refused:
                if is_disk_full(refused):
                    raise
                log.error("journaled message %s could not be recovered: %s", row.env.id, refused)


def _unacked(con: duckdb.DuckDBPyConnection) -> list[tuple[Envelope, bytes]]:
    from shoal.mailbox.envelope import Envelope
    from shoal.store import messages

    since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - _REDELIVER_WINDOW
    bodies = [body.encode() for body in messages.unacked(con, since)]
    return [(Envelope.decode(body), body) for body in bodies]


def _setup_logging(home: Home) -> None:
    from shoal.orchestrator.logfile import LogFile

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s",
        handlers=[LogFile(home.logs / "orchestrator.log")],  # keeps what a full disk refuses
        force=True,
    )


def _read_pid(home: Home) -> str:
    try:
        return home.pid_file.read_text().strip()
    except OSError:
        return "?"


def _tell(ready: object, line: str) -> None:
    if ready is None:
        return
    with contextlib.suppress(OSError, ValueError):
        ready.write(line + "\n")  # type: ignore[attr-defined]
        ready.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    code = main()
    # Everything is flushed and closed by now; skipping interpreter teardown avoids
    # DuckDB's binding reporting objects it still holds ("nanobind: leaked ...").
    # What teardown would have removed is removed here: multiprocessing's temp dir.
    from shoal.launchers.local import remove_temp_dir

    remove_temp_dir()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
