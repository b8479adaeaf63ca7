"""Learnings memory: embedders and the DuckDB store, on real DuckDB files; nothing mocked."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from shoal.llm import ModelConfig, ModelError
from shoal.llm.scripted import ScriptedModelServer
from shoal.memory import (
    DIM,
    SCHEMA_SQL,
    AmbiguousPrefix,
    LocalEmbedder,
    ModelEmbedder,
    decayed,
    embedder_from_env,
    forget,
    format_for_prompt,
    list_learnings,
    recall,
    remember,
    search,
    touch,
)

pytestmark = pytest.mark.timeout(60)

NOW = dt.datetime(2025, 6, 1, 12, 0, 0)
EMBEDDER = LocalEmbedder()

FIXTURES = "pytest fixtures that create temporary directories must clean them up after each test"
RUFF = "run ruff check before committing; the line length limit is 100 characters"
NPM = "the CI build times out when npm install runs without a package cache"


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "memory.duckdb"))
    connection.execute(SCHEMA_SQL)
    yield connection
    connection.close()


def vec(text: str) -> list[float]:
    return EMBEDDER.embed([text])[0]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def add(
    con: duckdb.DuckDBPyConnection,
    content: str,
    *,
    kind: str = "pitfall",
    confidence: float = 0.8,
    at: dt.datetime = NOW,
) -> tuple[str, bool]:
    return remember(con, kind, content, confidence, "T1", vec(content), EMBEDDER.name, at)


def stored_confidence(con: duckdb.DuckDBPyConnection, learning_id: str) -> float:
    row = con.execute("SELECT confidence FROM learnings WHERE id = ?", [learning_id]).fetchone()
    assert row is not None
    return row[0]


def test_the_learnings_table_alone_is_the_migrated_one(tmp_path: Path) -> None:
    """The tests here make the table from SCHEMA_SQL; the records make it by migrations
    (both in shoal/store). They must agree, or these tests test another table."""
    from shoal.store.migrations import migrate

    def columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
        rows = con.execute("DESCRIBE learnings").fetchall()
        return [(name, kind, null) for name, kind, null, *_ in rows]

    alone = duckdb.connect()
    alone.execute(SCHEMA_SQL)
    migrated = duckdb.connect(str(tmp_path / "shoal.duckdb"))
    migrate(migrated)
    assert columns(alone) == columns(migrated)
    assert ("embedding", f"FLOAT[{DIM}]", "NO") in columns(migrated)


# --- embedders --------------------------------------------------------------------


def test_local_embedder_unit_vectors_of_dim() -> None:
    vectors = EMBEDDER.embed([FIXTURES, RUFF, ""])
    assert [len(v) for v in vectors] == [DIM, DIM, DIM]
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-9)
    assert not any(vectors[2])  # no words: the zero vector, which the store refuses


def test_local_embedder_is_deterministic_across_processes() -> None:
    here = EMBEDDER.embed([FIXTURES, RUFF])
    assert EMBEDDER.embed([FIXTURES, RUFF]) == here
    code = (
        "import json, sys; from shoal.memory.embedder import LocalEmbedder; "
        "print(json.dumps(LocalEmbedder().embed(sys.argv[1:])))"
    )
    # Another hash seed: a salted hash() would give other buckets.
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, FIXTURES, RUFF],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == here


def test_local_embedder_similar_texts_are_closer() -> None:
    query = vec("tests leave temporary directories behind; clean up fixtures")
    assert cosine(query, vec(FIXTURES)) > 0.3
    assert cosine(query, vec(FIXTURES)) > cosine(query, vec(RUFF)) + 0.2
    assert cosine(query, vec(FIXTURES)) > cosine(query, vec(NPM)) + 0.2
    assert cosine(vec("npm install timeout in CI"), vec(NPM)) > cosine(vec(RUFF), vec(NPM))


def test_embedder_from_env() -> None:
    assert isinstance(embedder_from_env({}), LocalEmbedder)
    chosen = embedder_from_env(
        {
            "SHOAL_EMBEDDING_MODEL": "openai/text-embedding-3-small",
            "SHOAL_BASE_URL": "http://127.0.0.1:9/v1",
            "SHOAL_API_KEY": "sk-universal",
        }
    )
    assert isinstance(chosen, ModelEmbedder)
    assert chosen.config.base_url == "http://127.0.0.1:9/v1"
    assert chosen.config.api_key is not None
    assert chosen.config.api_key.get_secret_value() == "sk-universal"
    own = embedder_from_env(
        {
            "SHOAL_EMBEDDING_MODEL": "openai/e",
            "SHOAL_EMBEDDING_BASE_URL": "http://own/v1",
            "SHOAL_BASE_URL": "http://universal/v1",
            "SHOAL_EMBEDDING_API_KEY": "sk-own",
            "SHOAL_API_KEY": "sk-universal",
        }
    )
    assert isinstance(own, ModelEmbedder)
    assert own.config.base_url == "http://own/v1"
    assert own.config.api_key is not None and own.config.api_key.get_secret_value() == "sk-own"
    assert own.name != EMBEDDER.name


@pytest.mark.parametrize("native", [64, 384])
def test_model_embedder_fits_vectors_to_dim(native: int) -> None:
    # The scripted server answers like an OpenAI-compatible one, over real HTTP.
    server = ScriptedModelServer({"embeddings": {"dimensions": native}})
    try:
        config = ModelConfig(
            model="openai/scripted-embedder", base_url=server.base_url, api_key="sk-test"
        )
        embedder = ModelEmbedder(config)
        flaky = "fix the flaky integration test that times out on the slow CI runner"
        bread = "bake sourdough bread overnight with a long and cold final proof"
        vectors = embedder.embed([flaky, flaky, bread])
        assert [len(v) for v in vectors] == [DIM] * 3
        assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-9)
        assert vectors[0] == vectors[1] != vectors[2]
        assert embedder.last is not None and embedder.last.usage.prompt_tokens > 0
        # Errors propagate: no silent fallback to another vector space.
        missing = ModelEmbedder(config.model_copy(update={"model": "openai/nope"}))
        with pytest.raises(ModelError):
            missing.embed(["x"])
    finally:
        server.close()


# --- remember, recall, search -------------------------------------------------------


def test_remember_reinforces_a_near_duplicate(con: duckdb.DuckDBPyConnection) -> None:
    first, created = add(con, FIXTURES, confidence=0.6)
    assert created
    later = NOW + dt.timedelta(days=3)
    again, created = add(con, FIXTURES + ".", confidence=0.5, at=later)
    assert (again, created) == (first, False)
    (row,) = list_learnings(con)
    assert row.uses == 1
    assert row.confidence == pytest.approx(0.65)  # max(0.6, 0.5) + 0.05
    assert row.last_used_at == later and row.created_at == NOW
    assert row.content == FIXTURES  # the first wording stays
    other, created = add(con, RUFF)
    assert created and other != first
    assert len(list_learnings(con)) == 2
    # Reinforcement is capped at 1.
    add(con, RUFF, confidence=1.0)
    assert stored_confidence(con, other) == 1.0


def test_remember_refuses_bad_input(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ValueError, match="confidence"):
        add(con, FIXTURES, confidence=1.5)
    with pytest.raises(ValueError, match="content"):
        add(con, "   ")
    with pytest.raises(ValueError, match="expected 256"):
        remember(con, "pitfall", "x", 0.5, None, [1.0] * 3, EMBEDDER.name, NOW)
    with pytest.raises(ValueError, match="zero"):
        remember(con, "pitfall", "!!", 0.5, None, vec("!!"), EMBEDDER.name, NOW)
    assert list_learnings(con) == []


def test_remember_stores_unit_vectors_and_utc(con: duckdb.DuckDBPyConnection) -> None:
    scaled = [3.0 * x for x in vec(FIXTURES)]
    in_paris = dt.datetime(2025, 6, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    remember(con, "pitfall", FIXTURES, 0.5, None, scaled, EMBEDDER.name, in_paris)
    row = con.execute("SELECT array_inner_product(embedding, embedding), created_at FROM learnings")
    norm2, created = row.fetchone() or (None, None)
    assert norm2 == pytest.approx(1.0, rel=1e-5)
    assert created == NOW  # 14:00 at +02:00 is 12:00 UTC, stored without a zone


def test_recall_finds_similar_and_not_unrelated(con: duckdb.DuckDBPyConnection) -> None:
    fixtures, _ = add(con, FIXTURES)
    add(con, RUFF, kind="convention")
    add(con, NPM, kind="blocker")
    found = recall(con, vec("clean up temporary directories created by test fixtures"), NOW)
    assert found[0].id == fixtures
    assert found[0].similarity is not None and found[0].similarity >= 0.2
    assert found[0].score == pytest.approx(found[0].similarity * 0.8)
    assert recall(con, vec("bake sourdough bread with a long cold proof"), NOW) == []
    assert recall(con, vec("???"), NOW) == []  # no words: no match, no NaN ranking
    # Vectors of another embedder are never compared with these.
    assert recall(con, vec(FIXTURES), NOW, embedder="model:other:256") == []
    assert recall(con, vec(FIXTURES), NOW, embedder=EMBEDDER.name)[0].id == fixtures


def test_recall_does_not_touch_and_touch_marks_used(con: duckdb.DuckDBPyConnection) -> None:
    learning_id, _ = add(con, FIXTURES)
    later = NOW + dt.timedelta(days=30)
    query = vec(FIXTURES)
    recall(con, query, later)
    search(con, query, later)
    (row,) = list_learnings(con)
    assert (row.uses, row.last_used_at) == (0, NOW)
    touch(con, [learning_id], later)
    (row,) = list_learnings(con)
    assert (row.uses, row.last_used_at) == (1, later)
    touch(con, [learning_id], NOW)  # a clock set back never moves the decay clock back
    assert list_learnings(con)[0].last_used_at == later


def test_decay_is_pure_and_read_time_only(con: duckdb.DuckDBPyConnection) -> None:
    a = decayed(0.8, NOW, NOW + dt.timedelta(days=10))
    assert a == decayed(0.8, NOW, NOW + dt.timedelta(days=10))
    assert decayed(0.8, NOW, NOW) == 0.8
    assert decayed(0.8, NOW, NOW + dt.timedelta(days=30)) == pytest.approx(0.4)
    assert decayed(0.8, NOW, NOW + dt.timedelta(days=60)) < a < 0.8
    assert decayed(0.8, NOW, NOW - dt.timedelta(days=5)) == 0.8  # never raised
    aware = (NOW + dt.timedelta(days=10)).replace(tzinfo=dt.UTC)
    assert decayed(0.8, NOW, aware) == a

    learning_id, _ = add(con, FIXTURES, confidence=0.8)
    query = vec(FIXTURES)
    for days in (0, 45, 90, 45):
        found = search(con, query, NOW + dt.timedelta(days=days))
        assert found[0].effective_confidence == decayed(0.8, NOW, NOW + dt.timedelta(days=days))
    assert stored_confidence(con, learning_id) == 0.8
    fresh = search(con, query, NOW + dt.timedelta(days=1))[0].score
    stale = search(con, query, NOW + dt.timedelta(days=90))[0].score
    assert fresh is not None and stale is not None and stale < fresh


def test_decay_ranks_a_stale_learning_below_a_fresh_one(con: duckdb.DuckDBPyConnection) -> None:
    old, _ = add(con, "pytest fixtures leak temporary directories", at=NOW - dt.timedelta(days=120))
    new, _ = add(con, "test fixtures leave temporary directories behind", at=NOW)
    found = search(con, vec("pytest fixtures leak temporary directories"), NOW)
    # The old one is the closer match but has decayed to 1/16 of its confidence.
    assert found[0].id == new and found[1].id == old
    assert found[1].similarity is not None and found[0].similarity is not None
    assert found[1].similarity > found[0].similarity


def test_token_budget_is_respected(con: duckdb.DuckDBPyConnection) -> None:
    topics = ["database", "linter", "network", "docker", "python", "cache", "deploy", "queue"]
    for i, topic in enumerate(topics):
        add(con, f"recurring timeout in the {topic} step: retry with backoff " + "x" * 40 * i)
    query = vec("recurring timeout: retry with backoff")
    everything = search(con, query, NOW, k=20)
    assert len(everything) == len(topics)
    for budget in (30, 60, 150, 600):
        found = recall(con, query, NOW, k=10, token_budget=budget)
        assert found
        assert sum(math.ceil(len(item.content) / 4) for item in found) <= budget
    assert len(recall(con, query, NOW, k=3, token_budget=10_000)) == 3
    assert recall(con, query, NOW, token_budget=5) == []  # nothing is that short


def test_forget_hides_and_refuses_ambiguous_prefix(con: duckdb.DuckDBPyConnection) -> None:
    first, _ = add(con, FIXTURES)
    second, _ = add(con, RUFF)
    differ = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    shared = first[:differ]
    with pytest.raises(AmbiguousPrefix, match="several"):
        forget(con, shared)
    with pytest.raises(ValueError):
        forget(con, "")
    assert len(list_learnings(con)) == 2  # nothing hidden by the refusals
    assert forget(con, first[: len(shared) + 1])  # unique once one more character is given
    assert [item.id for item in list_learnings(con)] == [second]
    assert recall(con, vec(FIXTURES), NOW, min_similarity=0.0) != []  # only RUFF now
    assert all(item.id != first for item in search(con, vec(FIXTURES), NOW))
    assert not forget(con, first)  # already forgotten
    assert not forget(con, "ZZZZ")
    assert len(list_learnings(con, include_forgotten=True)) == 2
    # A forgotten learning is not reinforced: the same text starts a new one.
    again, created = add(con, FIXTURES)
    assert created and again != first


def test_format_for_prompt(con: duckdb.DuckDBPyConnection) -> None:
    assert format_for_prompt([]) == ""
    add(con, "use tmp_path,\nnot /tmp", kind="convention", confidence=0.9)
    found = recall(con, vec("tmp_path /tmp"), NOW + dt.timedelta(days=30))
    text = format_for_prompt(found)
    assert text.splitlines() == [
        "Background from past runs (may not apply; verify before relying on it):",
        "- [convention, confidence 0.45] use tmp_path, not /tmp",
    ]


def test_recall_through_the_vector_index_equals_the_full_scan(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The index only chooses what DuckDB reads; the ranking must be the full scan's."""
    import datetime as dt
    import random

    import pyarrow as pa

    from shoal.ids import new_id
    from shoal.memory.index import VectorIndex
    from shoal.memory.store import DIM, INDEX_FROM, recall, search

    rng = random.Random(7)
    n = INDEX_FROM + 1000
    topics = ["pytest fixtures", "ruff lint", "npm cache", "git rebase", "docker build"]
    texts = [f"{rng.choice(topics)} note {i} {rng.choice(topics)}" for i in range(n)]
    vectors = EMBEDDER.embed(texts)
    now = dt.datetime(2026, 11, 30)
    rows = {
        "id": [new_id() for _ in range(n)],
        "kind": ["insight"] * n,
        "content": texts,
        "confidence": [rng.uniform(0.2, 1.0) for _ in range(n)],
        "uses": [0] * n,
        "source_task": [None] * n,
        "created_at": [now - dt.timedelta(days=200)] * n,
        "last_used_at": [now - dt.timedelta(days=rng.uniform(0, 120)) for _ in range(n)],
        "embedding": vectors,
        "embedder": [EMBEDDER.name] * n,
        "forgotten": [rng.random() < 0.05 for _ in range(n)],
        "team": [rng.choice([None, None, "red", "blue"]) for _ in range(n)],
    }
    table = pa.table({**rows, "embedding": pa.array(vectors, pa.list_(pa.float32(), DIM))})
    con.register("batch", table)
    con.execute("INSERT INTO learnings BY NAME SELECT * FROM batch").fetchall()
    con.unregister("batch")
    index = VectorIndex(DIM)
    index.extend(con)
    assert len(index) == n
    for query, team in (("pytest fixtures cleanup", None), ("git rebase conflicts", "red")):
        q = vec(query)
        kwargs = {"embedder": EMBEDDER.name, "team": team, "k": 8}
        plain = recall(con, q, now, **kwargs)
        fast = recall(con, q, now, index=index, **kwargs)
        assert [x.id for x in fast] == [x.id for x in plain] and plain
        assert [round(x.score or 0, 6) for x in fast] == [round(x.score or 0, 6) for x in plain]
        teams = dict(zip(rows["id"], rows["team"], strict=True))
        assert all(teams[x.id] in (None, team) for x in fast)
    q = vec("docker build cache")
    kwargs = {"embedder": EMBEDDER.name, "k": 50}
    assert [x.id for x in search(con, q, now, index=index, **kwargs)] == [
        x.id for x in search(con, q, now, **kwargs)
    ]


