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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope, QueryReply, TaskDone, TaskSubmit
    from shoal.paths import Home

EVENTS = ("task.progress", "exec.event", "eval.checks")
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
    from shoal.store.database import DatabaseBusy
    from shoal.store.queries import QueryError, read_file

    params = params or {}
    for _ in range(3):
        if daemon.running_pid(home) is not None:
            return daemon.query(home, name, params, timeout=timeout)
        try:
            reply = read_file(home, name, params)
        except DatabaseBusy:
            continue  # an orchestrator started meanwhile: ask it
        if reply is not None:
            return reply
        daemon.ensure(home)  # an old file: the writer migrates it, then it answers
    raise QueryError(f"{home.database} is busy; try again")


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
