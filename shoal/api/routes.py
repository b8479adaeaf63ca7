"""The endpoints of /api/v1: one table (``ROUTES``) and what each does (``Endpoints``).

``shoal.api.app`` makes a FastAPI route of each entry (its path parameters, ``body``
and ``query`` models, answer model, status and error codes), so the table both
dispatches requests and, through FastAPI, generates the OpenAPI document.

Every endpoint goes through the orchestrator's existing paths on the API's
mailbox connection: tasks are submitted and cancelled as ``shoal run`` does
(``task.submit``, ``task.cancel`` to the scheduler), and everything read comes
from the same named store queries as ``shoal tasks`` and ``shoal show``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from shoal import __version__
from shoal.api.coalesce import Coalesced
from shoal.api.models import (
    ApiView,
    BatchDetail,
    BatchList,
    BatchListQuery,
    BatchSummary,
    BatchUnitView,
    CancelAccepted,
    CostPoint,
    CostRow,
    CostSeries,
    CostSeriesQuery,
    CostView,
    EventsQuery,
    FindingView,
    FlowQuery,
    FlowView,
    Health,
    IterationView,
    LearningList,
    LearningsQuery,
    LearningView,
    MemberTranscript,
    OrchestratorView,
    ProposalDecided,
    ProposalList,
    ProposalView,
    StatusView,
    SteerCreate,
    SteerSent,
    TaskCreate,
    TaskCreated,
    TaskDetail,
    TaskDiff,
    TaskList,
    TaskListQuery,
    TaskSummary,
    TeamList,
    TeamView,
    row_dicts,
)
from shoal.mailbox.envelope import ROLE_PREFIX
from shoal.mailbox.errors import RemoteError
from shoal.messages.actors import OrchestratorStatus, OrchestratorStatusResult
from shoal.messages.base import to_dict
from shoal.messages.tasks import TaskSubmitResult
from shoal.messages.teams import TeamInfo, TeamMemberStatus, TeamStatus, TeamStatusResult

if TYPE_CHECKING:
    from shoal.client import Client
    from shoal.paths import Home

PREFIX = "/api/v1"
_TASK_ID = re.compile(r"^[0-9A-Za-z]{4,64}$")
_TEAM = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_DIFF = 1 << 20
"""Characters of a diff sent at most (a task that rewrote a vendored tree is not a page)."""


class ApiError(Exception):
    """An answer other than success: HTTP status, error code and a one-line message."""

    def __init__(
        self, status: int, code: str, message: str, allow: str = "", retry_after: int = 0
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.allow = allow
        """For a 405: the methods the path does take."""
        self.retry_after = retry_after
        """For a 503: seconds after which to try again (0: no Retry-After)."""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    """Below /api/v1, with ``{name}`` parameters."""
    handler: str
    """Name of the Endpoints method; it gets the path parameters (as sent: percent-encoded,
    so a name with a ``/`` in it still reaches the handler, which unquotes), ``body`` and
    ``query``."""
    summary: str
    response: type[BaseModel] | None
    """None: a JSON object that is not a model (the OpenAPI document itself)."""
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    auth: bool = True
    errors: tuple[int, ...] = ()
    stream: bool = False
    """Server-Sent Events, served on the event loop (``shoal.api.events``), not by a handler."""


ROUTES: list[Route] = [
    Route("GET", "/health", "health", "Liveness; never needs the token", Health, auth=False),
    Route("GET", "/openapi.json", "openapi", "This API as an OpenAPI 3.1 document", None),
    Route(
        "POST",
        "/tasks",
        "create_task",
        "Run a task (plan, execute, evaluate, refine), as `shoal run` does",
        TaskCreated,
        status=202,
        body=TaskCreate,
        errors=(400, 422, 507),
    ),
    Route(
        "GET", "/tasks", "list_tasks", "Recent tasks, newest first", TaskList, query=TaskListQuery
    ),
    Route(
        "GET",
        "/tasks/{task_id}",
        "get_task",
        "One task: plan, iterations, scores, checks, findings (id or a unique prefix)",
        TaskDetail,
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/tasks/{task_id}/diff",
        "task_diff",
        "The diff of a task's best iteration (while it runs: its latest) against the work "
        "tree before it",
        TaskDiff,
        errors=(400, 404),
    ),
    Route(
        "POST",
        "/tasks/{task_id}/cancel",
        "cancel_task",
        "Cancel a running task: it stops and is recorded as cancelled",
        CancelAccepted,
        status=202,
        errors=(404, 409),
    ),
    Route(
        "GET", "/status", "status", "The orchestrator, its actors, teams, running tasks", StatusView
    ),
    Route(
        "GET",
        "/events",
        "events",
        "The orchestrator's events as they happen (Server-Sent Events), optionally one "
        "task's or one team's",
        None,
        query=EventsQuery,
        errors=(422,),
        stream=True,
    ),
    Route("GET", "/teams", "list_teams", "The teams that are up and their members", TeamList),
    Route(
        "GET",
        "/teams/{team}/members/{member}/transcript",
        "member_transcript",
        "A member's recent transcript as text, as its pane shows it (headless members too)",
        MemberTranscript,
        errors=(404,),
    ),
    Route(
        "POST",
        "/teams/{team}/members/{member}/steer",
        "steer_member",
        "Send a member a steering line, as typed into its pane: it reads it on its next turn",
        SteerSent,
        status=202,
        body=SteerCreate,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/learnings",
        "list_learnings",
        "What shoal learned from past tasks, most recently used first (`shoal memory list`)",
        LearningList,
        query=LearningsQuery,
    ),
    Route(
        "GET",
        "/skills/proposed",
        "list_proposals",
        "Skills the pattern-miner proposed, waiting for a decision (`shoal learn list`)",
        ProposalList,
    ),
    Route(
        "POST",
        "/skills/proposed/{name}/approve",
        "approve_proposal",
        "Install a proposed skill for every later task, as `shoal learn approve` does",
        ProposalDecided,
        errors=(404, 409),
    ),
    Route(
        "POST",
        "/skills/proposed/{name}/dismiss",
        "dismiss_proposal",
        "Drop a proposed skill; it is never proposed again (`shoal learn dismiss`)",
        ProposalDecided,
        errors=(404, 409),
    ),
    Route(
        "GET", "/cost", "cost", "Tokens and cost of every model call, per role and model", CostView
    ),
    Route(
        "GET",
        "/flow",
        "message_flow",
        "Messages routed between actors in the last minutes, per sender, recipient and kind",
        FlowView,
        query=FlowQuery,
    ),
    Route(
        "GET",
        "/batches",
        "list_batches",
        "Batch refactors (`shoal batch`), newest first, with how many units ended how",
        BatchList,
        query=BatchListQuery,
    ),
    Route(
        "GET",
        "/batches/{batch_id}",
        "get_batch",
        "One batch and its units with their status (id or a unique prefix)",
        BatchDetail,
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/cost/series",
        "cost_series",
        "Cost and tokens of model calls per time bucket (minute, hour, day) and role or model",
        CostSeries,
        query=CostSeriesQuery,
    ),
]


class Endpoints:
    """What each route does; runs on the HTTP server's request threads."""

    def __init__(
        self,
        home: Home,
        client: Client,
        api_view: Callable[[], ApiView],
        document: Callable[[], Any],
    ) -> None:
        self.home = home
        self.client = client
        self._api_view = api_view
        self._document = document
        self._status = Coalesced(self._ask_status)

    # --- helpers -------------------------------------------------------------

    def _ask(self, payload: Any, timeout: float = 15.0) -> Any:
        return self.client.request(payload, timeout)

    def _rows(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        reply = self.client.query(name, params, timeout=15.0)
        return row_dicts(reply.columns, reply.rows)

    def _find(self, task_id: str) -> dict[str, Any] | None:
        if not _TASK_ID.match(task_id):
            return None
        found = self._rows("task.get", {"task_id": task_id})
        if len(found) > 1:
            raise ApiError(400, "bad_request", f"{task_id!r} matches more than one task")
        return found[0] if found else None

    # --- endpoints -------------------------------------------------------------

    def health(self) -> Health:
        return Health(version=__version__, pid=os.getpid())

    def openapi(self) -> Any:
        return self._document()

    def create_task(self, body: TaskCreate) -> TaskCreated:
        from shoal.settings import SettingsError
        from shoal.submission import SubmitError, submission

        flags = body.flags()
        try:
            made = submission(
                self.home,
                body.description,
                Path(body.cwd),
                flags,
                team=body.team,
                no_model="give model, or set SHOAL_MODEL in the orchestrator's environment or "
                "[shoal] model in config.toml",
            )
        except (SubmitError, SettingsError) as exc:
            raise ApiError(422, "invalid", str(exc)) from None
        try:
            accepted = self._ask(made.task, timeout=30.0)
        except RemoteError as exc:
            if exc.code == "disk_full":  # the request was fine; the orchestrator cannot record
                raise ApiError(507, "disk_full", exc.message) from None
            raise ApiError(422, "invalid", exc.message) from None
        assert isinstance(accepted, TaskSubmitResult)
        return TaskCreated(
            id=accepted.task_id,
            url=f"{PREFIX}/tasks/{accepted.task_id}",
            ignored=made.ignored,
            waiting_for=accepted.waiting_for,
        )

    def list_tasks(self, query: TaskListQuery) -> TaskList:
        rows = self._rows("tasks.recent", {"limit": query.limit, "kind": query.status})
        return TaskList(tasks=[TaskSummary.model_validate(r) for r in rows])

    def get_task(self, task_id: str) -> TaskDetail:
        task = self._find(task_id)
        if task is None:
            raise ApiError(404, "not_found", f"no task {task_id!r}")
        full_id = task["id"]
        iterations = self._rows("task.iterations", {"task_id": full_id})
        for it in iterations:
            it["dimensions"] = json.loads(it["dimensions"] or "{}")
            it["checks"] = json.loads(it["checks"] or "[]")
        return TaskDetail.model_validate(
            {
                **task,
                "plan": json.loads(task["plan"]) if task["plan"] else None,
                "files_changed": json.loads(task["files_changed"] or "[]"),
                "subtasks": json.loads(task["subtasks"] or "[]"),
                "cost_by_role": self._rows("task.costs", {"task_id": full_id}),
                "iterations_detail": [IterationView.model_validate(it) for it in iterations],
                "findings": [
                    FindingView.model_validate(f)
                    for f in self._rows("task.findings", {"task_id": full_id})
                ],
            }
        )

    def task_diff(self, task_id: str) -> TaskDiff:
        from shoal.workspace import snapshots
        from shoal.workspace.git import WorkspaceError

        task = self._find(task_id)
        if task is None:
            raise ApiError(404, "not_found", f"no task {task_id!r}")
        full_id = task["id"]
        made = [i for i in self._rows("task.iterations", {"task_id": full_id}) if i["snapshot"]]
        best = [i for i in made if i["n"] == task["best_iteration"]]
        chosen = (best or made[-1:] or [None])[0]
        if chosen is None:
            return TaskDiff(id=full_id, iteration=None, best=False, diff="")
        base = self._rows("task.base", {"task_id": full_id})[0]["base"]
        try:
            text = snapshots.diff(task["cwd"], base, chosen["snapshot"])
        except WorkspaceError as exc:  # the repository moved, or its snapshots were removed
            raise ApiError(404, "not_found", f"the diff is gone: {exc}") from None
        return TaskDiff(
            id=full_id,
            iteration=chosen["n"],
            best=bool(best),
            diff=text[:MAX_DIFF],
            truncated=len(text) > MAX_DIFF,
        )

    def cancel_task(self, task_id: str) -> CancelAccepted:
        task = self._find(task_id)
        if task is None:
            raise ApiError(404, "not_found", f"no task {task_id!r}")
        try:
            self.client.cancel(task["id"])
        except RemoteError:
            # The scheduler runs no such task: it ended (or ends right now).
            ended = self._find(task["id"]) or task
            raise ApiError(
                409, "conflict", f"task {task['id']} is not running (status {ended['status']})"
            ) from None
        return CancelAccepted(id=task["id"])

    def status(self) -> StatusView:
        return self._status()

    def _ask_status(self) -> StatusView:
        reply = self._ask(OrchestratorStatus())
        assert isinstance(reply, OrchestratorStatusResult)
        teams: dict[str, list[Any]] = {}
        for actor in reply.actors:
            if "@" in actor.role:
                teams.setdefault(actor.role.split("@", 1)[1], []).append(actor)
        # The store is asked only while the scheduler holds a task: an idle orchestrator
        # answers a dashboard's or a script's polling from memory (half of its CPU per call).
        running = (
            self._rows("tasks.recent", {"limit": 1000, "kind": "running"})
            if reply.running_tasks
            else []
        )
        return StatusView(
            orchestrator=OrchestratorView(
                pid=reply.pid,
                home=reply.home,
                started_at=reply.started_at,
                actors=[to_dict(a) for a in reply.actors],
                messages=to_dict(reply.messages),
            ),
            running=[TaskSummary.model_validate(r) for r in running],
            teams=[
                TeamView(name=n, members=[to_dict(a) for a in m]) for n, m in sorted(teams.items())
            ],
            api=self._api_view(),
        )

    def list_teams(self) -> TeamList:
        from shoal.api.teams import team_view

        reply = self._ask(TeamStatus())
        assert isinstance(reply, TeamStatusResult)
        return TeamList(teams=[team_view(t) for t in reply.teams])

    def _member(self, team: str, member: str) -> tuple[TeamInfo, TeamMemberStatus]:
        from urllib.parse import unquote

        from shoal.api.teams import find_member

        member = unquote(member)
        reply = None
        if _TEAM.match(team):
            try:
                reply = self._ask(TeamStatus(name=team))
            except RemoteError:
                reply = None  # no such team is up
        if not isinstance(reply, TeamStatusResult) or not reply.teams:
            raise ApiError(404, "not_found", f"no team named {team!r} is up")
        found = find_member(reply.teams[0], member)
        if found is None:
            known = ", ".join(m.name for m in reply.teams[0].members)
            raise ApiError(404, "not_found", f"team {team} has no member {member!r} ({known})")
        return reply.teams[0], found

    def member_transcript(self, team: str, member: str) -> MemberTranscript:
        from shoal.api.teams import MESSAGES, transcript

        info, found = self._member(team, member)
        params = {
            "team": info.name,
            "member": found.name,
            "role": ROLE_PREFIX + found.role,  # work is sent to the role
            "limit": MESSAGES,
            # This run's messages only: an earlier team of the same name is not this one,
            # and the scan stays as short as the team's life, not the database's.
            "since": info.started_at,
        }
        bodies = [r["body"] for r in self._rows("member.messages", params)]
        text, cut = transcript(found.name, bodies)
        return MemberTranscript(team=info.name, member=found.name, text=text, truncated=cut)

    def steer_member(self, team: str, member: str, body: SteerCreate) -> SteerSent:
        from shoal.api.teams import STEERABLE, steerable
        from shoal.messages.teams import TeamMessage

        info, found = self._member(team, member)
        if not steerable(found.role):
            raise ApiError(
                409,
                "conflict",
                f"{found.name} reads no steering lines; steer one of the team's "
                f"{' or '.join(STEERABLE)} members",
            )
        self.client.send(
            TeamMessage(text=body.text, sender="the dashboard", source="person"), to=found.name
        )
        return SteerSent(team=info.name, member=found.name)

    def cost(self) -> CostView:
        rows = [CostRow.model_validate(r) for r in self._rows("costs.summary", {})]
        return CostView(
            total_usd=sum(r.cost_usd for r in rows),
            total_tokens=sum(r.prompt_tokens + r.completion_tokens for r in rows),
            calls=sum(r.calls for r in rows),
            by_role=rows,
        )

    def list_learnings(self, query: LearningsQuery) -> LearningList:
        import datetime as dt

        from shoal.memory.store import decayed

        now = dt.datetime.now(dt.UTC)
        learnings = []
        for row in self._rows("memory.list", {"limit": query.limit}):
            score = decayed(row["confidence"], _moment(row["last_used_at"]), now)
            learnings.append(LearningView.model_validate({**row, "score": score}))
        return LearningList(learnings=learnings)

    def list_proposals(self) -> ProposalList:
        from shoal.skills.proposals import listed

        found = listed(self.home.root / "skills")
        return ProposalList(proposals=[ProposalView(name=n, description=d) for n, d in found])

    def approve_proposal(self, name: str) -> ProposalDecided:
        from shoal.skills.proposals import approve

        return self._decide(approve, name, "approved")

    def dismiss_proposal(self, name: str) -> ProposalDecided:
        from shoal.skills.proposals import dismiss

        return self._decide(dismiss, name, "dismissed")

    def _decide(
        self, decision: Callable[[Path, str], Path], name: str, done: str
    ) -> ProposalDecided:
        from urllib.parse import unquote

        from shoal.skills.proposals import ProposalError

        try:
            target = decision(self.home.root / "skills", unquote(name))
        except ProposalError as exc:
            raise ApiError(404 if exc.missing else 409, "not_found" if exc.missing else
                           "conflict", str(exc)) from None  # fmt: skip
        return ProposalDecided.model_validate({"name": target.name, "decision": done,
                                               "path": str(target)})  # fmt: skip

    def message_flow(self, query: FlowQuery) -> FlowView:
        from shoal.messages.actors import FlowRecent, FlowRecentResult

        reply = self._ask(FlowRecent(minutes=query.minutes))
        assert isinstance(reply, FlowRecentResult)
        return FlowView.model_validate(to_dict(reply))

    def list_batches(self, query: BatchListQuery) -> BatchList:
        rows = self._rows("batches.overview", {"limit": query.limit, "kind": query.status})
        return BatchList(batches=[BatchSummary.model_validate(r) for r in rows])

    def get_batch(self, batch_id: str) -> BatchDetail:
        found = self._rows("batch.get", {"batch_id": batch_id}) if _TASK_ID.match(batch_id) else []
        if len(found) > 1:
            raise ApiError(400, "bad_request", f"{batch_id!r} matches more than one batch")
        if not found:
            raise ApiError(404, "not_found", f"no batch {batch_id!r}")
        batch = found[0]
        started = {
            r["unit_id"]: r["attempt"]
            for r in self._rows("batch.started", {"batch_id": batch["id"]})
            if batch["status"] == "running"  # an interrupted batch's units wait for `resume`
        }
        units = []
        for u in self._rows("batch.units", {"batch_id": batch["id"]}):
            if u["status"] == "pending" and u["unit_id"] in started:
                u["status"], u["attempts"] = "running", started[u["unit_id"]]
            u["files_changed"] = json.loads(u["files_changed"] or "[]")
            units.append(BatchUnitView.model_validate(u))
        ended = [u for u in units if u.status not in ("pending", "running")]
        return BatchDetail.model_validate(
            {
                **batch,
                "applied": json.loads(batch["applied"] or "{}"),
                "finished": len(ended),
                "accepted": sum(u.status == "accepted" for u in ended),
                "not_accepted": sum(u.status != "accepted" for u in ended),
                "tokens": sum(u.tokens for u in units),
                "cost_usd": sum(u.cost_usd for u in units),
                "units_detail": units,
            }
        )

    def cost_series(self, query: CostSeriesQuery) -> CostSeries:
        import datetime as dt

        step = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1),
                "day": dt.timedelta(days=1)}[query.bucket]  # fmt: skip
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        start = dt.datetime.min + ((now - dt.datetime.min) // step) * step
        since = (start - (query.last - 1) * step).isoformat()
        params = {"bucket": query.bucket, "by": query.by, "since": since}
        points = [
            CostPoint.model_validate({**r, "t": _utc(r["t"])})
            for r in self._rows("costs.series", params)
        ]
        spent: dict[str, float] = {}
        for p in points:
            spent[p.key] = spent.get(p.key, 0.0) + p.cost_usd
        return CostSeries(
            bucket=query.bucket,
            by=query.by,
            since=_utc(since),
            keys=sorted(spent, key=lambda k: (-spent[k], k)),
            points=points,
            total_usd=sum(p.cost_usd for p in points),
            total_tokens=sum(p.tokens for p in points),
        )


def _utc(value: Any) -> str:
    """A UTC time as DuckDB gives it (naive) in ISO 8601 with its zone: ``...Z``."""
    return str(value).replace(" ", "T").removesuffix("Z") + "Z"


def _moment(value: Any) -> Any:
    """A TIMESTAMP column as it comes over the mailbox (text) as a datetime."""
    import datetime as dt

    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
