"""Requests addressed to the orchestrator itself (recipient ``orchestrator``).

Handlers are named after the kind they answer, like actors' handlers. Quick
ones run on the broker loop; store queries run on a worker thread so a slow
query never stalls routing.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from pydantic import ValidationError

from shoal.actors.registry import UnknownRole
from shoal.config import model_env_fingerprint
from shoal.mailbox.envelope import (
    Envelope,
    ErrorReply,
    OkReply,
    Payload,
    QueryRequest,
    RetireRequest,
    SpawnReply,
    SpawnRequest,
    StatusReply,
    StatusRequest,
    StopRequest,
    TaskAccepted,
    TaskCancel,
    TaskSubmit,
    UnknownKind,
)
from shoal.orchestrator.scheduler import Scheduler
from shoal.store.queries import QueryError, run_query

if TYPE_CHECKING:
    import duckdb

    from shoal.orchestrator.broker import Broker
    from shoal.orchestrator.supervisor import Supervisor

log = logging.getLogger(__name__)


class Control:
    def __init__(
        self, broker: Broker, supervisor: Supervisor, con: duckdb.DuckDBPyConnection
    ) -> None:
        self.broker = broker
        self.supervisor = supervisor
        self._con = con
        self.scheduler = Scheduler(broker, supervisor, broker.recorder)

    def tick(self, now: float) -> None:
        self.scheduler.tick(now)

    def handle(self, env: Envelope) -> None:
        if self.scheduler.owns(env.reply_to):
            self.scheduler.on_reply(env)  # an actor answering one of our task steps
            return
        handler = getattr(self, "on_" + env.kind.replace(".", "_"), None)
        if handler is None:
            self._reply(
                env,
                ErrorReply(
                    code="no_handler", message=f"the orchestrator does not handle {env.kind}"
                ),
            )
            return
        try:
            payload = env.parse_payload()
        except (ValidationError, UnknownKind) as exc:
            self._reply(env, ErrorReply(code="bad_payload", message=str(exc).splitlines()[0]))
            return
        try:
            reply = handler(env, payload)
        except (LookupError, ValueError, UnknownRole) as exc:
            reply = ErrorReply(code="refused", message=str(exc).strip("'\""))
        if reply is not None:
            self._reply(env, reply)

    def _reply(self, env: Envelope, payload: Payload) -> None:
        self.broker.post(payload, env.sender, reply_to=env.id, task_id=env.task_id)

    def on_orchestrator_status(self, env: Envelope, payload: StatusRequest) -> StatusReply:
        return StatusReply(
            pid=os.getpid(),
            home=str(self.broker.home.root),
            started_at=self.broker.started_at,
            actors=self.supervisor.snapshot(),
            messages=self.broker.counters(),
            running_tasks=len(self.scheduler.tasks),
            env_fingerprint=model_env_fingerprint(),
        )

    def on_orchestrator_stop(self, env: Envelope, payload: StopRequest) -> OkReply:
        self.broker.stop()
        return OkReply(detail="stopping")

    def on_actor_spawn(self, env: Envelope, payload: SpawnRequest) -> SpawnReply:
        names = self.supervisor.spawn(payload.role, payload.count, payload.name, payload.launcher)
        return SpawnReply(names=names)

    def on_actor_retire(self, env: Envelope, payload: RetireRequest) -> OkReply:
        self.supervisor.retire(payload.name)
        return OkReply(detail=f"retiring {payload.name}")

    def on_task_submit(self, env: Envelope, payload: TaskSubmit) -> TaskAccepted:
        return self.scheduler.submit(env, payload)

    def on_task_cancel(self, env: Envelope, payload: TaskCancel) -> OkReply:
        if not self.scheduler.cancel(payload.task_id):
            raise LookupError(f"no running task {payload.task_id}")
        return OkReply(detail=f"cancelling {payload.task_id}")

    def on_store_query(self, env: Envelope, payload: QueryRequest) -> None:
        threading.Thread(target=self._query, args=(env, payload), daemon=True).start()

    def _query(self, env: Envelope, payload: QueryRequest) -> None:
        cur = self._con.cursor()
        try:
            reply: Payload = run_query(cur, payload.name, payload.params)
        except QueryError as exc:
            reply = ErrorReply(code="refused", message=str(exc))
        except Exception as exc:
            log.exception("query %s failed", payload.name)
            reply = ErrorReply(code="handler_failed", message=f"{type(exc).__name__}: {exc}")
        finally:
            cur.close()
        self._reply(env, reply)
