"""Benchmark learnings recall on a DuckDB file with many learnings, and print the figures.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``)::

    python3 scripts/bench_memory.py              # a table
    python3 scripts/bench_memory.py --json       # one JSON object
    python3 scripts/bench_memory.py --rows 20000 # a smaller table

What it measures, in one run, in a temporary directory removed at the end:

1. LocalEmbedder throughput over the generated learnings (all of them are embedded
   with it, so that queries meet vectors of the same space and really match).
2. Inserting them through Arrow in batches into a fresh file with ``SCHEMA_SQL``.
3. With the file reopened (as after an orchestrator restart): the first ``recall``
   (cold), then ``recall`` for each query (median, p95, max), the query's embedding
   timed apart; the same under ``PRAGMA threads=1`` and with the ranking query
   written naively (similarity not materialized), and ``search``: all of them
   taking turns on each query, so that other load on the machine weighs on all
   alike. Last, ``remember``, whose deduplication also scans every row.
4. 1-3 for two layouts of the file: ``default``, as ``open_writer`` creates it
   today, and ``tuned``: float arrays uncompressed and 16,384-row row groups (both
   settings of the connection that writes the file; see ``open_file``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from shoal.ids import new_id
from shoal.memory import DIM, SCHEMA_SQL, LocalEmbedder, recall, remember, search
from shoal.memory.index import VectorIndex

try:  # only to flatten vectors for Arrow faster; the benchmark runs without it
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]

ROWS = 100_000
QUERIES = 50
BATCH = 10_000
WARMUP = 3
TARGET_RECALL_MS = 50.0
TUNED_ROW_GROUP = 16_384
NOW = dt.datetime(2025, 6, 1, 12, 0, 0)

KINDS = ["regression", "plateau", "blocker", "budget", "insight", "convention", "pitfall"]
TOOLS = [
    "pytest", "ruff", "mypy", "npm", "pnpm", "cargo", "go test", "make", "docker", "git",
    "duckdb", "pyzmq", "litellm", "uvicorn", "alembic", "webpack", "vite", "tox", "poetry",
    "pip", "terraform", "kubectl", "jest", "eslint", "prettier", "gradle", "maven", "bazel",
]  # fmt: skip
THINGS = [
    "fixture", "migration", "lock file", "cache", "snapshot", "worktree", "socket", "timeout",
    "retry", "schema", "config file", "environment variable", "temp directory", "subprocess",
    "connection pool", "index", "import", "type hint", "test suite", "build step", "wheel",
    "container", "port", "log level", "rate limit", "token budget", "prompt", "embedding",
    "transaction", "primary key", "checkpoint", "signal handler", "thread", "event loop",
]  # fmt: skip
PROBLEMS = [
    "times out", "leaks file descriptors", "fails only on CI", "is flaky under load",
    "breaks after an upgrade", "needs a clean checkout", "hides the real error",
    "is slow on the first run", "conflicts with a parallel run", "is not idempotent",
    "rejects lines longer than 100 characters", "needs network access",
    "deadlocks when two writers open the file", "loses data on SIGKILL",
]  # fmt: skip
ADVICE = [
    "pin the version", "run it with a fresh cache", "set an explicit timeout",
    "use tmp_path instead of /tmp", "close it in a finally block", "retry with backoff",
    "batch the inserts through Arrow", "check the exit code", "read the whole log first",
    "run the linter before the tests", "kill the process group, not the pid",
    "avoid global state in tests", "split the change into smaller steps",
]  # fmt: skip
UNRELATED = [
    "bake sourdough bread with a long cold proof",
    "the best hiking trails near the lake in autumn",
    "a recipe for lemon cake with poppy seeds",
    "learn to play the cello as an adult",
    "how tides depend on the moon and the sun",
]


# The ranking query with the similarity inlined, as first written: DuckDB computes
# array_cosine_similarity once per reference (filter, isnan, score).
NAIVE_SQL = f"""
SELECT id, kind, content, confidence, uses, source_task, created_at, last_used_at, embedder,
       forgotten, sim
FROM (
    SELECT *, array_cosine_similarity(embedding, $query::FLOAT[{DIM}]) AS sim
    FROM learnings WHERE NOT forgotten AND embedder = $embedder
)
WHERE sim >= 0.2 AND NOT isnan(sim)
ORDER BY sim * confidence * pow(0.5, greatest(0, epoch_us($now) - epoch_us(last_used_at))
         / (86400e6 * 30.0)) DESC, id
