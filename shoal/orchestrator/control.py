"""Requests addressed to the orchestrator itself (recipient ``orchestrator``).

Handlers are named after the kind they answer, like actors' handlers. Quick
ones run on the broker loop; store queries run on a worker thread so a slow
query never stalls routing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.actors.registry import UnknownRole
from shoal.api.service import ApiService
from shoal.config import model_env_fingerprint
from shoal.mailbox.envelope import Envelope, UnknownKind
from shoal.messages.actors import (
    ActorRetire,
    ActorSpawn,
    ActorSpawnResult,
    ApiServe,
    ApiServeResult,
    ApiStop,
    ErrorReply,
    OrchestratorOk,
    OrchestratorStatus,
    OrchestratorStatusResult,
    OrchestratorStop,
)
from shoal.messages.base import InvalidMessage, Payload
from shoal.messages.batch import BatchEnd, BatchStart, BatchUnit
from shoal.messages.chat import SessionAppend, SessionClear, SessionOpen
from shoal.messages.memory import (
    ContextRequest,
    ContextResult,
    MemoryForget,
    MemoryRemember,
    MemoryRememberResult,
    MemorySearch,
    MineResult,
    PatternsRecord,
    Recalled,
)
from shoal.messages.store import (
    StoreExport,
    StoreExportResult,
    StoreQuery,
    StoreQueryResult,
    StoreSql,
    StoreSqlResult,
)
from shoal.messages.tasks import TaskCancel, TaskSubmit, TaskSubmitResult
from shoal.messages.teams import (
    TeamDown,
    TeamStatus,
    TeamTaskClaim,
    TeamTasksCreate,
    TeamTaskUpdate,
    TeamUp,
    TeamUpResult,
)
from shoal.orchestrator.members import TeamMembers
from shoal.orchestrator.scheduler import Scheduler
from shoal.store.queries import run_query

if TYPE_CHECKING:
    import duckdb

    from shoal.messages.memory import MemoryImport, MemoryImportResult
    from shoal.messages.store import StoreDump
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
        self.teams = TeamMembers(broker, supervisor, self.scheduler)
        self._embedder_instance: Any = None
        self._index: Any = None  # shoal.memory.index.VectorIndex
        self._index_lock = threading.Lock()
        # Team task lists change on one thread, in arrival order: claims are atomic.
        self._serial = ThreadPoolExecutor(1, thread_name_prefix="team-tasks")
        self.api = ApiService(broker.home, broker.recorder.write)

    def tick(self, now: float) -> None:
        self.scheduler.tick(now)

    def keeps_alive(self) -> bool:
        """Whether the orchestrator must not exit when idle (it serves the HTTP API, or
        webhook retries are still to be made)."""
        return self.api.serving or self.api.webhooks.waiting() > 0

    def handle(self, env: Envelope) -> None:
        if self.scheduler.owns(env.reply_to):
            self.scheduler.on_reply(env)  # an actor answering one of our task steps
            return
        handler = getattr(self, "on_" + env.kind.replace(".", "_"), None)
        if handler is None and (env.reply_to is not None or env.kind == ErrorReply.kind):
            log.warning("dropped unexpected %s from %s", env.kind, env.sender)
            return  # never answer an answer with an error (see actors/runtime.py)
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
        except (InvalidMessage, UnknownKind) as exc:
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

    def on_orchestrator_status(
        self, env: Envelope, payload: OrchestratorStatus
    ) -> OrchestratorStatusResult:
        return OrchestratorStatusResult(
            pid=os.getpid(),
            home=str(self.broker.home.root),
            started_at=self.broker.started_at,
            actors=self.supervisor.snapshot(),
            messages=self.broker.counters(),
            running_tasks=len(self.scheduler.tasks),
            env_fingerprint=model_env_fingerprint(),
            problems=self.api.problems(),
        )

    def on_orchestrator_stop(self, env: Envelope, payload: OrchestratorStop) -> OrchestratorOk:
        self.broker.stop()
        return OrchestratorOk(detail="stopping")

    def on_actor_spawn(self, env: Envelope, payload: ActorSpawn) -> ActorSpawnResult:
        names = self.supervisor.spawn(payload.role, payload.count, payload.name, payload.launcher)
        return ActorSpawnResult(names=names)

    def on_actor_retire(self, env: Envelope, payload: ActorRetire) -> OrchestratorOk:
        self.supervisor.retire(payload.name)
        return OrchestratorOk(detail=f"retiring {payload.name}")

    def on_task_submit(self, env: Envelope, payload: TaskSubmit) -> TaskSubmitResult:
        return self.scheduler.submit(env, payload)

    def on_task_cancel(self, env: Envelope, payload: TaskCancel) -> OrchestratorOk:
        if not self.scheduler.cancel(payload.task_id):
            raise LookupError(f"no running task {payload.task_id}")
        return OrchestratorOk(detail=f"cancelling {payload.task_id}")

    # --- the HTTP API (shoal serve) ---

    def on_api_serve(self, env: Envelope, payload: ApiServe) -> ApiServeResult:
        return self.api.serve()

    def on_api_stop(self, env: Envelope, payload: ApiStop) -> OrchestratorOk:
        self.api.stop()
        return OrchestratorOk(detail="stopped serving the HTTP API")

    # --- teams: members in tmux panes or headless ----------------------------------

    def on_team_up(self, env: Envelope, payload: TeamUp) -> TeamUpResult:
        return self.teams.up(payload)

    def on_team_down(self, env: Envelope, payload: TeamDown) -> OrchestratorOk:
        return self.teams.down(payload)

    def on_team_status(self, env: Envelope, payload: TeamStatus) -> None:
        seen = self.teams.seen(payload.name)  # here: the broker's and supervisor's state
        self._in_thread(env, lambda cur, _env, _p: self.teams.status(cur, seen), payload)

    # --- memory and skills (on worker threads: embedding and search take time) ---

    def on_context_request(self, env: Envelope, payload: ContextRequest) -> None:
        self._in_thread(env, self._context, payload)

    def on_memory_remember(self, env: Envelope, payload: MemoryRemember) -> None:
        self._in_thread(env, self._remember, payload)

    def on_memory_search(self, env: Envelope, payload: MemorySearch) -> None:
        def search(cur: Any, _env: Envelope, p: MemorySearch) -> StoreQueryResult:
            index = self._vector_index()
            return search_rows(cur, self._embedder(), p, index)

        self._in_thread(env, search, payload)

    def on_mine_result(self, env: Envelope, payload: MineResult) -> None:
        log.info(
            "mining found %d patterns; proposed %s",
            len(payload.patterns),
            payload.proposals or "nothing new",
        )

    def on_patterns_record(self, env: Envelope, payload: PatternsRecord) -> None:
        self._in_thread(env, self._patterns, payload)

    def _patterns(self, cur: Any, env: Envelope, payload: PatternsRecord) -> OrchestratorOk:
        for p in payload.patterns:
            cur.execute(
                "INSERT OR REPLACE INTO patterns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    p.id,
                    p.kind,
                    p.summary,
                    p.samples,
                    p.confidence,
                    json.dumps(p.task_ids),
                    p.proposal,
                    "proposed" if p.proposal else "new",
                    _utcnow(),
                ],
            )
        return OrchestratorOk(detail=f"{len(payload.patterns)} patterns")

    def on_memory_forget(self, env: Envelope, payload: MemoryForget) -> None:
        self._in_thread(env, self._forget, payload)

    def _in_thread(
        self, env: Envelope, work: Any, payload: Payload, *, serial: bool = False
    ) -> None:
        def run() -> None:
            cur = self._con.cursor()
            try:
                reply: Payload = work(cur, env, payload)
            except (LookupError, ValueError) as exc:
                reply = ErrorReply(code="refused", message=str(exc.args[0] if exc.args else exc))
            except Exception as exc:
                log.exception("%s failed", env.kind)
                reply = ErrorReply(code="handler_failed", message=f"{type(exc).__name__}: {exc}")
            finally:
                cur.close()
            self._reply(env, reply)

        if serial:
            self._serial.submit(run)
        else:
            threading.Thread(target=run, name=env.kind, daemon=True).start()

    def _context(self, cur: Any, env: Envelope, payload: ContextRequest) -> ContextResult:
        from shoal.memory import store

        now = _utcnow()
        embedder = self._embedder()
        # Hashed local vectors put unrelated text near 0.2-0.3: ask for more there.
        floor = 0.3 if embedder.name.startswith("local") else 0.2
        learnings = store.recall(
            cur,
            embedder.embed([payload.text])[0],
            now,
            min_similarity=floor,
            embedder=embedder.name,
            team=payload.team,
            index=self._vector_index(),
        )
        store.touch(cur, [item.id for item in learnings], now)
        try:
            skills, skills_text = self._skills(cur, env, payload, embedder)
        except Exception:  # a broken skill catalog must not cost the task its learnings
            log.exception("selecting skills failed")
            skills, skills_text = [], ""
        blocks = [store.format_for_prompt(learnings) if learnings else "", skills_text]
        return ContextResult(
            learnings=[
                Recalled(
                    id=item.id,
                    kind=item.kind,
                    content=item.content,
                    confidence=item.effective_confidence or item.confidence,
                )
                for item in learnings
            ],
            skills=skills,
            text="\n\n".join(b for b in blocks if b),
        )

    def _skills(
        self, cur: Any, env: Envelope, payload: ContextRequest, embedder: Any
    ) -> tuple[list[str], str]:
        from shoal.skills.catalog import discover_skills
        from shoal.skills.selection import prompt_block, select_skills

        catalog = discover_skills(self.broker.home.root / "skills", Path(payload.cwd))
        effectiveness = {
            r[0]: (r[1], r[2])
            for r in cur.execute(
                "SELECT skill, mean_score, samples FROM skill_effectiveness"
            ).fetchall()
        }
        skills = select_skills(
            payload.text, catalog, effectiveness=effectiveness, embed=embedder.embed
        )
        if env.task_id:
            for skill in skills:
                cur.execute(
                    "INSERT OR IGNORE INTO task_skills VALUES (?, ?)", [env.task_id, skill.name]
                )
        return [s.name for s in skills], prompt_block(skills) if skills else ""

    def _remember(self, cur: Any, env: Envelope, payload: MemoryRemember) -> MemoryRememberResult:
        from shoal.memory import store

        embedder = self._embedder()
        vectors = embedder.embed([item.content for item in payload.learnings])
        created = reinforced = 0
        for item, vector in zip(payload.learnings, vectors, strict=True):
            try:
                _, new = store.remember(
                    cur,
                    item.kind,
                    item.content,
                    item.confidence,
                    payload.source_task,
                    vector,
                    embedder.name,
                    _utcnow(),
                    team=payload.team,
                )
            except ValueError as exc:  # e.g. content with no words to embed
                log.warning("learning not stored: %s", exc)
                continue
            created, reinforced = created + new, reinforced + (not new)
        return MemoryRememberResult(created=created, reinforced=reinforced)

    def _forget(self, cur: Any, env: Envelope, payload: MemoryForget) -> OrchestratorOk:
        from shoal.memory import store

        if not store.forget(cur, payload.id):
            raise LookupError(f"no learning {payload.id!r} (or the prefix is not unique)")
        return OrchestratorOk(detail=f"forgot {payload.id}")

    def _vector_index(self) -> Any:
        """The in-memory copy of the learnings' vectors (filled by the first recall)."""
        from shoal.memory.index import VectorIndex
        from shoal.memory.store import DIM

        with self._index_lock:
            if self._index is None:
                self._index = VectorIndex(DIM)
            return self._index

    def _embedder(self) -> Any:
        if self._embedder_instance is None:
            from shoal.memory.embedder import embedder_from_env

            self._embedder_instance = embedder_from_env()
        return self._embedder_instance

    def on_team_tasks_create(self, env: Envelope, payload: TeamTasksCreate) -> None:
        from shoal.orchestrator import team_tasks

        self._in_thread(env, lambda cur, _e, p: team_tasks.create(cur, p), payload, serial=True)

    def on_team_task_update(self, env: Envelope, payload: TeamTaskUpdate) -> None:
        from shoal.orchestrator import team_tasks

        self._in_thread(env, lambda cur, _e, p: team_tasks.update(cur, p), payload, serial=True)

    def on_team_task_claim(self, env: Envelope, payload: TeamTaskClaim) -> None:
        from shoal.orchestrator import team_tasks

        self._in_thread(env, lambda cur, _e, p: team_tasks.claim(cur, p), payload, serial=True)

    def on_store_query(self, env: Envelope, payload: StoreQuery) -> None:
        def query(cur: Any, _env: Envelope, p: StoreQuery) -> StoreQueryResult:
            # What the orchestrator wrote before the question is in the answer.
            self.broker.recorder.barrier()
            return run_query(cur, p.name, p.params)

        self._in_thread(env, query, payload)

    # --- a user's own SQL (shoal sql): read-only, see store/usersql.py ---

    def on_store_sql(self, env: Envelope, payload: StoreSql) -> None:
        def sql(cur: Any, _env: Envelope, p: StoreSql) -> StoreSqlResult:
            from shoal.store import usersql

            self.broker.recorder.barrier()
            result = usersql.run(cur, p.sql, limit=p.limit, timeout=p.timeout)
            path = self.broker.home.run / "sql" / f"{env.id}.json"
            usersql.write_result(path, result)
            return StoreSqlResult(
                columns=result.columns,
                rows=len(result.rows),
                truncated=result.truncated,
                rows_file=str(path),
            )

        self._in_thread(env, sql, payload)

    def on_store_export(self, env: Envelope, payload: StoreExport) -> None:
        def export(cur: Any, _env: Envelope, p: StoreExport) -> StoreExportResult:
            from shoal.store import usersql

            self.broker.recorder.barrier()
            files = usersql.export(cur, Path(p.directory))
            return StoreExportResult(directory=p.directory, files=files)

        self._in_thread(env, export, payload)

    def on_store_dump(self, env: Envelope, payload: StoreDump) -> None:
        def dump(cur: Any, _env: Envelope, p: StoreDump) -> StoreExportResult:
            from shoal.store.dump import DumpError, dump

            self.broker.recorder.barrier()
            try:
                files = dump(cur, p.tables, Path(p.directory))
            except DumpError as exc:
                raise ValueError(str(exc)) from None
            return StoreExportResult(directory=p.directory, files=files)

        self._in_thread(env, dump, payload)

    def on_memory_import(self, env: Envelope, payload: MemoryImport) -> None:
        self._in_thread(env, self._restore, payload, serial=True)

    def _restore(self, cur: Any, env: Envelope, payload: MemoryImport) -> MemoryImportResult:
        """Exported learnings, embedded again by this home's embedder (``shoal import``)."""
        from shoal.memory import store
        from shoal.messages.memory import MemoryImportResult

        embedder = self._embedder()
        vectors = embedder.embed([item.content for item in payload.learnings])
        added = store.restore(cur, payload.learnings, vectors, embedder.name)
        return MemoryImportResult(imported=added, skipped=len(payload.learnings) - added)

    # --- chat sessions (rows written on worker threads' cursors; see store/sessions.py) ---

    def on_session_open(self, env: Envelope, payload: SessionOpen) -> None:
        from shoal.store import sessions as records

        if not self.supervisor.names_of("chat"):
            self.supervisor.spawn("chat")  # a chat needs its actor; one serves many sessions
        self._in_thread(env, lambda cur, _env, p: records.open_session(cur, p), payload)

    def on_session_append(self, env: Envelope, payload: SessionAppend) -> None:
        from shoal.store import sessions as records

        self._in_thread(env, lambda cur, _env, p: records.append(cur, p), payload)

    def on_session_clear(self, env: Envelope, payload: SessionClear) -> None:
        from shoal.store import sessions as records

        self._in_thread(env, lambda cur, _env, p: records.clear(cur, p), payload)

    # --- batch refactors (the driver sends its records; only we write them) -------

    def on_batch_start(self, env: Envelope, payload: BatchStart) -> None:
        self._in_thread(env, _batch_start, payload)

    def on_batch_unit(self, env: Envelope, payload: BatchUnit) -> None:
        self._in_thread(env, _batch_unit, payload)

    def on_batch_end(self, env: Envelope, payload: BatchEnd) -> None:
        self._in_thread(env, _batch_end, payload)


