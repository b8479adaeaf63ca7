"""Benchmark team runs: the same 8 independent subtasks on 1 executor and on 4.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``)::

    python3 scripts/bench_team.py            # a table
    python3 scripts/bench_team.py --json     # one JSON object

A git repository with 8 small files, each with one bug, and a scripted model
server whose every reply takes ``--latency`` seconds (300 ms by default): the
planner splits the task into 8 subtasks (one file each), each subtask's executor
reads, edits and finishes (3 replies) and its judge answers once; the merged
result gets one final judgement. ``shoal team run --size N --json`` runs it
under a fresh ``SHOAL_HOME`` per size, after a warm-up run that starts the
orchestrator and its actors, so both sizes are measured warm; each size is run
``--runs`` times (3) and its median counts, as one run can be 0.3 s off on a
busy two-core machine.

It prints the wall time of each size, the speedup of 4 executors over 1 (target
>= 3.2x; the limit is 4x), and the model-time floor for each size: the replies
that must happen one after another (planner, per-subtask chains, final judge).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer

SUBTASKS = 8
SETTLE_S = 2.0


def _call(name: str, delay: float, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}], "delay": delay}


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    for i in range(SUBTASKS):
        (repo / f"m{i}.py").write_text(f"def f{i}(x):\n    return x - {i}\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "start"]):
        subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@b", *args],
            check=True,
        )
    return repo


def script(latency: float) -> Script:
    subtasks = [
        {"id": f"s{i}", "title": f"fix m{i}.py", "files": [f"m{i}.py"]} for i in range(SUBTASKS)
    ]
    routes = {
        f"subtask s{i} ": [
            _call("read_file", latency, path=f"m{i}.py"),
            _call("edit_file", latency, path=f"m{i}.py", old_string=f"x - {i}",
                  new_string=f"x + {i}"),
            _call("finish", latency, summary=f"fixed m{i}.py"),
        ]
        for i in range(SUBTASKS)
    }  # fmt: skip
    verdict = _call("submit_evaluation", latency, score=0.95, dimensions={}, findings=[])
    return Script.model_validate(
        {
            "models": {
                "bench-planner": [
                    _call("submit_plan", latency, steps=[{"title": "fix"}], subtasks=subtasks)
                ],
                "bench-executor": {"routes": routes},
                "bench-evaluator": [verdict],
            }
        }
    )


def run(home: Path, server: ScriptedModelServer, size: int, root: Path) -> float:
    repo = make_repo(root / f"size{size}-{time.monotonic_ns()}")
    env = {
        **os.environ,
        "SHOAL_HOME": str(home),
        "SHOAL_PLANNER_MODEL": "openai/bench-planner",
        "SHOAL_EXECUTOR_MODEL": "openai/bench-executor",
        "SHOAL_EVALUATOR_MODEL": "openai/bench-evaluator",
        "SHOAL_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-bench",
    }
    # As a user's Python does: the warm-up writes the bytecode the measured runs read
    # (with this set, every process compiled each module it imports, ~15 ms a start).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "team", "run", "fix the bugs", "-C", str(repo),
         "--size", str(size), "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    out = json.loads(proc.stdout)
    merged = [s for s in out["subtasks"] if s["status"] == "accepted"]
    if out["status"] != "accepted" or len(merged) != SUBTASKS:
        raise SystemExit(f"size {size}: the run did not succeed: {proc.stdout}{proc.stderr}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per model reply")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per size (median)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="shb-"))
    figures: dict[str, Any] = {"latency_s": args.latency, "subtasks": SUBTASKS}
    try:
        for size in (1, 4):
            home = root / f"h{size}"
            home.mkdir(mode=0o700)
            # One server (its address is part of the orchestrator's model settings, so a
            # new one would restart it), rewound before each run. The first run is a
            # warm-up: orchestrator, forkserver, actors.
            walls = []
            with ScriptedModelServer(script(args.latency)) as server:
                for _ in range(1 + args.runs):
                    server.rewind()
                    walls.append(run(home, server, size, root))
                    # Tasks make the orchestrator mine patterns once it is idle (every
                    # fifth task); let that end rather than time it.
                    time.sleep(SETTLE_S)
            measured = walls[1:]  # the first run is the warm-up
            figures[f"size{size}_runs_s"] = [round(w, 2) for w in measured]
            figures[f"size{size}_s"] = round(statistics.median(measured), 2)
            subprocess.run(
                [sys.executable, "-m", "shoal", "orchestrator", "stop"],
                env={**os.environ, "SHOAL_HOME": str(home)},
                capture_output=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per_subtask = 4 * args.latency  # read, edit, finish, judge
    for size in (1, 4):
        waves = -(-SUBTASKS // size)
        figures[f"size{size}_model_floor_s"] = round(2 * args.latency + waves * per_subtask, 2)
    figures["speedup_4_over_1"] = round(figures["size1_s"] / figures["size4_s"], 2)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{SUBTASKS} subtasks, {args.latency * 1000:.0f} ms per model reply")
    for size in (1, 4):
        print(
            f"  {size} executor(s): {figures[f'size{size}_s']:6.2f} s median of "
            f"{figures[f'size{size}_runs_s']} "
            f"(model floor {figures[f'size{size}_model_floor_s']:.2f} s)"
        )
    print(f"  speedup 4 over 1: {figures['speedup_4_over_1']:.2f}x (target >= 3.2x, limit 4x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
