"""The one client library: how anything outside the orchestrator drives shoal.

The CLI, ``shoal mcp serve`` and scripts use it; each only words what happens
its own way. Everything here talks to the orchestrator of a ``SHOAL_HOME``
(started on demand), or reads its records when none runs::

    from shoal.client import query, run_task
    from shoal.submission import task_submit

    done = run_task(home, task_submit(home, "fix the failing test", repo, {}, no_model="..."))
    rows = query(home, "tasks.recent", {"limit": 5}).rows
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope, QueryReply, TaskDone, TaskSubmit
    from shoal.paths import Home

T = TypeVar("T")

EVENTS = ("task.progress", "exec.event", "eval.checks", "team.progress")
"""The kinds of event a task's follower gets."""


class ClientError(Exception):
    """The request cannot be made as things are; the message says why and what to do."""


@dataclass
class Follower:
    """What a caller of :func:`run_task` wants to hear while the task runs (all optional)."""

    accepted: Callable[[str, str | None], None] = lambda task_id, waiting_for: None
    """The task's id, and the task it is queued behind (None: it started)."""
    event: Callable[[Envelope], None] = lambda env: None
    """Each of the task's events (:data:`EVENTS`)."""
    note: Callable[[str], None] = lambda text: None
    """Something a person should know (a cancel sent, the orchestrator restarted)."""


def run_task(home: Home, submit: TaskSubmit, follower: Follower | None = None) -> TaskDone:
    """Submit ``submit``, follow it to its end and return its ``task.done``.

    Ctrl-C (KeyboardInterrupt) cancels the task; a second one leaves it running and
    is raised. An orchestrator that dies under the task is started again (the task
    resumes). ClientError: an orchestrator started with other model settings is busy.
    """
    import zmq

    from shoal.mailbox.client import MailboxClient
    from shoal.mailbox.envelope import ORCHESTRATOR, TaskAccepted, TaskCancel, TaskDone
    from shoal.mailbox.events import Subscriber

    follower = follower or Follower()
    ensure_orchestrator(home)
    with (
        Subscriber(home.events_endpoint, list(EVENTS)) as events,
        MailboxClient(home.mailbox_endpoint) as client,
    ):
        accepted = client.request(ORCHESTRATOR, submit, timeout=30).parse_payload()
        assert isinstance(accepted, TaskAccepted)
        # Said in the reply: an event sent this soon may be missed by a new subscriber.
        follower.accepted(accepted.task_id, accepted.waiting_for)
        interrupted = False
        next_check = time.monotonic() + 2.0
        poller = zmq.Poller()
        poller.register(client.socket, zmq.POLLIN)
        poller.register(events.socket, zmq.POLLIN)
        while True:
            if time.monotonic() > next_check:
                next_check = time.monotonic() + 2.0
                _keep_orchestrator(home, follower)
            try:
                ready = dict(poller.poll(0 if client.waiting else 500))
                env = client.recv(timeout=0) if client.waiting or client.socket in ready else None
                if env is not None and env.kind == TaskDone.kind:
                    return TaskDone.model_validate(env.payload)
                event = events.recv(timeout=0) if events.socket in ready else None
                if event is not None and event.task_id == accepted.task_id:
                    follower.event(event)
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                follower.note("cancelling (Ctrl-C again to leave it running)")
                client.send(ORCHESTRATOR, TaskCancel(task_id=accepted.task_id))


def query(
    home: Home, name: str, params: dict[str, Any] | None = None, timeout: float = 10.0
) -> QueryReply:
    """Run a named query (:mod:`shoal.store.queries`) through the orchestrator if one runs,
    else on the database file opened read-only."""
    from shoal.orchestrator import daemon
    from shoal.store.queries import run_query

    params = params or {}
    return on_records(
        home,
        lambda: daemon.query(home, name, params, timeout=timeout),
        lambda con: run_query(con, name, params),
    )


