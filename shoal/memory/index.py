"""An in-memory copy of the learnings' vectors: recall without decoding 100,000 of them.

DuckDB ranks learnings by ``array_cosine_similarity`` x decayed confidence, but
scanning 100,000 stored ``FLOAT[256]`` vectors costs it ~70 ms, most of it
decoding them. The orchestrator, the only writer, keeps the vectors of each
embedder in one numpy matrix instead. A recall then reads only the small
columns from the file (confidence, last use, team, forgotten: ~10 ms through
Arrow), scores every learning exactly in numpy, and asks DuckDB for the few
rows it chose, with their similarity computed by DuckDB itself.

Rows are addressed by DuckDB's ``rowid``: learnings are only ever appended
(forgetting sets a flag) and their vectors never change (reinforcing keeps the
text), so the copy only grows: rows the file has beyond it are loaded when a
recall meets them. Every recall checks DuckDB's similarities of the rows it
returns against the copy's; a mismatch drops the copy (see ``store``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from shoal.store import learnings

if TYPE_CHECKING:
    from collections.abc import Sequence

    import duckdb


class VectorIndex:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._matrix = np.zeros((0, dim), np.float32)  # row i holds the vector of rowid i
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._matrix)

    def reset(self) -> None:
        """Forget every vector (the next :meth:`extend` loads them all again)."""
        with self._lock:
            self._matrix = np.zeros((0, self.dim), np.float32)

    def extend(self, con: duckdb.DuckDBPyConnection) -> None:
        """Load the vectors of rows appended since the last call."""
        with self._lock:
            start = len(self._matrix)
            table = learnings.vectors_from(con, start)
            if not table.num_rows:
                return
            rowids = table.column("rowid").to_numpy()
            if rowids[0] != start or rowids[-1] != start + len(rowids) - 1:
                raise ValueError("learnings' row ids are not contiguous; the copy cannot follow")
            flat = table.column("embedding").combine_chunks().flatten().to_numpy()
            rows = np.asarray(flat, np.float32).reshape(-1, self.dim)
            self._matrix = np.concatenate([self._matrix, rows])

    def similarities(self, query: Sequence[float]) -> np.ndarray:
        """Cosine similarity of ``query`` (a unit vector) with every row, by rowid."""
        with self._lock:
            matrix = self._matrix
        return matrix @ np.asarray(query, np.float32)