def _batch_start(cur: Any, env: Envelope, payload: BatchStart) -> OrchestratorOk:
    now = _utcnow()
    cur.execute("BEGIN")
    try:
        cur.execute(
            """INSERT INTO batches VALUES (?, ?, ?, 'running', ?, ?, NULL, ?, ?, NULL)
               ON CONFLICT (id) DO UPDATE SET status = 'running', backend = excluded.backend,
                  updated_at = excluded.updated_at, finished_at = NULL""",
            [
                payload.batch_id,
                payload.instruction,
                json.dumps(payload.spec),
                len(payload.units),
                payload.backend,
                now,
                now,
            ],
        ).fetchall()
        rows = [
            [payload.batch_id, u.unit_id, u.name, u.source, json.dumps(u.files)]
            for u in payload.units
        ]
        # Multi-row inserts: row-at-a-time executemany is slow in DuckDB (thousands of units).
        for i in range(0, len(rows), 500):
            chunk = rows[i : i + 500]
            cur.execute(
                """INSERT OR IGNORE INTO batch_units (batch_id, unit_id, name, source, files,
                       status, attempts, tokens, cost_usd) VALUES """
                + ", ".join(["(?, ?, ?, ?, ?, 'pending', 0, 0, 0)"] * len(chunk)),
                [v for row in chunk for v in row],
            ).fetchall()
        cur.execute("COMMIT")
    except Exception:
        cur.execute("ROLLBACK")
        raise
    return OrchestratorOk(detail=f"batch {payload.batch_id}: {len(payload.units)} units")


