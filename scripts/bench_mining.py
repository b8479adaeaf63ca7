"""Pattern mining over 10,000 task records: how long the pattern-miner's analysis takes.

    python3 scripts/bench_mining.py [--tasks 10000] [--json]

Task descriptions are generated from a few dozen templates (so real clusters
exist), each with a tool-call sequence and findings, then mined with the local
embedder exactly as the pattern-miner does (:func:`shoal.learning.mining.mine`).
"""

from __future__ import annotations

import argparse
import json
import random
import time

from shoal.learning.mining import MinedTask, mine
from shoal.memory.embedder import LocalEmbedder

VERBS = ["fix", "add", "refactor", "document", "test", "speed up", "rename", "remove"]
THINGS = [
    "the login form",
    "the CSV exporter",
    "the retry logic",
    "the CLI parser",
    "the cache layer",
    "the billing report",
    "the search index",
    "the upload handler",
]
TOOLS = ["read_file", "grep", "edit_file", "shell", "glob", "write_file", "git"]
FINDINGS = ["missing test", "unhandled error", "inconsistent naming", "no docs", "slow query"]


def tasks(n: int, rng: random.Random) -> list[MinedTask]:
    out = []
    for i in range(n):
        verb, thing = rng.choice(VERBS), rng.choice(THINGS)
        extra = rng.choice(["", " again", " for the new API", " before the release", ""])
        out.append(
            MinedTask(
                id=f"t{i:05d}",
                description=f"{verb} {thing}{extra}",
                score=rng.random(),
                tools=[rng.choice(TOOLS) for _ in range(rng.randint(3, 12))],
                findings=rng.sample(FINDINGS, rng.randint(0, 2)),
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    history = tasks(args.tasks, random.Random(7))
    embedder = LocalEmbedder()
    t0 = time.perf_counter()
    vectors = embedder.embed([t.description for t in history])
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    patterns = mine(
        history, lambda texts: vectors if len(texts) == len(vectors) else embedder.embed(texts)
    )
    mine_s = time.perf_counter() - t0
    kinds = {
        k: sum(p.kind == k for p in patterns) for k in ("task_cluster", "tool_sequence", "finding")
    }
    figures = {
        "tasks": args.tasks,
        "embed_s": round(embed_s, 3),
        "mine_s": round(mine_s, 3),
        "total_s": round(embed_s + mine_s, 3),
        "patterns": kinds,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"pattern mining over {args.tasks:,} task records")
    print(f"  embedding descriptions (local embedder)  {embed_s:8.3f} s")
    print(f"  mining (clusters, tool sequences, findings) {mine_s:6.3f} s")
    print(f"  total                                     {embed_s + mine_s:6.3f} s")
    print(f"  patterns: {kinds}")


if __name__ == "__main__":
    main()
