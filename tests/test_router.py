"""The orchestrator's router: each kind to the one service that lists it, checked at start.

The first tests build a Router over small services of their own (the router is the real
one; what it routes to is the test's); the last asks a running orchestrator.
"""

from __future__ import annotations

from typing import Any

import pytest

from shoal.mailbox.envelope import ORCHESTRATOR, Envelope
from shoal.mailbox.errors import RemoteError
from shoal.messages.actors import (
    ActorSpawn,
    EchoRequest,
    ErrorReply,
    OrchestratorOk,
    OrchestratorStatus,
)
from shoal.messages.base import Payload
from shoal.messages.tasks import TaskCancel
from shoal.orchestrator.router import Router
from shoal.paths import Home

pytestmark = pytest.mark.timeout(60)


class Posted:
    """What the router sends, as the outbox would take it."""

    def __init__(self) -> None:
        self.sent: list[tuple[Payload, str, str | None]] = []

    def __call__(
        self,
        payload: Payload,
        recipient: str,
        *,
        reply_to: str | None = None,
        task_id: str | None = None,
    ) -> Envelope:
        self.sent.append((payload, recipient, reply_to))
        return Envelope.of(payload, sender=ORCHESTRATOR, recipient=recipient, reply_to=reply_to)


class Tasks:
    handles = (TaskCancel,)

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def on_task_cancel(self, env: Envelope, payload: TaskCancel) -> OrchestratorOk:
        if payload.task_id == "unknown":
            raise LookupError("no running task unknown")
        self.cancelled.append(payload.task_id)
        return OrchestratorOk(detail="cancelling")


class AlsoTasks:
    handles = (TaskCancel,)

    def on_task_cancel(self, env: Envelope, payload: TaskCancel) -> None:
        return None


class Listless:
    handles = (OrchestratorStatus,)


class Hidden:
    handles = ()

    def on_actor_spawn(self, env: Envelope, payload: ActorSpawn) -> None:
        return None


def request(payload: Payload, **fields: Any) -> Envelope:
    return Envelope.of(payload, sender="client-1", recipient=ORCHESTRATOR, **fields)


def test_a_kind_two_services_list_stops_the_start() -> None:
    with pytest.raises(ValueError, match=r"task\.cancel is handled by both Tasks and AlsoTasks"):
        Router([Tasks(), AlsoTasks()], Posted())


def test_a_listed_kind_without_its_handler_and_a_handler_not_listed_stop_the_start() -> None:
    with pytest.raises(ValueError, match=r"Listless lists orchestrator\.status but has no"):
        Router([Listless()], Posted())
    with pytest.raises(ValueError, match="Hidden has handlers for kinds it does not list"):
        Router([Hidden()], Posted())


def test_a_message_goes_to_its_service_and_the_answer_to_its_sender() -> None:
    tasks, posted = Tasks(), Posted()
    router = Router([tasks], posted)
    env = request(TaskCancel(task_id="T1"))
    router.handle(env)
    assert tasks.cancelled == ["T1"]
    assert posted.sent == [(OrchestratorOk(detail="cancelling"), "client-1", env.id)]


def test_what_no_service_answers_is_an_error_reply_and_replies_are_never_answered() -> None:
    posted = Posted()
    router = Router([Tasks()], posted)
    router.handle(request(TaskCancel(task_id="unknown")))
    router.handle(request(EchoRequest(seq=1)))
    bad = Envelope(kind="task.cancel", sender="client-1", recipient=ORCHESTRATOR, payload={})
    router.handle(bad)
    codes = [p.code for p, _, _ in posted.sent if isinstance(p, ErrorReply)]
    assert codes == ["refused", "no_handler", "bad_payload"]
    assert posted.sent[0][0].message == "no running task unknown"  # type: ignore[attr-defined]
    # A reply or an error nobody asked for is dropped, never answered with an error.
    router.handle(request(EchoRequest(seq=2), reply_to="01XYZ"))
    router.handle(request(ErrorReply(code="x", message="y")))
    assert len(posted.sent) == 3


def test_the_running_orchestrator_routes_by_kind(orchestrator: Home) -> None:
    from shoal.client import Client

    client = Client(orchestrator)
    with pytest.raises(RemoteError) as nobody:
        client.request(EchoRequest(seq=1))
    assert nobody.value.code == "no_handler"
    with pytest.raises(RemoteError) as not_running:
        client.request(TaskCancel(task_id="T-none"))
    assert (not_running.value.code, not_running.value.message) == (
        "refused",
        "no running task T-none",
    )
    with pytest.raises(RemoteError) as no_role:
        client.request(ActorSpawn(role="no-such-role"))
    assert no_role.value.code == "refused"
    assert client.status().pid > 0  # still routing after three refusals