LIMIT 36
"""


def learning_text(rng: random.Random) -> str:
    """A random but realistic learning: a tool, a thing, a problem, advice, a module."""
    tool, thing = rng.choice(TOOLS), rng.choice(THINGS)
    module = f"{rng.choice(THINGS).replace(' ', '_')}_{rng.randrange(2000)}.py"
    shapes = [
        f"{tool} {thing} {rng.choice(PROBLEMS)}; {rng.choice(ADVICE)}",
        f"when {tool} {rng.choice(PROBLEMS)} in {module}, {rng.choice(ADVICE)}",
        f"the {thing} in {module} {rng.choice(PROBLEMS)}: {rng.choice(ADVICE)} "
        f"and {rng.choice(ADVICE)}",
        f"{rng.choice(ADVICE)} before touching the {thing}; otherwise {tool} "
        f"{rng.choice(PROBLEMS)}",
    ]
    return rng.choice(shapes)


def query_text(rng: random.Random, i: int) -> str:
    if i % 10 == 9:
        return rng.choice(UNRELATED)
    return f"{rng.choice(TOOLS)} {rng.choice(THINGS)} {rng.choice(PROBLEMS)}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) * 1000, result


def insert(con: duckdb.DuckDBPyConnection, texts: list[str], vectors: list[list[float]]) -> None:
    """Insert rows through Arrow, ``BATCH`` at a time."""
    rng = random.Random(7)
    embedder = LocalEmbedder.name
    for start in range(0, len(texts), BATCH):
        chunk = range(start, min(start + BATCH, len(texts)))
        if np is not None:
            flat = pa.array(np.asarray([vectors[i] for i in chunk], np.float32).ravel())
        else:
            flat = pa.array([x for i in chunk for x in vectors[i]], pa.float32())
        ages = [dt.timedelta(days=rng.uniform(0, 180)) for _ in chunk]
        table = pa.table(
            {
                "id": pa.array([new_id() for _ in chunk], pa.string()),
                "kind": pa.array([rng.choice(KINDS) for _ in chunk], pa.string()),
                "content": pa.array([texts[i] for i in chunk], pa.string()),
                "confidence": pa.array([rng.uniform(0.3, 1.0) for _ in chunk], pa.float64()),
                "uses": pa.array([rng.randrange(10) for _ in chunk], pa.int32()),
                "source_task": pa.array([f"T{rng.randrange(5000)}" for _ in chunk], pa.string()),
                "created_at": pa.array([NOW - a - dt.timedelta(days=30) for a in ages]),
                "last_used_at": pa.array([NOW - a for a in ages]),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, DIM),
                "embedder": pa.array([embedder] * len(chunk), pa.string()),
                "forgotten": pa.array([rng.random() < 0.02 for _ in chunk], pa.bool_()),
            }
        )
        con.register("batch", table)
        try:
            con.execute("INSERT INTO learnings BY NAME SELECT * FROM batch")
        finally:
            con.unregister("batch")


def latency(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(percentile(samples, 0.95), 2),
        "max_ms": round(max(samples), 2),
    }


def open_file(path: str, tuned: bool) -> duckdb.DuckDBPyConnection:
    """The file as ``shoal.store.database.open_writer`` opens it, or with the tuned layout.

    Tuned: the float arrays stored uncompressed (ALP, ALP-RD and RLE off: decoding
    them is about half of a scan) and 16,384-row row groups (DuckDB scans one row
    group on one thread, and 100,000 rows fit in one default 122,880-row group).
    Both are settings of the connection that writes, and apply to every table.
    """
    if not tuned:
        return duckdb.connect(path)
    con = duckdb.connect()
    con.execute("SET disabled_compression_methods = 'alp,alprd,rle'")
    con.execute(f"ATTACH '{path}' AS memory_bench (ROW_GROUP_SIZE {TUNED_ROW_GROUP})")
    con.execute("USE memory_bench")
    return con


def naive_recall(
    con: duckdb.DuckDBPyConnection, vector: list[float], now: dt.datetime, *, embedder: str
) -> list[Any]:
    """recall's query without the MATERIALIZED CTE, for comparison."""
    return con.execute(NAIVE_SQL, {"query": vector, "now": now, "embedder": embedder}).fetchall()


