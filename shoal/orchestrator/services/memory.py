"""Learnings and skills: what the learner remembers, what a task is reminded of.

Every request runs on a worker thread: embedding and similarity search take time.
``context.request`` recalls the learnings like a task's description, marks them used,
and picks the skills for it (noting which ones the task was shown, so its score can
be credited to them when it ends). The embedder is made on first use, and so is the
in-memory copy of the learnings' vectors (``shoal.memory.index``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.messages.actors import OrchestratorOk
from shoal.messages.memory import (
    ContextRequest,
    ContextResult,
    MemoryForget,
    MemoryImport,
    MemoryImportResult,
    MemoryRemember,
    MemoryRememberResult,
    MemorySearch,
    Recalled,
)
from shoal.store import skills as skill_rows

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.services.workers import Workers
    from shoal.paths import Home

log = logging.getLogger(__name__)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Memory:
    handles = (ContextRequest, MemoryRemember, MemorySearch, MemoryForget, MemoryImport)

    def __init__(self, home: Home, workers: Workers) -> None:
        self.home = home
        self.workers = workers
        self._embedder_instance: Any = None
        self._index: Any = None  # shoal.memory.index.VectorIndex
        self._index_lock = threading.Lock()

    def on_context_request(self, env: Envelope, payload: ContextRequest) -> None:
        self.workers.run(env, lambda cur: self._context(cur, env, payload))

    def on_memory_remember(self, env: Envelope, payload: MemoryRemember) -> None:
        self.workers.run(env, lambda cur: self._remember(cur, payload))

    def on_memory_search(self, env: Envelope, payload: MemorySearch) -> None:
        from shoal.memory.store import search_rows

        self.workers.run(
            env, lambda cur: search_rows(cur, self._embedder(), payload, self._vector_index())
        )

    def on_memory_forget(self, env: Envelope, payload: MemoryForget) -> None:
        self.workers.run(env, lambda cur: self._forget(cur, payload))

    def on_memory_import(self, env: Envelope, payload: MemoryImport) -> None:
        self.workers.run(env, lambda cur: self._restore(cur, payload), serial=True)

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

        catalog = discover_skills(self.home.root / "skills", Path(payload.cwd))
        skills = select_skills(
            payload.text,
            catalog,
            effectiveness=skill_rows.effectiveness(cur),
            embed=embedder.embed,
        )
        if env.task_id:
            skill_rows.shown(cur, env.task_id, [skill.name for skill in skills])
        return [s.name for s in skills], prompt_block(skills) if skills else ""

    def _remember(self, cur: Any, payload: MemoryRemember) -> MemoryRememberResult:
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

    def _forget(self, cur: Any, payload: MemoryForget) -> OrchestratorOk:
        from shoal.memory import store

        if not store.forget(cur, payload.id):
            raise LookupError(f"no learning {payload.id!r} (or the prefix is not unique)")
        return OrchestratorOk(detail=f"forgot {payload.id}")

    def _restore(self, cur: Any, payload: MemoryImport) -> MemoryImportResult:
        """Exported learnings, embedded again by this home's embedder (``shoal import``)."""
        from shoal.memory import store

        embedder = self._embedder()
        vectors = embedder.embed([item.content for item in payload.learnings])
        added = store.restore(cur, payload.learnings, vectors, embedder.name)
        return MemoryImportResult(imported=added, skipped=len(payload.learnings) - added)

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