def _batch_unit(cur: Any, env: Envelope, payload: BatchUnit) -> OrchestratorOk:
    p = payload
    cur.execute(
        """UPDATE batch_units SET status = ?, attempts = ?, score = ?, verify_passed = ?,
               diff = ?, files_changed = ?, tokens = ?, cost_usd = ?, duration_s = ?,
               summary = ?, error = ?, worker = ?, finished_at = ?
           WHERE batch_id = ? AND unit_id = ?""",
        [
            p.status,
            p.attempts,
            p.score,
            p.verify_passed,
            p.diff,
            json.dumps(p.files_changed),
            p.tokens,
            p.cost_usd,
            p.duration_s,
            p.summary,
            p.error,
            p.worker,
            _utcnow(),
            p.batch_id,
            p.unit_id,
        ],
    ).fetchall()
    cur.execute(
        "UPDATE batches SET updated_at = ? WHERE id = ?", [_utcnow(), p.batch_id]
    ).fetchall()
    return OrchestratorOk(detail=f"{p.unit_id}: {p.status}")


def _batch_end(cur: Any, env: Envelope, payload: BatchEnd) -> OrchestratorOk:
    now = _utcnow()
    cur.execute(
        """UPDATE batches SET status = ?, applied = ?, updated_at = ?,
               finished_at = CASE WHEN ? = 'done' THEN ? ELSE NULL END
           WHERE id = ?""",
        [payload.status, json.dumps(payload.applied), now, payload.status, now, payload.batch_id],
    ).fetchall()
    return OrchestratorOk(detail=f"batch {payload.batch_id}: {payload.status}")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def search_rows(
    cur: Any, embedder: Any, payload: MemorySearch, index: Any = None
) -> StoreQueryResult:
    """Learnings like ``payload.text``, as rows (shared with the CLI's read-only path)."""
    from shoal.memory import store

    found = store.search(
        cur,
        embedder.embed([payload.text])[0],
        _utcnow(),
        k=payload.k,
        embedder=embedder.name,
        index=index,
    )
    columns = ["id", "kind", "content", "confidence", "score", "uses", "last_used_at"]
    rows = [
        [
            item.id,
            item.kind,
            item.content,
            item.effective_confidence,
            item.score,
            item.uses,
            item.last_used_at.isoformat(),
        ]
        for item in found
    ]
    return StoreQueryResult(columns=columns, rows=rows)
