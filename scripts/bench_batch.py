"""Benchmark batch refactors: units per second on local Ray (1 and 2 workers) and on the
local process pool, and what starting a local Ray costs.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``)::

    python3 scripts/bench_batch.py                 # a table (progress on stderr)
    python3 scripts/bench_batch.py --units 50      # a quicker run
    python3 scripts/bench_batch.py --json          # one JSON object

What it does, under a fresh temporary ``SHOAL_HOME``:

1. A git repository with ``--units`` files (``m000.py`` ...), and a scripted,
   OpenAI-compatible model (``shoal.llm.scripted``) whose executor answers each
   unit once, after ``--delay`` seconds (50 ms by default), with the whole unit:
   ``read_file``, ``edit_file``, ``finish``. Routes give each unit its own
   conversation. No verify command and no judge: the figures are shoal's own
   cost per unit (an isolated ``git clone --shared``, the executor's tool loop,
   two snapshots and a patch) plus the model's delay.
2. Ray's start-up: a private local Ray (``num_cpus=2``) started by shoal's own
   code (``python -m shoal.cluster.ray_runtime``), timed from ``ray.init`` to
   ready; the batches below join it with ``--ray-address``, so each figure
   includes joining (reported) but not starting.
3. The same batch through the real CLI (``shoal batch ... --json``) on the local
   pool with 1 and 2 workers, and on Ray with 1 and 2 workers (``--dry-run``:
   patches only, so every run starts from the same repository). For each: the
   batch's wall time as the driver measured it (recording, context recall,
   getting the backend ready, the units, the workers' one-time import of
   litellm), units per second over it, the backend's ready time and the median
   time of one unit inside its worker.

Ratios are against the local pool with 1 worker, measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_repo(root: Path, n: int) -> tuple[Path, list[str]]:
    repo = root / "repo"
    repo.mkdir()
    names = [f"m{i:03d}.py" for i in range(n)]
    for name in names:
        (repo / name).write_text("def value():\n    return 0\n")
    for cmd in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "start"],
    ):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True)
    return repo, names


def script(names: list[str], delay: float) -> Any:
    from shoal.llm.script import Script

    def unit(name: str) -> dict[str, Any]:
        edit = {"path": name, "old_string": "return 0", "new_string": "return 1"}
        calls = [
            {"name": "read_file", "arguments": {"path": name}},
            {"name": "edit_file", "arguments": edit},
            {"name": "finish", "arguments": {"summary": "done"}},
        ]
        return {"tool_calls": calls, "delay": delay}

    routes = {f"unit: {n})": [unit(n)] for n in names}
    return Script.model_validate(
        {"models": {"scripted-executor": {"routes": routes, "replies": ["no route"]}}}
    )


def start_ray(root: Path) -> tuple[subprocess.Popen[str], str, float, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal.cluster.ray_runtime", "--home", str(root), "--num-cpus", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SHOAL_HOME": str(root)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line and line[0] == "address", f"Ray did not start: {line}"
    return proc, line[1], float(line[2]), time.monotonic() - t0


def run_batch(repo: Path, home: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "shoal", "batch", "make value() return 1", "--files", "m*.py"]
    cmd += ["-C", str(repo), "--json", "--quiet", "--dry-run", *args]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env={**env, "SHOAL_HOME": str(home)}, timeout=3600
    )
    if result.returncode != 0:
        raise SystemExit(f"batch failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def rates(out: dict[str, Any]) -> dict[str, float]:
    """Units/s over the whole batch, the backend's ready time, the median unit."""
    units = out["unit_results"]
    total = out["duration_s"]
    durations = sorted(u["duration_s"] for u in units)
    return {
        "wall_s": total,
        "units_per_s": len(units) / total,
        "backend_start_s": out["backend_start_s"],
        "median_unit_s": durations[len(durations) // 2],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from shoal import daemon
    from shoal.llm.scripted import ScriptedModelServer
    from shoal.paths import Home
    from shoal.settings import OrchestratorSettings

    work = Path(tempfile.mkdtemp(prefix="/tmp/shB-"))
    home = work / "h"
    ray_home = work / "r"
    repo, names = make_repo(work, args.units)
    results: dict[str, Any] = {"units": args.units, "model_delay_s": args.delay}
    ray_proc = None
    try:
        with ScriptedModelServer(script(names, args.delay)) as server:
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
                ),
                "SHOAL_EXECUTOR_MODEL": "openai/scripted-executor",
                "SHOAL_BASE_URL": server.base_url,
                "SHOAL_IDLE_TIMEOUT": "0",
                "SHOAL_PRELOAD": ",".join(
                    OrchestratorSettings.model_fields["preload"].default_factory()
                ),
            }
            os.environ.update({k: env[k] for k in ("PYTHONPATH",)})
            log = sys.stderr
            log.write("starting a local Ray (num_cpus=2)...\n")
            ray_proc, address, init_s, ready_s = start_ray(ray_home)
            results["ray_start"] = {"ray_init_s": init_s, "process_to_ready_s": ready_s}
            runs = [
                ("local pool, 1 worker", ["--backend", "local", "--workers", "1"]),
                ("local pool, 2 workers", ["--backend", "local", "--workers", "2"]),
                ("ray, 1 worker", ["--backend", "ray", "--ray-address", address, "--workers", "1"]),
                (
                    "ray, 2 workers",
                    ["--backend", "ray", "--ray-address", address, "--workers", "2"],
                ),
            ]
            for label, extra in runs:
                log.write(f"{label}: {args.units} units...\n")
                out = run_batch(repo, home, env, *extra)
                if out["accepted"] != args.units:
                    raise SystemExit(f"{label}: only {out['accepted']} units accepted")
                results[label] = rates(out)
    finally:
        with contextlib.suppress(Exception):
            daemon.stop(Home.resolve(home))
        if ray_proc is not None:
            assert ray_proc.stdin is not None
            ray_proc.stdin.close()
            ray_proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)

    base = results["local pool, 1 worker"]["units_per_s"]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"shoal batch benchmark ({os.cpu_count()} CPUs, {args.units} units, "
        f"{args.delay * 1000:.0f} ms scripted model)"
    )
    start = results["ray_start"]
    print(f"{'ray start-up (ray.init, local, num_cpus=2)':48} {start['ray_init_s']:8.2f} s")
    print(f"{'ray start-up (process start to ready)':48} {start['process_to_ready_s']:8.2f} s")
    for label in (
        "local pool, 1 worker",
        "local pool, 2 workers",
        "ray, 1 worker",
        "ray, 2 workers",
    ):
        r = results[label]
        print(
            f"{label:30} {r['units_per_s']:7.2f} units/s  {r['units_per_s'] / base:5.2f}x  "
            f"wall {r['wall_s']:6.1f} s  backend ready {r['backend_start_s']:5.2f} s  "
            f"median unit {r['median_unit_s']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
