"""Learnings (``learnings``): the statements behind ``shoal.memory``'s remember, recall,
decay, forget and import, and the vectors its in-memory index copies.

Similarity is ``array_cosine_similarity`` over the ``FLOAT[256]`` column; only rows of
the same embedder are compared (two embedders' vectors live in different spaces).
Every function takes the connection it works on and opens no transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

DIM = 256
"""Length of every stored embedding (the ``FLOAT[256]`` column)."""

SCHEMA_SQL = f"""
CREATE TABLE learnings (
    id           VARCHAR PRIMARY KEY,  -- sortable id (shoal.ids.new_id)
    kind         VARCHAR NOT NULL,     -- regression, plateau, blocker, budget, insight, …
    content      VARCHAR NOT NULL,
    confidence   DOUBLE NOT NULL,      -- 0..1, the base: decay is applied when read
    uses         INTEGER NOT NULL,     -- times recalled into a prompt or reinforced
    source_task  VARCHAR,
    created_at   TIMESTAMP NOT NULL,   -- UTC
    last_used_at TIMESTAMP NOT NULL,   -- UTC, the decay clock starts here
    embedding    FLOAT[{DIM}] NOT NULL,  -- unit vector
    embedder     VARCHAR NOT NULL,     -- the vector space (Embedder.name)
    forgotten    BOOLEAN NOT NULL DEFAULT false,
    team         VARCHAR               -- a team's own note; NULL: everyone's
);
"""
"""The table on its own (the migrations make it in the records; tests make it alone)."""

COLUMNS = (
    "id", "kind", "content", "confidence", "uses", "source_task", "created_at",
    "last_used_at", "embedder", "forgotten",
)  # fmt: skip
"""The columns of the rows read back (everything but the vector and the team)."""
_COLUMNS = ", ".join(COLUMNS)
# Decayed confidence in SQL, for choosing candidates; the values returned are
# recomputed by shoal.memory.store.decayed so that there is one definition of the figure.
_DECAYED_SQL = (
    "confidence * pow(0.5, greatest(0, epoch_us($now) - epoch_us(last_used_at))"
    " / (86400e6 * $half_life))"
)
# The CTE is MATERIALIZED so that the similarity is computed once per row: inlined,
# DuckDB evaluates array_cosine_similarity again for every filter and projection
# that names it (three times here, 96 ms instead of 60 ms over 100,000 rows).
_RANKED = f"""
WITH scored AS MATERIALIZED (
    SELECT id, confidence, last_used_at,
           array_cosine_similarity(embedding, $query::FLOAT[{DIM}]) AS sim
    FROM learnings
    WHERE NOT forgotten {{where}}
)
SELECT {_COLUMNS}, sim FROM (
    SELECT id, sim, sim * {_DECAYED_SQL} AS score
    FROM scored
    WHERE sim >= $min_similarity AND NOT isnan(sim)
    ORDER BY score DESC, id
    LIMIT $limit
) AS best
JOIN learnings USING (id)
ORDER BY score DESC, id
"""


def _whose(team: str | None, embedder: str | None) -> tuple[str, dict[str, Any]]:
    """Everyone's learnings plus the team's own notes when a team asks; of one embedder."""
    where, params = "AND (team IS NULL OR team = $team)", {"team": team}
    if embedder is not None:
        where, params["embedder"] = where + " AND embedder = $embedder", embedder
    return where, params


def near_duplicate(
    con: duckdb.DuckDBPyConnection,
    vector: list[float],
    embedder: str,
    threshold: float,
    team: str | None,
) -> tuple[str, float] | None:
    """(id, confidence) of the most similar live learning at ``threshold`` or above."""
    found = con.execute(
        f"""
        WITH scored AS MATERIALIZED (
            SELECT id, confidence, array_cosine_similarity(embedding, $query::FLOAT[{DIM}]) AS sim
            FROM learnings WHERE NOT forgotten AND embedder = $embedder
                                 AND team IS NOT DISTINCT FROM $team
        )
        SELECT id, confidence FROM scored
        WHERE sim >= $threshold AND NOT isnan(sim)
        ORDER BY sim DESC, id LIMIT 1
        """,
        {"query": vector, "embedder": embedder, "threshold": threshold, "team": team},
    ).fetchall()
    return (found[0][0], found[0][1]) if found else None


def reinforce(
    con: duckdb.DuckDBPyConnection, learning_id: str, confidence: float, now: dt.datetime
) -> None:
    """One more use, a new confidence, and the decay clock restarted (never set back)."""
    con.execute(
        "UPDATE learnings SET uses = uses + 1, confidence = $confidence, "
        "last_used_at = greatest(last_used_at, $now) WHERE id = $id",
        {"id": learning_id, "now": now, "confidence": confidence},
    )


def insert(
    con: duckdb.DuckDBPyConnection,
    learning_id: str,
    kind: str,
    content: str,
    confidence: float,
    source_task: str | None,
    now: dt.datetime,
    vector: list[float],
    embedder: str,
    team: str | None,
) -> None:
    con.execute(
        f"""
        INSERT INTO learnings (id, kind, content, confidence, uses, source_task, created_at,
                               last_used_at, embedding, embedder, forgotten, team)
        VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?::FLOAT[{DIM}], ?, false, ?)
        """,
        [learning_id, kind, content, confidence, source_task, now, now, vector, embedder, team],
    )


def insert_new(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> int:
    """Rows with every column (``embedding`` as a list), but those whose id is here
    already; how many went in."""
    con.register("restored_learnings", rows)
    try:
        before = con.execute("SELECT count(*) FROM learnings").fetchall()[0][0]
        con.execute(
            f"""
            INSERT INTO learnings (id, kind, content, confidence, uses, source_task, created_at,
                                   last_used_at, embedding, embedder, forgotten, team)
            SELECT id, kind, content, confidence, uses, source_task, created_at, last_used_at,
                   embedding::FLOAT[{DIM}], embedder, forgotten, team
            FROM restored_learnings
            WHERE id NOT IN (SELECT id FROM learnings)
            """
        )
        after = con.execute("SELECT count(*) FROM learnings").fetchall()[0][0]
    finally:
        con.unregister("restored_learnings")
    return int(after - before)


def ranked(
    con: duckdb.DuckDBPyConnection,
    vector: list[float],
    now: dt.datetime,
    *,
    half_life_days: float,
    min_similarity: float,
    limit: int,
    team: str | None,
    embedder: str | None,
) -> list[tuple[Any, ...]]:
    """Rows (:data:`COLUMNS` then the similarity) of the ``limit`` live learnings best by
    similarity * decayed confidence, at ``min_similarity`` or above."""
    where, params = _whose(team, embedder)
    params |= {
        "query": vector,
        "now": now,
        "half_life": half_life_days,
        "min_similarity": min_similarity,
        "limit": limit,
    }
    return con.execute(_RANKED.format(where=where), params).fetchall()


def scoring_columns(
    con: duckdb.DuckDBPyConnection, team: str | None, embedder: str | None
) -> dict[str, Any]:
    """``rowid``, ``confidence`` and ``used`` (last use, epoch µs) of the live learnings
    :func:`ranked` would consider, as numpy arrays (an index scores them in memory)."""
    where, params = _whose(team, embedder)
    return con.execute(
        f"""SELECT rowid, confidence, epoch_us(last_used_at) AS used FROM learnings
            WHERE NOT forgotten {where}""",
        params,
    ).fetchnumpy()


def by_rowid(
    con: duckdb.DuckDBPyConnection, vector: list[float], rowids: list[int]
) -> list[tuple[Any, ...]]:
    """Rows (:data:`COLUMNS`, the similarity to ``vector``, the rowid) of these rows."""
    return con.execute(
        f"""SELECT {_COLUMNS}, array_cosine_similarity(embedding, $query::FLOAT[{DIM}]),
                   rowid
            FROM learnings WHERE rowid IN (SELECT unnest($rowids::BIGINT[]))""",
        {"query": vector, "rowids": rowids},
    ).fetchall()


def vectors_from(con: duckdb.DuckDBPyConnection, start: int) -> pa.Table:
    """``rowid`` and ``embedding`` of the rows from rowid ``start`` on, in order."""
    return con.sql(
        "SELECT rowid, embedding FROM learnings WHERE rowid >= $start ORDER BY rowid",
        params={"start": start},
    ).to_arrow_table()


def touch(con: duckdb.DuckDBPyConnection, ids: list[str], now: dt.datetime) -> None:
    """One more use each, and their decay clocks restarted."""
    con.execute(
        "UPDATE learnings SET uses = uses + 1, last_used_at = greatest(last_used_at, $now) "
        "WHERE list_contains($ids, id)",
        {"ids": ids, "now": now},
    )


def newest(
    con: duckdb.DuckDBPyConnection, limit: int, *, include_forgotten: bool
) -> list[tuple[Any, ...]]:
    """Rows (:data:`COLUMNS`) of the newest learnings first."""
    where = "" if include_forgotten else "WHERE NOT forgotten"
    return con.execute(
        f"SELECT {_COLUMNS} FROM learnings {where} ORDER BY created_at DESC, id DESC LIMIT ?",
        [limit],
    ).fetchall()


def live_ids_from(con: duckdb.DuckDBPyConnection, prefix: str, limit: int) -> list[str]:
    """Ids of live learnings starting with ``prefix``, at most ``limit``, in order."""
    rows = con.execute(
        "SELECT id FROM learnings WHERE NOT forgotten AND starts_with(id, ?) ORDER BY id LIMIT ?",
        [prefix, limit],
    ).fetchall()
    return [r[0] for r in rows]


def hide(con: duckdb.DuckDBPyConnection, learning_id: str) -> None:
    """Forget a learning: it stays, hidden from recall and search."""
    con.execute("UPDATE learnings SET forgotten = true WHERE id = ?", [learning_id])
