"""Requests about the orchestrator itself: its status, stopping it, starting and retiring
actors, and serving the HTTP API. All of them run on the broker's thread."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from shoal.config import model_env_fingerprint
from shoal.messages.actors import (
    ActorRetire,
    ActorSpawn,
    ActorSpawnResult,
    ApiLogin,
    ApiLoginResult,
    ApiServe,
    ApiServeResult,
    ApiStop,
    MessageCounters,
    OrchestratorOk,
    OrchestratorStatus,
    OrchestratorStatusResult,
    OrchestratorStop,
)

if TYPE_CHECKING:
    from shoal.api.service import ApiService
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.outbox import Outbox
    from shoal.orchestrator.scheduler import Scheduler
    from shoal.orchestrator.supervisor import Supervisor
    from shoal.paths import Home


class Admin:
    handles = (
        OrchestratorStatus,
        OrchestratorStop,
        ActorSpawn,
        ActorRetire,
        ApiServe,
        ApiStop,
        ApiLogin,
    )

    def __init__(
        self,
        home: Home,
        outbox: Outbox,
        supervisor: Supervisor,
        scheduler: Scheduler,
        api: ApiService,
        counters: Callable[[], MessageCounters],
        started_at: float,
    ) -> None:
        self.home = home
        self.outbox = outbox
        self.supervisor = supervisor
        self.scheduler = scheduler
        self.api = api
        self.counters = counters
        """The broker's message counters as they are now."""
        self.started_at = started_at
        self.env_fingerprint = model_env_fingerprint()
        """Of the environment it started with (what a client compares with its own); hashed
        once: copying and hashing os.environ took an eighth of the GIL under status polls."""

    def keeps_alive(self) -> bool:
        """Whether the orchestrator must not exit when idle (it serves the HTTP API, or
        webhook retries are still to be made)."""
        return self.api.serving or self.api.webhooks.waiting() > 0

    def on_orchestrator_status(
        self, env: Envelope, payload: OrchestratorStatus
    ) -> OrchestratorStatusResult:
        return OrchestratorStatusResult(
            pid=os.getpid(),
            home=str(self.home.root),
            started_at=self.started_at,
            actors=self.supervisor.snapshot(),
            messages=self.counters(),
            running_tasks=len(self.scheduler.tasks),
            env_fingerprint=self.env_fingerprint,
            problems=self.api.problems(),
        )

    def on_orchestrator_stop(self, env: Envelope, payload: OrchestratorStop) -> OrchestratorOk:
        self.outbox.stop()
        return OrchestratorOk(detail="stopping")

    def on_actor_spawn(self, env: Envelope, payload: ActorSpawn) -> ActorSpawnResult:
        names = self.supervisor.spawn(payload.role, payload.count, payload.name, payload.launcher)
        return ActorSpawnResult(names=names)

    def on_actor_retire(self, env: Envelope, payload: ActorRetire) -> OrchestratorOk:
        self.supervisor.retire(payload.name)
        return OrchestratorOk(detail=f"retiring {payload.name}")

    def on_api_serve(self, env: Envelope, payload: ApiServe) -> ApiServeResult:
        return self.api.serve()

    def on_api_login(self, env: Envelope, payload: ApiLogin) -> ApiLoginResult:
        return self.api.login(payload.code_sha256)

    def on_api_stop(self, env: Envelope, payload: ApiStop) -> OrchestratorOk:
        self.api.stop()
        return OrchestratorOk(detail="stopped serving the HTTP API")