def build(path: str, tuned: bool, texts: list[str], vectors: list[list[float]]) -> dict[str, Any]:
    con = open_file(path, tuned)
    con.execute(SCHEMA_SQL)
    insert_ms, _ = timed(lambda: insert(con, texts, vectors))
    con.execute("CHECKPOINT")
    storage = con.execute(
        "SELECT count(DISTINCT row_group_id), list(DISTINCT compression ORDER BY compression) "
        "FROM pragma_storage_info('learnings') WHERE column_name = 'embedding'"
    ).fetchone()
    con.close()
    return {
        "insert_s": round(insert_ms / 1000, 2),
        "insert_rows_per_s": round(len(texts) / (insert_ms / 1000)),
        "file_mb": round(Path(path).stat().st_size / 1e6, 1),
        "row_groups": storage[0] if storage else None,
        "embedding_compression": storage[1] if storage else None,
    }


def run(rows: int, queries: int) -> dict[str, Any]:
    rng = random.Random(42)
    embedder = LocalEmbedder()
    name = embedder.name
    texts = [learning_text(rng) for _ in range(rows)]
    embed_ms, vectors = timed(lambda: embedder.embed(texts))
    query_texts = [query_text(rng, i) for i in range(WARMUP + queries)]
    # Queries are embedded one at a time, as the loop will do before each prompt.
    query_embed_ms, query_vectors = [], []
    for text in query_texts:
        ms, (vector,) = timed(lambda text=text: embedder.embed([text]))
        query_embed_ms.append(ms)
        query_vectors.append(vector)

    result: dict[str, Any] = {
        "rows": rows,
        "queries": queries,
        "dim": DIM,
        "duckdb": duckdb.__version__,
        "embed_rows_s": round(embed_ms / 1000, 2),
        "embed_us_per_text": round(embed_ms * 1000 / rows, 1),
        "embed_query": latency(query_embed_ms),
        "target_recall_ms": TARGET_RECALL_MS,
    }
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-memory-"))
    cons: dict[str, duckdb.DuckDBPyConnection] = {}
    try:
        for layout in ("default", "tuned"):
            result[layout] = build(str(tmp / f"{layout}.duckdb"), layout == "tuned", texts, vectors)
        # A copy of the default file for a one-thread instance (threads is per instance).
        shutil.copy(tmp / "default.duckdb", tmp / "one-thread.duckdb")
        # Reopened, as after an orchestrator restart: the first query reads the file.
        for layout in ("default", "tuned"):
            con = cons[layout] = open_file(str(tmp / f"{layout}.duckdb"), layout == "tuned")
            threads = con.execute("SELECT current_setting('threads')").fetchone()
            result[layout]["threads"] = int(threads[0]) if threads else None
            cold_ms, _ = timed(lambda con=con: recall(con, query_vectors[0], NOW, embedder=name))
            result[layout]["recall_cold_ms"] = round(cold_ms, 2)
        cons["one-thread"] = open_file(str(tmp / "one-thread.duckdb"), False)
        cons["one-thread"].execute("PRAGMA threads=1")
        # What the orchestrator holds: the vectors in memory, loaded once.
        index = VectorIndex(DIM)
        load_ms, _ = timed(lambda: index.extend(cons["default"]))
        result["index_load_ms"] = round(load_ms, 1)
        indexed = functools.partial(recall, index=index)

        # Variants take turns on each query, so that other load on the machine
        # weighs on all of them alike.
        variants: dict[str, tuple[str, Callable[..., list[Any]]]] = {
            "default": ("default", recall),
            "tuned": ("tuned", recall),
            "one-thread": ("one-thread", recall),
            "naive": ("default", naive_recall),
            "search": ("default", search),
            "indexed": ("default", indexed),
        }
        samples: dict[str, list[float]] = {v: [] for v in variants}
        found: list[list[Any]] = []
        found_indexed: list[list[Any]] = []
        for i, vector in enumerate(query_vectors):
            for variant, (layout, fn) in variants.items():
                con = cons[layout]
                ms, hits = timed(lambda v=vector, c=con, f=fn: f(c, v, NOW, embedder=name))
                if i >= WARMUP:
                    samples[variant].append(ms)
                    if variant == "default":
                        found.append(hits)
                    if variant == "indexed":
                        found_indexed.append(hits)
        default, tuned = result["default"], result["tuned"]
        default["recall"], tuned["recall"] = latency(samples["default"]), latency(samples["tuned"])
        default["recall_1_thread"] = latency(samples["one-thread"])
        default["recall_naive_sql"] = latency(samples["naive"])
        default["search_k10"] = latency(samples["search"])
        result["indexed"] = {"recall": latency(samples["indexed"])}
        result["indexed"]["meets_target"] = result["indexed"]["recall"]["p95_ms"] < TARGET_RECALL_MS
        result["indexed"]["same_results"] = sum(
            [h.id for h in a] == [h.id for h in b]
            for a, b in zip(found, found_indexed, strict=True)
        )
        result["indexed"]["queries"] = len(found)
        for figures in (default, tuned):
            figures["meets_target"] = figures["recall"]["p95_ms"] < TARGET_RECALL_MS

        unrelated = [i for i in range(len(found)) if (i + WARMUP) % 10 == 9]
        related = [i for i in range(len(found)) if i not in unrelated]
        default["recall_hits_mean"] = round(statistics.mean(map(len, found)), 2)
        default["recall_hits_unrelated"] = [len(found[i]) for i in unrelated]
        default["top_similarity_related_median"] = round(
            statistics.median(found[i][0].similarity for i in related if found[i]), 3
        )
        default["top_similarity_unrelated"] = [
            round(found[i][0].similarity, 3) for i in unrelated if found[i]
        ]
        remember_ms = []
        for text in query_texts[WARMUP : WARMUP + 20]:
            vector = embedder.embed([text])[0]
            ms, _ = timed(
                lambda t=text, v=vector, c=cons["default"]: remember(
                    c, "insight", t, 0.5, None, v, name, NOW
                )
            )
            remember_ms.append(ms)
        default["remember_dedupe"] = latency(remember_ms)
    finally:
        for con in cons.values():
            con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    result["meets_target"] = result["indexed"]["meets_target"]
    return result