def test_the_vector_copy_follows_new_rows_and_is_dropped_when_it_disagrees(
    con: duckdb.DuckDBPyConnection,
) -> None:
    import datetime as dt

    from shoal.memory import store
    from shoal.memory.index import VectorIndex

    now = dt.datetime(2026, 11, 30)
    for i in range(store.INDEX_FROM + 5):
        remember(
            con,
            "insight",
            f"note {i} about topic {i * 7919}",
            0.9,
            None,
            vec(f"note {i} about topic {i * 7919}"),
            EMBEDDER.name,
            now,
            dedupe_threshold=2.0,
        )
    index = VectorIndex(store.DIM)
    first = recall(con, vec("topic 7919"), now, embedder=EMBEDDER.name, index=index)
    assert len(index) == store.INDEX_FROM + 5 and first
    remember(
        con,
        "insight",
        "a brand new pitfall about flaky sockets",
        0.9,
        None,
        vec("a brand new pitfall about flaky sockets"),
        EMBEDDER.name,
        now,
    )
    found = recall(con, vec("flaky sockets pitfall"), now, embedder=EMBEDDER.name, index=index)
    assert found[0].content == "a brand new pitfall about flaky sockets"
    assert len(index) == store.INDEX_FROM + 6
    index._matrix[:] = index._matrix[::-1].copy()  # a copy that no longer matches the file
    again = recall(con, vec("flaky sockets pitfall"), now, embedder=EMBEDDER.name, index=index)
    assert [x.id for x in again] == [x.id for x in found]  # answered by the full scan
    assert len(index) == 0  # dropped ...
    recall(con, vec("flaky sockets pitfall"), now, embedder=EMBEDDER.name, index=index)
    assert len(index) == store.INDEX_FROM + 6  # ... and loaded again by the next recall
