"""The one client library: how anything outside the orchestrator drives shoal.

The CLI, ``shoal mcp serve`` and scripts use it; each only words what happens
its own way. Everything here talks to the orchestrator of a ``SHOAL_HOME``
(started on demand), or reads its records when none runs::

    from shoal.client import Client
    from shoal.submission import task_submit

    client = Client(home)
    with client.submit(task_submit(home, "fix the failing test", repo, {}, no_model="-")) as task:
        for event in task.events():      # task.progress, exec.event, eval.checks
            print(event.kind, event.payload)
        done = task.wait()                # the task.done (task.cancel() stops it)
    rows = client.query("tasks.recent", {"limit": 5}).rows

:func:`run_task`, :func:`query`, :func:`sql` and friends are the same as plain
functions of a home.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shoal.mailbox.envelope import ORCHESTRATOR
from shoal.messages.base import from_dict

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.mailbox.events import AsyncSubscriber
    from shoal.messages.actors import OrchestratorStatusResult
    from shoal.messages.base import Payload
    from shoal.messages.store import StoreQueryResult
    from shoal.messages.tasks import ReviewRequest, ReviewResult, TaskDone, TaskSubmit
    from shoal.paths import Home

T = TypeVar("T")

EVENTS = ("task.progress", "exec.event", "eval.checks", "team.progress")
"""The kinds of event a task's follower gets."""


class ClientError(Exception):
    """The request cannot be made as things are; the message says why and what to do."""


class Requester(Protocol):
    """A thread-safe way to the orchestrator for code inside it (the HTTP API's bridge)."""

    def request(self, payload: Payload, timeout: float = 10.0) -> Payload: ...

    def send(self, payload: Payload, to: str) -> None: ...


