"""The memory shoal holds after a task: the orchestrator, its forkserver and its actors.

Run it from the repository root (shoal installed)::

    python3 scripts/bench_footprint.py

Under a fresh temporary ``SHOAL_HOME`` it runs one scripted task (a read and a
finish), then sums the proportional set size (PSS: shared pages counted in
shares, so the forkserver's copy-on-write children are not counted twice) and the
resident size of every process of the orchestrator's tree, twice: a few seconds
after the task (the loop's actors still up), and once the idle actors were
retired (``actor_idle_retire``, set to 2 s here; 300 s by default). Then it runs a
second task and reports how long it took to reach its first model request with
the actors forked again. Everything it started is stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shoal import daemon
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home

RETIRE_AFTER = 2.0


def _children(pid: int) -> list[int]:
    found = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found += _children(int(entry))
    return found


def _memory(pid: int) -> tuple[float, float]:
    """(PSS, RSS) in MB of ``pid``."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return 0.0, 0.0
    kb = {line.split(":")[0]: int(line.split()[1]) for line in lines if line.endswith("kB")}
    return kb.get("Pss", 0) / 1024, kb.get("Rss", 0) / 1024


def _held(home: Home) -> tuple[float, float, int]:
    pid = daemon.running_pid(home)
    assert pid is not None
    pids = _children(pid)
    sizes = [_memory(p) for p in pids]
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes), len(pids)


def _call(name: str, **arguments: object) -> dict[str, object]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def _repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("x = 1\n")
    ident = ["-c", "user.name=b", "-c", "user.email=b@b"]
    for args in (["init", "-q"], ["add", "-A"], [*ident, "commit", "-qm", "start"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    return repo


def _run(repo: Path, env: dict[str, str], server: ScriptedModelServer) -> float:
    """Seconds from launching ``shoal run`` to the planner's request arriving."""
    before = len(server.requests)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", "read a.py", "-C", str(repo), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while len(server.requests) == before and proc.poll() is None:
        time.sleep(0.002)
    first = time.monotonic() - started
    proc.wait(timeout=120)
    return first


def main() -> None:
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [_call("submit_plan", steps=[{"title": "read a.py"}])],
                "scripted-executor": [_call("read_file", path="a.py"), _call("finish")],
                "scripted-evaluator": [_call("submit_evaluation", score=0.95, findings=[])],
            }
        }
    )
    root = Path(tempfile.mkdtemp(prefix="/tmp/shB"))
    home = Home.resolve(root / "h")
    try:
        with ScriptedModelServer(script) as server:
            env = {
                **os.environ,
                "SHOAL_HOME": str(home.root),
                "SHOAL_PLANNER_MODEL": "openai/scripted-planner",
                "SHOAL_EXECUTOR_MODEL": "openai/scripted-executor",
                "SHOAL_EVALUATOR_MODEL": "openai/scripted-evaluator",
                "SHOAL_BASE_URL": server.base_url,
                "SHOAL_ACTOR_IDLE_RETIRE": str(RETIRE_AFTER),
            }
            repo = _repo(root)
            _run(repo, env, server)
            time.sleep(0.5)
            up = _held(home)
            time.sleep(RETIRE_AFTER + 3)
            retired = _held(home)
            again = _run(repo, env, server)
        print("memory held by the orchestrator's processes after a task")
        print(f"  actors up          PSS {up[0]:6.0f} MB  RSS {up[1]:6.0f} MB  {up[2]} processes")
        print(f"  idle retired       PSS {retired[0]:6.0f} MB  RSS {retired[1]:6.0f} MB  "
              f"{retired[2]} processes  (target PSS <= 400 MB)")  # fmt: skip
        print(f"next task, shoal run -> first model request: {again:.3f} s (actors forked again)")
    finally:
        os.environ["SHOAL_HOME"] = str(home.root)
        daemon.stop(home)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
