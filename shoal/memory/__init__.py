"""Learnings recalled by similarity: embedders and the DuckDB store (DESIGN.md §3-§4)."""

from shoal.memory.embedder import DIM, Embedder, LocalEmbedder, ModelEmbedder, embedder_from_env
from shoal.memory.store import (
    KINDS,
    AmbiguousPrefix,
    Learning,
    decayed,
    forget,
    format_for_prompt,
    list_learnings,
    recall,
    remember,
    search,
    touch,
)
from shoal.store.learnings import SCHEMA_SQL

__all__ = [
    "DIM",
    "KINDS",
    "SCHEMA_SQL",
    "AmbiguousPrefix",
    "Embedder",
    "Learning",
    "LocalEmbedder",
    "ModelEmbedder",
    "decayed",
    "embedder_from_env",
    "forget",
    "format_for_prompt",
    "list_learnings",
    "recall",
    "remember",
    "search",
    "touch",
]
