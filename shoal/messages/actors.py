"""Messages of the runtime: errors, the echo role, the orchestrator's control requests,
actors, the HTTP API."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shoal.messages.base import Model, Payload, message

__all__ = [
    "ActorExited",
    "ActorRetire",
    "ActorSpawn",
    "ActorSpawnResult",
    "ActorStarted",
    "ActorStatus",
    "ApiLogin",
    "ApiLoginResult",
    "ApiServe",
    "ApiServeResult",
    "ApiStop",
    "EchoReply",
    "EchoRequest",
    "ErrorReply",
    "FlowEdge",
    "FlowRecent",
    "FlowRecentResult",
    "FlowSummary",
    "MessageCounters",
    "OrchestratorOk",
    "OrchestratorStatus",
    "OrchestratorStatusResult",
    "OrchestratorStop",
]


@message("mailbox.error")
class ErrorReply(Payload, kw_only=True):
    """A request could not be handled; sent to the requester in place of a reply."""

    code: Literal[
        "no_handler", "bad_payload", "handler_failed", "undeliverable", "refused", "disk_full"
    ]
    message: str


@message("echo.request")
class EchoRequest(Payload, kw_only=True):
    text: str = ""
    seq: int | None = None
    delay: Annotated[float, Meta(ge=0, le=1.0)] = 0.0
    """Seconds the echo actor waits before answering (to simulate work in tests)."""


@message("echo.reply")
class EchoReply(Payload, kw_only=True):
    text: str = ""
    seq: int | None = None
    handled_by: str


@message("orchestrator.status", polled=True)
class OrchestratorStatus(Payload, kw_only=True):
    pass


class ActorStatus(Model, kw_only=True):
    name: str
    role: str
    pid: int | None
    state: str
    restarts: int
    last_heartbeat: str | None
    launcher: str


class MessageCounters(Model, kw_only=True):
    routed: int
    recorded: int
    dropped: int
    undeliverable: int = 0
    redelivered: int = 0
    pending: int = 0
    unrecorded: int = 0
    """Polled reads (a client's status, query, team status) and their answers: routed only."""


@message("orchestrator.status.result", polled=True)
class OrchestratorStatusResult(Payload, kw_only=True):
    pid: int
    home: str
    started_at: float
    actors: list[ActorStatus]
    messages: MessageCounters
    running_tasks: int = 0
    env_fingerprint: str = ""
    """Hash of the model variables the actors were started with (never the values)."""
    problems: list[str] = msgspec.field(default_factory=list)
    """Conditions a person should hear of, one line each (the HTTP API not served, out of
    file descriptors, refusing connections)."""


@message("orchestrator.stop")
class OrchestratorStop(Payload, kw_only=True):
    pass


@message("orchestrator.ok")
class OrchestratorOk(Payload, kw_only=True):
    detail: str = ""


@message("actor.spawn")
class ActorSpawn(Payload, kw_only=True):
    role: str
    count: Annotated[int, Meta(ge=1, le=64)] = 1
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    launcher: str | None = None
    """local or ray; None: the orchestrator's backend setting."""


@message("actor.spawn.result")
class ActorSpawnResult(Payload, kw_only=True):
    names: list[str]


@message("actor.retire")
class ActorRetire(Payload, kw_only=True):
    name: str


@message("actor.started")
class ActorStarted(Payload, kw_only=True):
    name: str
    role: str
    pid: int | None
    restarts: int


@message("actor.exited")
class ActorExited(Payload, kw_only=True):
    name: str
    role: str
    pid: int | None
    reason: str


@message("api.serve")
class ApiServe(Payload, kw_only=True):
    """Serve the HTTP API as ``$SHOAL_HOME/api.json`` says (written by ``shoal serve``).

    The settings travel in that owner-only file, not here: every message is
    recorded, and the token and webhook secrets must never be.
    """


@message("api.serve.result")
class ApiServeResult(Payload, kw_only=True):
    url: str
    """Base URL of the API, e.g. ``http://127.0.0.1:9742/api/v1``."""
    auth: bool
    """Whether every endpoint but /health needs the bearer token."""
    webhooks: int = 0
    """Webhooks that receive events (config.toml's and ``shoal serve --webhook``'s)."""


@message("api.login")
class ApiLogin(Payload, kw_only=True):
    """Accept a one-time login code for the dashboard (``shoal dashboard``). Only the code's
    SHA-256 travels: every message is recorded, and the code opens a session."""

    code_sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]


@message("api.login.result")
class ApiLoginResult(Payload, kw_only=True):
    url: str
    """Where the API is served, without ``/api/v1``: the login URL is ``<url>/login?code=``."""


@message("api.stop")
class ApiStop(Payload, kw_only=True):
    """Stop serving the HTTP API (the orchestrator keeps running)."""


class FlowEdge(Model, kw_only=True):
    """Messages of one kind from one sender to one recipient, counted by the broker.

    A client's name (``client-PID-XXXXXX``) is shown as its prefix (``client``), an
    actor's request connection (``planner-1.ask-XXXXXX``) as the actor: those names are
    new every time, and the flow is between parties.
    """

    sender: str
    recipient: str
    """The actor the broker gave it to (for work sent to a role: the actor it picked),
    ``orchestrator``, or ``*`` for an event published on the bus."""
    kind: str
    count: Annotated[int, Meta(ge=1)]
    last_at: float | None = None
    """In a recent flow: the Unix time of the last second it was counted in."""


@message("flow.summary")
class FlowSummary(Payload, kw_only=True):
    """Published by the broker at most once a second while messages flow: what it routed
    since the last summary (about the last second). Derived counts, so not recorded (the
    messages themselves are)."""

    at: float
    """Unix time of the summary."""
    edges: list[FlowEdge]
    other: int = 0
    """Messages on edges left out (more distinct edges than a summary carries)."""


@message("flow.recent", polled=True)
class FlowRecent(Payload, kw_only=True):
    """The flow of the last minutes, from the broker's counts (``GET /api/v1/flow``)."""

    minutes: Annotated[int, Meta(ge=1, le=10)] = 10


@message("flow.recent.result", polled=True)
class FlowRecentResult(Payload, kw_only=True):
    since: float
    """Unix time the counts start at (at most ``minutes`` ago; later after a restart)."""
    edges: list[FlowEdge]
    """Most messages first."""