def query_many(
    home: Home, asked: list[tuple[str, dict[str, Any]]], timeout: float = 30.0
) -> list[QueryReply]:
    """Several named queries: each through the orchestrator, or all on one read-only open."""
    from shoal.orchestrator import daemon
    from shoal.store.queries import run_query

    return on_records(
        home,
        lambda: [daemon.query(home, name, params, timeout=timeout) for name, params in asked],
        lambda con: [run_query(con, name, params) for name, params in asked],
    )


def sql(home: Home, text: str, *, limit: int | None = None, timeout: float | None = None) -> Any:
    """A user's SELECT on the records (``shoal sql``): a ``usersql.Result``; SqlError when
    refused or failed."""
    from shoal.mailbox.envelope import SqlRequest
    from shoal.store import usersql

    usersql.check_length(text)
    limit = usersql.DEFAULT_LIMIT if limit is None else limit
    timeout = usersql.DEFAULT_TIMEOUT if timeout is None else timeout

    def ask() -> usersql.Result:
        reply = _ask_sql(home, SqlRequest(sql=text, limit=limit, timeout=timeout), timeout + 15)
        return usersql.read_result(Path(reply.rows_file), reply.truncated)

    def on_file(con: Any) -> usersql.Result:
        usersql.lock_down(con)
        return usersql.run(con.cursor(), text, limit=limit, timeout=timeout)

    return on_records(home, ask, on_file)


def export_views(home: Home, directory: Path, timeout: float = 600.0) -> dict[str, int]:
    """Every public view as Parquet in ``directory``, by the orchestrator if it runs (it
    owns the file), else from the file opened read-only. Rows written per view."""
    from shoal.mailbox.envelope import ExportRequest
    from shoal.store import usersql

    directory = directory.expanduser().absolute()
    return on_records(
        home,
        lambda: _ask_sql(home, ExportRequest(directory=str(directory)), timeout).files,
        lambda con: usersql.export(con.cursor(), directory),
    )


def on_records(home: Home, ask: Callable[[], T], on_file: Callable[[Any], T]) -> T:
    """``ask`` the orchestrator if one runs (it owns the database file), else ``on_file``
    with the file opened read-only: the two ways in of every read."""
    from shoal.orchestrator import daemon
    from shoal.store import queries
    from shoal.store.database import DatabaseBusy

    for _ in range(3):
        if daemon.running_pid(home) is not None:
            return ask()
        try:
            return queries.on_file(home, on_file)
        except DatabaseBusy:
            continue  # an orchestrator started meanwhile: ask it
        except queries.OutdatedFile:
            daemon.ensure(home)  # the writer migrates the file; then it answers
    raise queries.QueryError(f"{home.database} is busy; try again")


def _ask_sql(home: Home, payload: Any, timeout: float) -> Any:
    from shoal.mailbox.errors import RemoteError
    from shoal.orchestrator import daemon
    from shoal.store.usersql import SqlError

    try:
        return daemon.request(home, payload, timeout=timeout)
    except RemoteError as exc:
        raise SqlError(exc.message) from None


def ensure_orchestrator(home: Home) -> None:
    """Start the orchestrator, or restart an idle one whose model settings differ from ours."""
    from shoal.config import model_env_fingerprint
    from shoal.orchestrator import daemon

    _, started = daemon.start(home)
    if started:
        return
    status = daemon.status(home)
    if status.env_fingerprint == model_env_fingerprint():
        return
    if status.running_tasks:
        raise ClientError(
            "the orchestrator was started with other model or backend settings and is running "
            f"{status.running_tasks} task(s); wait for them or run `shoal orchestrator stop`"
        )
    teams = sorted({a.role.partition("@")[2] for a in status.actors if "@" in a.role})
    if teams:  # restarting would take the teams down with it
        raise ClientError(
            "the orchestrator was started with other model settings and has teams up "
            f"({', '.join(teams)}); use the same settings, or `shoal team down NAME` first"
        )
    daemon.stop(home)
    daemon.start(home)


def _keep_orchestrator(home: Home, follower: Follower) -> None:
    """If the orchestrator died under a running task, start it again: the task resumes."""
    from shoal.orchestrator import daemon

    if daemon.running_pid(home) is None:
        follower.note("the orchestrator stopped; restarting it (the task resumes)")
        daemon.ensure(home)
