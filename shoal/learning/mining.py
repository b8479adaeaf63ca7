"""Mining the task history for recurring work: the pattern-miner's algorithms, pure functions.

- task clusters: tasks whose descriptions embed close to each other (cosine >=
  ``similarity``), greedily grouped around the most connected task; a cluster of
  at least ``min_samples`` tasks is a pattern.
- tool sequences: runs of three consecutive tool calls that recur in at least
  ``min_samples`` different tasks.
- findings: evaluator findings with the same (normalised) title in at least
  ``min_samples`` different tasks.

Confidence grows with the sample count and the cluster's cohesion and is capped at 1.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import msgspec
from pydantic import BaseModel, Field

from shoal.messages.memory import MinedPattern


class MinedTask(BaseModel):
    id: str
    description: str
    score: float | None = None
    tools: list[str] = Field(default_factory=list)
    """The task's tool calls in order."""
    findings: list[str] = Field(default_factory=list)
    """Titles of the findings its evaluations reported."""


class Pattern(MinedPattern, kw_only=True):
    """A mined pattern (ids are stable for the same kind and members, so mining twice
    updates instead of duplicating), with the member descriptions for drafting a skill."""

    descriptions: list[str] = msgspec.field(default_factory=list)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _neighbours(vectors: list[list[float]], similarity: float) -> list[set[int]]:
    """For each vector, the others within ``similarity`` (blockwise, so 10,000 tasks fit)."""
    import numpy as np

    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms == 0, 1, norms)
    out: list[set[int]] = []
    for start in range(0, len(matrix), 1024):
        block = matrix[start : start + 1024] @ matrix.T
        for offset, row in enumerate(block):
            hits = set(np.nonzero(row >= similarity)[0].tolist())
            hits.discard(start + offset)
            out.append(hits)
    return out


def _pattern_id(kind: str, key: str) -> str:
    return f"{kind}-{hashlib.blake2b(key.encode(), digest_size=5).hexdigest()}"


def _confidence(samples: int, cohesion: float = 1.0) -> float:
    return round(min(1.0, cohesion * (1 - 0.5 ** (samples / 2))), 4)


def task_clusters(
    tasks: Sequence[MinedTask],
    embed: Callable[[list[str]], list[list[float]]],
    *,
    similarity: float = 0.5,
    min_samples: int = 3,
) -> list[Pattern]:
    if len(tasks) < min_samples:
        return []
    vectors = embed([t.description for t in tasks])
    neighbours = _neighbours(vectors, similarity)
    free = set(range(len(tasks)))
    patterns = []
    for centre in sorted(range(len(tasks)), key=lambda i: -len(neighbours[i])):
        if centre not in free:
            continue
        members = [centre, *sorted(neighbours[centre] & free)]
        if len(members) < min_samples:
            continue
        free -= set(members)
        cohesion = sum(_cosine(vectors[centre], vectors[m]) for m in members) / len(members)
        ids = sorted(tasks[m].id for m in members)
        patterns.append(
            Pattern(
                id=_pattern_id("task_cluster", tasks[centre].description.lower()),
                kind="task_cluster",
                summary=tasks[centre].description,
                samples=len(members),
                confidence=_confidence(len(members), cohesion),
                task_ids=ids,
                descriptions=[tasks[m].description for m in members],
            )
        )
    return patterns


def tool_sequences(
    tasks: Sequence[MinedTask], *, length: int = 3, min_samples: int = 3
) -> list[Pattern]:
    seen: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for task in tasks:
        for i in range(len(task.tools) - length + 1):
            seen[tuple(task.tools[i : i + length])].add(task.id)
    return [
        Pattern(
            id=_pattern_id("tool_sequence", " ".join(seq)),
            kind="tool_sequence",
            summary=" -> ".join(seq),
            samples=len(ids),
            confidence=_confidence(len(ids)),
            task_ids=sorted(ids),
        )
        for seq, ids in seen.items()
        if len(ids) >= min_samples
    ]


def _normal(title: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", title.lower()).strip()


def recurring_findings(tasks: Sequence[MinedTask], *, min_samples: int = 3) -> list[Pattern]:
    seen: dict[str, set[str]] = defaultdict(set)
    titles: dict[str, Counter[str]] = defaultdict(Counter)
    for task in tasks:
        for title in task.findings:
            seen[_normal(title)].add(task.id)
            titles[_normal(title)][title] += 1
    return [
        Pattern(
            id=_pattern_id("finding", key),
            kind="finding",
            summary=titles[key].most_common(1)[0][0],
            samples=len(ids),
            confidence=_confidence(len(ids)),
            task_ids=sorted(ids),
        )
        for key, ids in seen.items()
        if key and len(ids) >= min_samples
    ]


def mine(
    tasks: Sequence[MinedTask], embed: Callable[[list[str]], list[list[float]]]
) -> list[Pattern]:
    """Every kind of pattern, strongest first."""
    found = [*task_clusters(tasks, embed), *tool_sequences(tasks), *recurring_findings(tasks)]
    return sorted(found, key=lambda p: (-p.confidence, -p.samples, p.id))
