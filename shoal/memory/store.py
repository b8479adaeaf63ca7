"""Learnings in DuckDB: remember (deduplicated), recall by similarity, decay, forget.

Every function takes the connection it works on: the orchestrator owns the only
writable connection to the file, and this module never opens it. None of them
opens a transaction either, so a caller can group several in its own. The SQL is
in :mod:`shoal.store.learnings`.

Similarity is ``array_cosine_similarity`` over the ``FLOAT[256]`` column, a full
scan: DuckDB's vector index (``vss``) needs an extension download. On a 2-core
machine a recall takes about 10 ms over 5,000 learnings and 60-85 ms over 100,000,
half of it decoding the stored floats (``scripts/bench_memory.py``). Only rows of
the same embedder are compared: two embedders' vectors live in different spaces.

Confidence decays with time since a learning was last used, by half every
``half_life_days``. The decay is computed whenever a learning is read, from
``last_used_at``; the stored confidence is the base and is only ever changed by
reinforcement, so reading never drifts it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from shoal.ids import new_id
from shoal.memory.embedder import DIM
from shoal.store import learnings as rows_of

if TYPE_CHECKING:
    import duckdb

    from shoal.memory.index import VectorIndex
    from shoal.messages.memory import MemorySearch
    from shoal.messages.store import StoreQueryResult

log = logging.getLogger(__name__)

KINDS = ("regression", "plateau", "blocker", "budget", "insight", "convention", "pitfall")
"""The kinds the learner writes; others are accepted (the column is free text)."""

INDEX_FROM = 2_000
"""Below this many vectors a full scan is as quick as the index's two queries."""
HALF_LIFE_DAYS = 30.0
"""Days after which an unused learning counts for half as much."""
REINFORCE_BONUS = 0.05
"""Added to the confidence of a learning each time a near-duplicate reinforces it."""


class Learning(BaseModel):
    """One learning, as stored; ranked reads also carry its similarity and score."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Sortable unique id; a unique prefix of it names it to :func:`forget`."""
    kind: str
    """What it is about: regression, plateau, blocker, budget, insight, convention, pitfall."""
    content: str
    """The learning itself, one or a few sentences."""
    confidence: float = Field(ge=0, le=1)
    """Base confidence as stored (before decay)."""
    uses: int
    """Times it was recalled into a prompt or reinforced by a near-duplicate."""
    source_task: str | None = None
    """The task it was learnt from, if any."""
    created_at: dt.datetime
    """When it was first remembered (UTC)."""
    last_used_at: dt.datetime
    """When it was last remembered, reinforced or recalled (UTC): decay counts from here."""
    embedder: str
    """Name of the embedder its vector came from."""
    forgotten: bool = False
    """Hidden from recall and search by :func:`forget`."""
    similarity: float | None = None
    """Cosine similarity to the query (ranked reads only)."""
    effective_confidence: float | None = None
    """Confidence decayed to the time of the read (ranked reads, or lists given ``now``)."""
    score: float | None = None
    """``similarity * effective_confidence``: what ranked reads are ordered by."""


class AmbiguousPrefix(ValueError):
    """An id prefix given to :func:`forget` names more than one learning."""