class Client:
    """The orchestrator of ``home``, from a client's side.

    ``backend`` and ``ray_address`` choose where an orchestrator started by this client
    runs its actors (``local`` or ``ray``); an idle one started otherwise is restarted.
    ``via``: code running inside the orchestrator (the HTTP API) sends its requests
    through that instead of a mailbox client of its own.
    """

    def __init__(
        self,
        home: Home,
        *,
        backend: str | None = None,
        ray_address: str | None = None,
        via: Requester | None = None,
    ) -> None:
        self.home = home
        self.env: dict[str, str | None] = {}
        """Over the environment of an orchestrator this client starts (None: unset)."""
        if backend is not None:
            self.env["SHOAL_BACKEND"] = backend
            self.env["SHOAL_RAY_ADDRESS"] = ray_address
        self._via = via
        self._started = via is not None

    def running(self) -> bool:
        """Whether an orchestrator runs for this home."""
        from shoal import daemon

        return self._via is not None or daemon.running_pid(self.home) is not None

    def start(self, *, same_settings: bool = True) -> None:
        """Start the orchestrator if none runs. With ``same_settings``, an idle one started
        with other model or backend settings is restarted (ClientError while it is busy)."""
        from shoal import daemon

        if self._started:
            return
        if same_settings:
            ensure_orchestrator(self.home, self.env)
        else:
            daemon.ensure(self.home)
        self._started = True

    def request(
        self, payload: Payload, timeout: float = 10.0, *, to: str = ORCHESTRATOR
    ) -> Payload:
        """A request to the running orchestrator (or, ``to``, an actor or a role:
        ``role:evaluator``) and its reply. RemoteError if it was refused; ClientError if no
        orchestrator runs (:meth:`start` starts one)."""
        from shoal import daemon

        if self._via is not None and to == ORCHESTRATOR:
            return self._via.request(payload, timeout)
        if not self._started and daemon.running_pid(self.home) is None:
            raise ClientError(
                f"no orchestrator runs for {self.home.root}; "
                "start it with `shoal orchestrator start`"
            )
        return daemon.request(self.home, payload, timeout, to=to)

    def send(self, payload: Payload, *, to: str) -> None:
        """A message to an actor that answers nothing (a steering line to a member)."""
        from shoal.mailbox.client import MailboxClient

        if self._via is not None:
            self._via.send(payload, to)
            return
        self.start()
        with MailboxClient(self.home.mailbox_endpoint) as client:
            client.send(to, payload)

    def status(self, timeout: float = 10.0) -> OrchestratorStatusResult:
        from shoal.messages.actors import OrchestratorStatus

        return self.request(OrchestratorStatus(), timeout)  # type: ignore[return-value]

    def query(
        self, name: str, params: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> StoreQueryResult:
        """A named query (through the orchestrator if one runs, else the file read-only)."""
        from shoal.messages.store import StoreQuery

        if self._via is not None:
            return self.request(StoreQuery(name=name, params=params or {}), timeout)  # type: ignore[return-value]
        return query(self.home, name, params, timeout)

    def submit(self, task: TaskSubmit) -> TaskHandle:
        """Send ``task`` (starting the orchestrator if needed); the handle follows it
        (events, cancel, wait)."""
        self.start()
        return TaskHandle(self.channel(list(EVENTS)), task)

    def cancel(self, task_id: str) -> None:
        """Cancel a running task (RemoteError if none runs by that id)."""
        from shoal.messages.tasks import TaskCancel

        self.request(TaskCancel(task_id=task_id))

    def channel(self, topics: list[str] | None = None, name: str | None = None) -> Channel:
        """A conversation with the orchestrator and its actors that hears the events of
        ``topics`` (prefixes of kinds; None: none)."""
        return Channel(self.home, topics, name)

    def events_async(self, topics: list[str] | None = None) -> AsyncSubscriber:
        """The events of ``topics`` (prefixes of kinds; None or []: all) for code on an
        asyncio loop (the HTTP API's event streams): ``await sub.recv()``, then ``close()``."""
        from shoal.mailbox.events import AsyncSubscriber

        return AsyncSubscriber(self.home.events_endpoint, topics or [])


class Channel:
    """Messages to the orchestrator and its actors and what comes back, on one mailbox,
    beside the events of some topics (subscribed at once, so none sent after is missed).

    One thread's: ZeroMQ sockets are not thread-safe. A context manager.
    """

    def __init__(self, home: Home, topics: list[str] | None, name: str | None = None) -> None:
        import zmq

        from shoal.mailbox.client import MailboxClient
        from shoal.mailbox.events import Subscriber

        self._events = Subscriber(home.events_endpoint, topics) if topics is not None else None
        self._mailbox = MailboxClient(home.mailbox_endpoint, name)
        self._poller = zmq.Poller()
        self._poller.register(self._mailbox.socket, zmq.POLLIN)
        if self._events is not None:
            self._poller.register(self._events.socket, zmq.POLLIN)

    @property
    def name(self) -> str:
        return self._mailbox.name

    def send(self, payload: Payload, *, to: str = ORCHESTRATOR) -> Envelope:
        """Send without waiting; the envelope sent (its id is what a reply answers)."""
        return self._mailbox.send(to, payload)

    def request(
        self, payload: Payload, *, to: str = ORCHESTRATOR, timeout: float = 30.0
    ) -> Payload:
        """Send and wait for the reply (RemoteError if refused, MailboxTimeout if none)."""
        return self._mailbox.request(to, payload, timeout=timeout).parse_payload()

    def receive(self, timeout: float) -> tuple[Envelope | None, Envelope | None]:
        """What arrives within ``timeout`` seconds: a message to this channel (a reply)
        and an event, each None if none came."""
        waiting = self._mailbox.waiting
        ready = dict(self._poller.poll(0 if waiting else int(timeout * 1000)))
        mail = self._mailbox.recv(timeout=0) if waiting or self._mailbox.socket in ready else None
        events = self._events
        event = events.recv(timeout=0) if events is not None and events.socket in ready else None
        return mail, event

    def event(self, timeout: float) -> Envelope | None:
        """The next event, or None after ``timeout`` seconds."""
        return self._events.recv(timeout=timeout) if self._events is not None else None

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
        self._mailbox.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TaskHandle:
    """One submitted task: its id, its events, a way to cancel it and to wait for its end.

    A context manager; closing it does not cancel the task (it runs on in the
    orchestrator: ``shoal show`` it).
    """

    def __init__(self, channel: Channel, submit: TaskSubmit) -> None:
        from shoal.messages.tasks import TaskSubmitResult

        self._channel = channel
        accepted = channel.request(submit, timeout=30)
        assert isinstance(accepted, TaskSubmitResult)
        self.task_id = accepted.task_id
        self.waiting_for = accepted.waiting_for
        """The task this one is queued behind (another task changing its work tree), if any.
        Said in the reply: an event sent this soon may be missed by a new subscriber."""
        self.done: TaskDone | None = None

    def events(self) -> Iterator[Envelope]:
        """The task's events until it ends (then :attr:`done` is set)."""
        while self.done is None:
            yield from self.poll(0.5)

    def poll(self, timeout: float) -> list[Envelope]:
        """The task's events that arrive within about ``timeout`` seconds (sooner if it
        ends: then :attr:`done` is set)."""
        from shoal.messages.tasks import TaskDone

        found: list[Envelope] = []
        deadline = time.monotonic() + timeout
        while self.done is None:
            mail, event = self._channel.receive(max(0.0, deadline - time.monotonic()))
            if mail is not None and mail.kind == TaskDone.kind:
                self.done = from_dict(TaskDone, mail.payload)
            if event is not None and event.task_id == self.task_id:
                found.append(event)
            if mail is None and event is None and time.monotonic() >= deadline:
                break
        return found

    def wait(self) -> TaskDone:
        """Block until the task ends; its ``task.done``."""
        for _ in self.events():
            pass
        assert self.done is not None
        return self.done

    def cancel(self) -> None:
        from shoal.messages.tasks import TaskCancel

        self._channel.send(TaskCancel(task_id=self.task_id))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TaskHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Follower:
    """What a caller of :func:`run_task` wants to hear while the task runs (all optional)."""

    accepted: Callable[[str, str | None], None] = lambda task_id, waiting_for: None
    """The task's id, and the task it is queued behind (None: it started)."""
    event: Callable[[Envelope], None] = lambda env: None
    """Each of the task's events (:data:`EVENTS`)."""
    note: Callable[[str], None] = lambda text: None
    """Something a person should know (a cancel sent, the orchestrator restarted)."""


def run_task(
    home: Home,
    submit: TaskSubmit,
    follower: Follower | None = None,
    *,
    client: Client | None = None,
) -> TaskDone:
    """Submit ``submit``, follow it to its end and return its ``task.done``.

    Ctrl-C (KeyboardInterrupt) cancels the task; a second one leaves it running and
    is raised. An orchestrator that dies under the task is started again (the task
    resumes). ClientError: an orchestrator started with other model settings is busy.
    """
    follower = follower or Follower()
    client = client or Client(home)
    with client.submit(submit) as task:
        follower.accepted(task.task_id, task.waiting_for)
        interrupted = False
        next_check = time.monotonic() + 2.0
        while task.done is None:
            if time.monotonic() > next_check:
                next_check = time.monotonic() + 2.0
                _keep_orchestrator(home, follower)
            try:
                for event in task.poll(0.5):
                    follower.event(event)
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                follower.note("cancelling (Ctrl-C again to leave it running)")
                task.cancel()
        return task.done


def review(home: Home, request: ReviewRequest, timeout: float = 3600.0) -> ReviewResult:
    """Have an evaluator review a change (``review.request``): its checks and judge, changing
    nothing. The orchestrator is started, and an evaluator with it, when none runs."""
    from shoal.mailbox.envelope import ROLE_PREFIX
    from shoal.messages.actors import ActorSpawn

    client = Client(home)
    client.start()
    if not any(a.role == "evaluator" and a.state != "stopped" for a in client.status().actors):
        client.request(ActorSpawn(role="evaluator"), timeout=30)
    return client.request(request, timeout, to=ROLE_PREFIX + "evaluator")  # type: ignore[return-value]


def query(
    home: Home, name: str, params: dict[str, Any] | None = None, timeout: float = 10.0
) -> StoreQueryResult:
    """Run a named query (:mod:`shoal.store.queries`) through the orchestrator if one runs,
    else on the database file opened read-only."""
    from shoal import daemon
    from shoal.store.queries import run_query

    params = params or {}
    return on_records(
        home,
        lambda: daemon.query(home, name, params, timeout=timeout),
        lambda con: run_query(con, name, params),
    )


def query_many(
    home: Home, asked: list[tuple[str, dict[str, Any]]], timeout: float = 30.0
) -> list[StoreQueryResult]:
    """Several named queries: each through the orchestrator, or all on one read-only open."""
    from shoal import daemon
    from shoal.store.queries import run_query

    return on_records(
        home,
        lambda: [daemon.query(home, name, params, timeout=timeout) for name, params in asked],
        lambda con: [run_query(con, name, params) for name, params in asked],
    )


def sql(home: Home, text: str, *, limit: int | None = None, timeout: float | None = None) -> Any:
    """A user's SELECT on the records (``shoal sql``): a ``usersql.Result``; SqlError when
    refused or failed."""
    from shoal.messages.store import StoreSql
    from shoal.store import usersql

    usersql.check_length(text)
    limit = usersql.DEFAULT_LIMIT if limit is None else limit
    timeout = usersql.DEFAULT_TIMEOUT if timeout is None else timeout

    def ask() -> usersql.Result:
        reply = _ask_sql(home, StoreSql(sql=text, limit=limit, timeout=timeout), timeout + 15)
        return usersql.read_result(Path(reply.rows_file), reply.truncated)

    def on_file(con: Any) -> usersql.Result:
        usersql.lock_down(con)
        return usersql.run(con.cursor(), text, limit=limit, timeout=timeout)

    return on_records(home, ask, on_file)


def export_views(home: Home, directory: Path, timeout: float = 600.0) -> dict[str, int]:
    """Every public view as Parquet in ``directory``, by the orchestrator if it runs (it
    owns the file), else from the file opened read-only. Rows written per view."""
    from shoal.messages.store import StoreExport
    from shoal.store import usersql

    directory = directory.expanduser().absolute()
    return on_records(
        home,
        lambda: _ask_sql(home, StoreExport(directory=str(directory)), timeout).files,
        lambda con: usersql.export(con.cursor(), directory),
    )


def dump_tables(
    home: Home, tables: list[str], directory: Path, timeout: float = 600.0
) -> dict[str, int]:
    """Named tables (``shoal.store.dump.TABLES``) as Parquet in ``directory``, by the
    orchestrator if it runs, else from the file opened read-only. Rows written per table."""
    from shoal import daemon
    from shoal.mailbox.errors import RemoteError
    from shoal.messages.store import StoreDump
    from shoal.store.dump import DumpError, dump

    directory = directory.expanduser().absolute()

    def ask() -> dict[str, int]:
        try:
            request = StoreDump(tables=tables, directory=str(directory))
            return daemon.request(home, request, timeout=timeout).files
        except RemoteError as exc:
            raise DumpError(exc.message) from None

    return on_records(home, ask, lambda con: dump(con.cursor(), tables, directory))


def import_learnings(home: Home, learnings: list[Any], chunk: int = 500) -> tuple[int, int]:
    """Exported learnings into this home's memory, through the orchestrator (the one
    writer; started if needed): ``(imported, skipped)``, skipped ones being here already."""
    from shoal import daemon
    from shoal.messages.memory import MemoryImport

    daemon.ensure(home)
    imported = skipped = 0
    for start in range(0, len(learnings), chunk):
        batch = MemoryImport(learnings=learnings[start : start + chunk])
        reply = daemon.request(home, batch, timeout=300)
        imported, skipped = imported + reply.imported, skipped + reply.skipped
    return imported, skipped


def on_records(home: Home, ask: Callable[[], T], on_file: Callable[[Any], T]) -> T:
    """``ask`` the orchestrator if one runs (it owns the database file), else ``on_file``
    with the file opened read-only: the two ways in of every read."""
    from shoal import daemon
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
    from shoal import daemon
    from shoal.mailbox.errors import RemoteError
    from shoal.store.usersql import SqlError

    try:
        return daemon.request(home, payload, timeout=timeout)
    except RemoteError as exc:
        raise SqlError(exc.message) from None


def ensure_orchestrator(home: Home, env: dict[str, str | None] | None = None) -> None:
    """Start the orchestrator (with ``env`` over this process's environment), or restart
    an idle one whose model or backend settings differ from ours."""
    from shoal import daemon
    from shoal.config import model_env_fingerprint

    _, started = daemon.start(home, env=env)
    if started:
        return
    status = daemon.status(home)
    if status.env_fingerprint == model_env_fingerprint(daemon.child_env(env)):
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
    daemon.start(home, env=env)


def _keep_orchestrator(home: Home, follower: Follower) -> None:
    """If the orchestrator died under a running task, start it again: the task resumes."""
    from shoal import daemon

    if daemon.running_pid(home) is None:
        follower.note("the orchestrator stopped; restarting it (the task resumes)")
        daemon.ensure(home)