def show(result: dict[str, Any]) -> None:
    def lat(v: dict[str, float]) -> str:
        return (
            f"median {v['median_ms']:6.2f} ms, p95 {v['p95_ms']:6.2f} ms, max {v['max_ms']:6.2f} ms"
        )

    default, tuned = result["default"], result["tuned"]
    print(
        f"learnings: {result['rows']:,} rows of FLOAT[{result['dim']}], DuckDB {result['duckdb']}"
    )
    print(
        f"LocalEmbedder, bulk:       {result['embed_rows_s']:.2f} s "
        f"({result['embed_us_per_text']:.1f} µs per text)"
    )
    print(f"LocalEmbedder, one query:  {lat(result['embed_query'])}")
    for label, figures in (("default", default), ("tuned", tuned)):
        print(
            f"[{label}] insert (Arrow): {figures['insert_s']:.2f} s "
            f"({figures['insert_rows_per_s']:,} rows/s), file {figures['file_mb']:.1f} MB, "
            f"{figures['row_groups']} row group(s), embedding {figures['embedding_compression']}, "
            f"{figures['threads']} threads"
        )
        print(f"[{label}] recall, cold (1st): {figures['recall_cold_ms']:.2f} ms")
        print(f"[{label}] recall k=5:         {lat(figures['recall'])}")
    print(f"[default] recall, 1 thread:  {lat(default['recall_1_thread'])}")
    print(f"[default] recall, naive SQL: {lat(default['recall_naive_sql'])}")
    print(f"[default] search k=10:       {lat(default['search_k10'])}")
    indexed = result["indexed"]
    print(
        f"[indexed] recall k=5:         {lat(indexed['recall'])}   "
        f"(in-memory vectors, loaded in {result['index_load_ms']:.0f} ms; same results as the "
        f"full scan for {indexed['same_results']}/{indexed['queries']} queries)"
    )
    print(f"[default] remember (dedupe): {lat(default['remember_dedupe'])}")
    print(
        f"recall hits: {default['recall_hits_mean']:.2f} on average; "
        f"unrelated queries: {default['recall_hits_unrelated']}"
    )
    print(
        f"top similarity: related queries median {default['top_similarity_related_median']}, "
        f"unrelated queries {default['top_similarity_unrelated']}"
    )
    for label, figures in (("default", default), ("tuned", tuned), ("indexed", indexed)):
        verdict = "meets" if figures["meets_target"] else "MISSES"
        print(f"target recall p95 < {result['target_recall_ms']:.0f} ms, {label} layout: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"learnings (default {ROWS:,})")
    parser.add_argument("--queries", type=int, default=QUERIES, help="timed recall queries")
    args = parser.parse_args()
    result = run(args.rows, args.queries)
    if args.json:
        print(json.dumps(result))
    else:
        show(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