def utc_naive(moment: dt.datetime) -> dt.datetime:
    """``moment`` as a naive UTC datetime, the form every TIMESTAMP column holds."""
    if moment.tzinfo is not None:
        return moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def decayed(
    confidence: float,
    last_used_at: dt.datetime,
    now: dt.datetime,
    half_life_days: float = HALF_LIFE_DAYS,
) -> float:
    """``confidence * 0.5^(age_days / half_life_days)``, age counted from ``last_used_at``.

    Pure: the same inputs give the same value. An age below zero (a clock set
    back) counts as zero, so decay never raises a confidence.
    """
    if half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    age_s = (utc_naive(now) - utc_naive(last_used_at)).total_seconds()
    return confidence * 0.5 ** (max(0.0, age_s) / 86400.0 / half_life_days)


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), enough to budget a prompt section."""
    return math.ceil(len(text) / 4)


def _vector(embedding: Sequence[float]) -> list[float]:
    """``embedding`` as a unit vector of DIM floats, or a ValueError."""
    values = [float(x) for x in embedding]
    if len(values) != DIM:
        raise ValueError(f"embedding has {len(values)} values, expected {DIM}")
    norm = math.sqrt(math.fsum(x * x for x in values))
    if norm == 0.0 or not math.isfinite(norm):
        # Its cosine with anything is NaN, which DuckDB sorts above every number.
        raise ValueError("embedding is zero or not finite")
    return [x / norm for x in values]


def _learning(row: tuple[Any, ...]) -> Learning:
    return Learning(**dict(zip(rows_of.COLUMNS, row, strict=True)))


def remember(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    content: str,
    confidence: float,
    source_task: str | None,
    embedding: Sequence[float],
    embedder: str,
    now: dt.datetime,
    dedupe_threshold: float = 0.9,
    *,
    team: str | None = None,
) -> tuple[str, bool]:
    """Keep a learning, or reinforce the one it nearly duplicates: ``(id, created)``.

    A near-duplicate is a learning of the same embedder, not forgotten, whose
    cosine similarity is at least ``dedupe_threshold``. Reinforcing it counts a
    use, raises its confidence to ``min(1, max(old, new) + 0.05)`` and restarts
    its decay clock; its text stays as it was. ``team``: a team's own memory
    (recalled only for that team's tasks); duplicates are looked for within it.
    """
    _check(kind, content, confidence)
    vector = _vector(embedding)
    now = utc_naive(now)
    match = rows_of.near_duplicate(con, vector, embedder, dedupe_threshold, team)
    if match is not None:
        found, old = match
        rows_of.reinforce(con, found, min(1.0, max(old, confidence) + REINFORCE_BONUS), now)
        return found, False
    learning_id = new_id()
    rows_of.insert(
        con,
        learning_id,
        kind.strip(),
        content.strip(),
        confidence,
        source_task,
        now,
        vector,
        embedder,
        team,
    )
    return learning_id, True


def restore(
    con: duckdb.DuckDBPyConnection,
    items: Sequence[Any],
    vectors: Sequence[Sequence[float]],
    embedder: str,
) -> int:
    """Learnings from an export (``shoal import``), under their own ids, times, uses and
    confidence; one whose id is already here is left as it is. How many were added.

    ``items`` have the exported columns (``id``, ``kind``, ``content``, ``confidence``,
    ``uses``, ``source_task``, ``team``, ``created_at``, ``last_used_at``, ``forgotten``);
    ``vectors`` are their texts embedded again by ``embedder``, in order."""
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for item, vector in zip(items, vectors, strict=True):
        _check(item.kind, item.content, item.confidence)
        rows.append(
            {
                "id": item.id,
                "kind": item.kind.strip(),
                "content": item.content.strip(),
                "confidence": item.confidence,
                "uses": item.uses,
                "source_task": item.source_task,
                "created_at": utc_naive(item.created_at),
                "last_used_at": utc_naive(item.last_used_at),
                "embedding": _vector(vector),
                "embedder": embedder,
                "forgotten": item.forgotten,
                "team": item.team,
            }
        )
    if not rows:
        return 0
    return rows_of.insert_new(con, pa.Table.from_pylist(rows))


def _check(kind: str, content: str, confidence: float) -> None:
    if not kind.strip():
        raise ValueError("a learning needs a kind")
    if not content.strip():
        raise ValueError("a learning needs content")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence {confidence} is outside 0..1")


def _ranked(
    con: duckdb.DuckDBPyConnection,
    query_embedding: Sequence[float],
    now: dt.datetime,
    *,
    limit: int,
    min_similarity: float,
    embedder: str | None,
    half_life_days: float,
    team: str | None = None,
    index: VectorIndex | None = None,
) -> list[Learning]:
    """Up to ``limit`` learnings best first by similarity * decayed confidence.

    With an ``index`` (the orchestrator's in-memory vectors) only the nearest
    candidates are read from the file; the result is the same.
    """
    if len(query_embedding) == DIM and not any(query_embedding):
        return []  # a query with no words (zero vector) matches nothing
    vector = _vector(query_embedding)
    now = utc_naive(now)
    asked = _Asked(vector, now, half_life_days, min_similarity, limit, team, embedder)
    rows = None
    if index is not None:
        index.extend(con)  # rows appended since the last recall
    if index is not None and len(index) > INDEX_FROM:
        rows = _ranked_rows_indexed(con, index, asked)
        if rows is None:  # the copy no longer matches the file: it must be rebuilt
            log.warning("the in-memory vectors disagree with the learnings table; rescanning")
            index.reset()
    if rows is None:
        rows = rows_of.ranked(
            con,
            vector,
            now,
            half_life_days=half_life_days,
            min_similarity=min_similarity,
            limit=limit,
            team=team,
            embedder=embedder,
        )
    found = []
    for row in rows:
        learning = _learning(row[:-1])
        effective = decayed(learning.confidence, learning.last_used_at, now, half_life_days)
        found.append(
            learning.model_copy(
                update={
                    "similarity": row[-1],
                    "effective_confidence": effective,
                    "score": row[-1] * effective,
                }
            )
        )
    # SQL chose the candidates; the order follows the figures reported with them.
    found.sort(key=lambda item: (-(item.score or 0.0), item.id))
    return found


@dataclass(frozen=True)
class _Asked:
    """What a ranked read asks for."""

    vector: list[float]
    now: dt.datetime
    half_life_days: float
    min_similarity: float
    limit: int
    team: str | None
    embedder: str | None


def _ranked_rows_indexed(
    con: duckdb.DuckDBPyConnection, index: VectorIndex, asked: _Asked
) -> list[tuple[Any, ...]] | None:
    """``store.learnings.ranked``'s rows, scored in memory; None if the copy disagrees with
    the file."""
    import numpy as np

    meta = rows_of.scoring_columns(con, asked.team, asked.embedder)
    rowids = np.asarray(meta["rowid"], np.int64)
    if not len(rowids):
        return []
    if rowids.max() >= len(index):
        index.extend(con)
    sims = index.similarities(asked.vector)[rowids]
    age_us = np.maximum(0, _epoch_us(asked.now) - np.asarray(meta["used"], np.float64))
    decay = np.power(0.5, age_us / (86400e6 * asked.half_life_days))
    confidence = np.asarray(meta["confidence"], np.float64)
    scores = np.where(sims >= asked.min_similarity, sims * confidence * decay, -1.0)
    limit = min(asked.limit, len(rowids))
    top = np.argpartition(-scores, limit - 1)[:limit]
    top = top[scores[top] >= 0]
    if not len(top):
        return []
    # The similarities reported are DuckDB's own, computed for these few rows only.
    rows = rows_of.by_rowid(con, asked.vector, rowids[top].tolist())
    expected = dict(zip(rowids[top].tolist(), sims[top].tolist(), strict=True))
    if any(abs(expected.get(row[-1], 9.0) - row[-2]) > 1e-4 for row in rows):
        return None
    return [row[:-1] for row in rows]


def _epoch_us(moment: dt.datetime) -> int:
    """Microseconds since the epoch of a naive UTC datetime (as DuckDB's ``epoch_us``)."""
    return round((moment - dt.datetime(1970, 1, 1)).total_seconds() * 1e6)


def search(
    con: duckdb.DuckDBPyConnection,
    query_embedding: Sequence[float],
    now: dt.datetime,
    k: int = 10,
    *,
    min_similarity: float = 0.0,
    embedder: str | None = None,
    half_life_days: float = HALF_LIFE_DAYS,
    index: VectorIndex | None = None,
) -> list[Learning]:
    """The ``k`` best learnings for the query, best first, without marking them used.

    ``embedder``: only learnings embedded by it (pass the query's embedder's name
    whenever more than one may have written the table).
    """
    return _ranked(
        con,
        query_embedding,
        now,
        limit=k,
        min_similarity=min_similarity,
        embedder=embedder,
        half_life_days=half_life_days,
        index=index,
    )


def recall(
    con: duckdb.DuckDBPyConnection,
    query_embedding: Sequence[float],
    now: dt.datetime,
    *,
    k: int = 5,
    min_similarity: float = 0.2,
    token_budget: int = 600,
    embedder: str | None = None,
    half_life_days: float = HALF_LIFE_DAYS,
    team: str | None = None,
    index: VectorIndex | None = None,
) -> list[Learning]:
    """Up to ``k`` learnings for a prompt, best first, within ``token_budget`` tokens.

    Candidates below ``min_similarity`` are dropped. Going down the ranking, a
    learning whose content does not fit what is left of the budget is skipped
    (a shorter one further down may still fit). Nothing is marked used: call
    :func:`touch` with the ids that went into the prompt.
    """
    if k <= 0 or token_budget <= 0:
        return []
    # More candidates than k, for those skipped by the budget.
    candidates = _ranked(
        con,
        query_embedding,
        now,
        limit=max(4 * k, k + 16),
        min_similarity=min_similarity,
        embedder=embedder,
        half_life_days=half_life_days,
        team=team,
        index=index,
    )
    chosen: list[Learning] = []
    left = token_budget
    for learning in candidates:
        cost = estimate_tokens(learning.content)
        if cost <= left:
            chosen.append(learning)
            left -= cost
            if len(chosen) == k:
                break
    return chosen


def touch(con: duckdb.DuckDBPyConnection, ids: Sequence[str], now: dt.datetime) -> None:
    """Mark learnings used at ``now``: one more use, and their decay clock restarts."""
    if not ids:
        return
    rows_of.touch(con, list(ids), utc_naive(now))


def list_learnings(
    con: duckdb.DuckDBPyConnection,
    limit: int = 50,
    *,
    include_forgotten: bool = False,
    now: dt.datetime | None = None,
    half_life_days: float = HALF_LIFE_DAYS,
) -> list[Learning]:
    """The newest learnings first; with ``now``, each with its decayed confidence."""
    rows = rows_of.newest(con, limit, include_forgotten=include_forgotten)
    found = [_learning(row) for row in rows]
    if now is None:
        return found
    return [
        item.model_copy(
            update={
                "effective_confidence": decayed(
                    item.confidence, item.last_used_at, now, half_life_days
                )
            }
        )
        for item in found
    ]


def forget(con: duckdb.DuckDBPyConnection, id_or_prefix: str) -> bool:
    """Hide the learning with this id, or the only one whose id starts with it.

    False if no learning (not already forgotten) matches; :class:`AmbiguousPrefix`
    if several do, so that a short prefix never hides more than was meant.
    """
    prefix = id_or_prefix.strip()
    if not prefix:
        raise ValueError("give an id or an id prefix")
    ids = rows_of.live_ids_from(con, prefix, 6)
    if not ids:
        return False
    exact = [i for i in ids if i == prefix]
    if len(ids) > 1 and not exact:
        shown = ", ".join(ids[:5])
        more = ", …" if len(ids) > 5 else ""
        raise AmbiguousPrefix(f"{prefix!r} matches several learnings: {shown}{more}")
    rows_of.hide(con, exact[0] if exact else ids[0])
    return True


_HEADER = "Background from past runs (may not apply; verify before relying on it):"


def format_for_prompt(learnings: Sequence[Learning]) -> str:
    """A prompt section with one bullet per learning; "" when there are none."""
    if not learnings:
        return ""
    lines = [_HEADER]
    for item in learnings:
        confidence = (
            item.effective_confidence if item.effective_confidence is not None else item.confidence
        )
        # One line per bullet: a newline in the content would break the list.
        text = " ".join(item.content.split())
        lines.append(f"- [{item.kind}, confidence {confidence:.2f}] {text}")
    return "\n".join(lines)


def search_rows(
    con: duckdb.DuckDBPyConnection,
    embedder: Any,
    payload: MemorySearch,
    index: VectorIndex | None = None,
) -> StoreQueryResult:
    """Learnings like ``payload.text``, as rows (``memory.search``, and ``shoal memory
    search`` on the file when no orchestrator runs)."""
    from shoal.messages.store import StoreQueryResult

    found = search(
        con,
        embedder.embed([payload.text])[0],
        dt.datetime.now(dt.UTC).replace(tzinfo=None),
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
