"""An in-memory copy of the learnings' vectors: recall without decoding 100,000 of them.

DuckDB ranks learnings by ``array_cosine_similarity`` x decayed confidence, but
scanning 100,000 stored ``FLOAT[256]`` vectors costs it ~70 ms, most of it
decoding them. The orchestrator, the only writer, keeps the vectors of each
embedder in one numpy matrix instead. A recall then reads only the small
columns from the file (confidence, last use, team, forgotten: ~10 ms through
Arrow), scores every learning exactly in numpy, and asks DuckDB for the few
rows it chose, with their similarity computed by DuckDB itself.

Vectors never change once stored (reinforcing a learning keeps its text), so
the copy only grows: :meth:`add` after each new learning, and any learning the
file has but the copy lacks is loaded when a recall meets it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import duckdb


class VectorIndex:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids: list[str] = []
        self._matrix = np.zeros((1024, dim), np.float32)  # rows past len(self) are spare
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # ids sorted, their rows
        self._lock = threading.Lock()

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, embedder: str, dim: int) -> VectorIndex:
        index = cls(dim)
        index.load_ids(con, embedder, None)
        return index

    def load_ids(
        self, con: duckdb.DuckDBPyConnection, embedder: str, ids: Sequence[str] | None
    ) -> None:
        """Add the vectors of ``ids`` (None: every learning of ``embedder``) from the file."""
        where = "" if ids is None else "AND id IN (SELECT unnest($ids::VARCHAR[]))"
        table = con.sql(
            f"SELECT id, embedding FROM learnings WHERE embedder = $embedder {where}",
            params={"embedder": embedder} | ({} if ids is None else {"ids": list(ids)}),
        ).to_arrow_table()
        if not table.num_rows:
            return
        flat = table.column("embedding").combine_chunks().flatten().to_numpy()
        matrix = np.asarray(flat, np.float32).reshape(-1, self.dim)
        for learning_id, row in zip(table.column("id").to_pylist(), matrix, strict=True):
            self.add(learning_id, row)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, learning_id: str, vector: Sequence[float]) -> None:
        with self._lock:
            n = len(self._ids)
            if n == len(self._matrix):  # full: double, so adding stays amortised O(1)
                grown = np.zeros((2 * n, self.dim), np.float32)
                grown[:n] = self._matrix
                self._matrix = grown
            row = np.asarray(vector, np.float32)
            self._matrix[n] = row / np.linalg.norm(row)  # stored vectors are unit vectors
            self._ids.append(learning_id)
            self._sorted = None

    def similarities(
        self, query: Sequence[float], ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of ``query`` with each of ``ids``; and a mask of ids it lacks."""
        with self._lock:
            count = len(self._ids)
            matrix = self._matrix[:count]
            if self._sorted is None:
                order = np.argsort(np.asarray(self._ids, dtype=object))
                self._sorted = (np.asarray(self._ids, dtype=object)[order], order)
            keys, rows = self._sorted
        if not count:
            return np.zeros(len(ids), np.float32), np.ones(len(ids), bool)
        sims = matrix @ np.asarray(query, np.float32)
        at = np.minimum(np.searchsorted(keys, ids), count - 1)
        missing = keys[at] != ids
        return np.where(missing, 0.0, sims[rows[at]]), missing
