"""Benchmark batch refactors on a real multi-node Ray cluster on this machine.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``)::

    python3 scripts/bench_cluster.py                  # a table (progress on stderr)
    python3 scripts/bench_cluster.py --units 60       # a quicker run
    python3 scripts/bench_cluster.py --json           # one JSON object
    python3 scripts/bench_cluster.py --only mailbox   # just step 5 (seconds)
    python3 scripts/bench_cluster.py --only recovery  # just steps 4 and 5

Each stage's figures are also written to stderr as one JSON line when it ends.

What it does, under a fresh temporary ``SHOAL_HOME``:

1. A git repository with ``--units`` files and a scripted, OpenAI-compatible model
   whose executor answers each unit once, after ``--delay`` seconds (300 ms by
   default), with the whole unit (``read_file``, ``edit_file``, ``finish``). No
   verify command, no judge, ``--dry-run``: every run starts from the same repository.
2. For 1, 2 and 4 worker nodes: a cluster of ``ray start`` processes on 127.0.0.1
   (a head with no CPUs, worker nodes of one CPU each: tests/cluster_nodes.py), then
   the batch through the real CLI (``shoal batch ... --ray-address`` with as many
   ``--workers`` as nodes), then, in the same cluster, Ray on its own: as many Ray
   tasks that only sleep ``--delay`` (the model's time) from a fresh driver, and the
   median round trip of a no-op task. Units/s are over the units' part of the batch
   (its wall time less getting the backend ready); the per-unit overhead shoal adds
   is ``(shoal's units wall - Ray's sleeping tasks' wall) * nodes / units``: worker
   time per unit beyond the model's delay and Ray's own task cost (the isolated
   clone, the executor's tool loop, two snapshots and a patch, recording the unit,
   and each new worker's imports spread over the units).
3. ``--backend local`` with 1, 2 and 4 workers: the same batch on the local pool.
4. Recovery after a node is lost: a batch of ``--kill-units`` units on two nodes; once
   a quarter of them are done, the node running one of them is killed (its whole
   process tree, SIGKILL). Reported: seconds from the kill until that unit's model
   call is made again from the other node (Ray reports the task failed, the driver
   queues the unit again, Ray places it on a node that is alive). ``--kills`` runs
   with Ray's default node health checks (every 3 s, dead after 5 misses), as many
   with the head checking every second and giving up after 3 misses.

5. (Run first.) The mailbox over TCP with CurveZMQ, as an actor on another node reaches it: an
   orchestrator with ``mailbox_tcp`` on 127.0.0.1 and an echo actor; the median round
   trip of a 100-byte ``echo.request`` from a client on ipc and from one on TCP with the
   team's Curve keys (in alternating blocks, so other load weighs on both alike), and
   from a new client's connect to its first reply (the Curve handshake included). The
   echo actor stays on ipc: two of the round trip's four hops cross TCP, as they do for
   each message between a remote actor and a local one.

Ratios are against the local pool with 1 worker, measured in the same run. On a
machine with fewer cores than nodes the nodes share them: the figures then show
what oversubscription costs, not what more machines would bring.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

RAY_ALONE = """
import json, statistics, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
units, delay = int(sys.argv[2]), float(sys.argv[3])

@ray.remote(num_cpus=1, max_retries=0)
def unit(seconds):
    time.sleep(seconds)

@ray.remote(num_cpus=1, max_retries=0)
def noop():
    return 0

t0 = time.perf_counter()
ray.get([unit.remote(delay) for _ in range(units)])
wall = time.perf_counter() - t0
trips = []
for _ in range(50):
    t = time.perf_counter()
    ray.get(noop.remote())
    trips.append(time.perf_counter() - t)
print(json.dumps({"sleep_wall_s": wall, "noop_round_trip_s": statistics.median(trips)}))
"""


def run_batch(work: Path, repo: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "shoal", "batch", "make value() return 1", "--files", "m*.py"]
    cmd += ["-C", str(repo), "--json", "--quiet", "--dry-run", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=work
    )


def finish(proc: subprocess.Popen[str], units: int, label: str) -> dict[str, Any]:
    stdout, stderr = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{label}: batch failed ({proc.returncode}):\n{stderr[-3000:]}")
    out = json.loads(stdout)
    if out["accepted"] != units:
        raise SystemExit(f"{label}: only {out['accepted']} of {units} units accepted")
    return out


def figures(out: dict[str, Any], slots: int) -> dict[str, float]:
    units = out["unit_results"]
    work = out["duration_s"] - out["backend_start_s"]
    durations = sorted(u["duration_s"] for u in units)
    return {
        "wall_s": out["duration_s"],
        "backend_start_s": out["backend_start_s"],
        "units_wall_s": work,
        "units_per_s": len(units) / work,
        "median_unit_s": durations[len(durations) // 2],
        "slots": slots,
    }


def ray_alone(address: str, units: int, delay: float, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", RAY_ALONE, address, str(units), str(delay)],
        capture_output=True,
        text=True,
        env={**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"Ray alone failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def on_cluster(
    work: Path, repo: Path, env: dict[str, str], nodes: int, units: int, delay: float
) -> dict[str, Any]:
    from tests.cluster_nodes import LocalCluster

    cluster = LocalCluster(work / f"ray{nodes}")
    t0 = time.monotonic()
    try:
        cluster.start(workers=nodes)
        started = time.monotonic() - t0
        label = f"ray, {nodes} node(s)"
        extra = ("--backend", "ray", "--ray-address", cluster.address, "--workers", str(nodes))
        result = figures(finish(run_batch(work, repo, env, *extra), units, label), nodes)
        alone = ray_alone(cluster.address, units, delay, env)
    finally:
        cluster.stop()
    overhead = (result["units_wall_s"] - alone["sleep_wall_s"]) * nodes / units
    return {**result, "cluster_start_s": started, "ray_alone": alone, "overhead_s": overhead}


# Ray's defaults: the head checks each node every 3 s and gives up on it after 5 misses.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def recovery(
    work: Path,
    repo: Path,
    env: dict[str, str],
    units: int,
    server: Any,
    head_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Kill one of two nodes a quarter into a batch: how long until its unit runs again.

    A unit can finish between being picked and its node dying; then nothing runs again
    and the run is made anew (at most three times)."""
    for attempt in range(3):
        found = _kill_one(work, repo, env, units, server, head_env, attempt)
        if found is not None:
            return found
        sys.stderr.write("  the unit finished before its node died; again\n")
    raise SystemExit("three node kills in a row came after their unit had finished")


def _kill_one(
    work: Path,
    repo: Path,
    env: dict[str, str],
    units: int,
    server: Any,
    head_env: dict[str, str] | None,
    attempt: int,
) -> dict[str, Any] | None:
    from tests.cluster_nodes import LocalCluster
    from tests.test_batch import executor_requests

    cluster = LocalCluster(work / f"ray-kill-{len(head_env or {})}-{attempt}", head_env=head_env)
    try:
        cluster.start(workers=2)
        extra = ("--backend", "ray", "--ray-address", cluster.address, "--workers", "2")
        before = executor_requests(server)  # the earlier runs' requests (same unit names)
        proc = run_batch(work, repo, env, *extra)
        victim, node = _victim(proc, server, before, units, cluster)
        killed = time.monotonic()
        cluster.kill(node)
        while (executor_requests(server) - before)[victim] < 2:
            if proc.poll() is not None:
                return None
            time.sleep(0.005)
        rerun = time.monotonic() - killed
        out = finish(proc, units, "ray, 2 nodes, one killed")
    finally:
        cluster.stop()
    by = {u["name"]: u for u in out["unit_results"]}
    return {"rerun_after_s": rerun, "wall_s": out["duration_s"], "attempts": by[victim]["attempts"]}


def _victim(
    proc: subprocess.Popen[str], server: Any, before: Any, units: int, cluster: Any
) -> tuple[str, Any]:
    """A unit asked the model once, a quarter into the batch, with its worker pid and
    node read in one look (the unit may end at any moment after)."""
    from tests.test_batch import executor_requests, unit_workers

    while True:
        if proc.poll() is not None:
            raise SystemExit("the batch ended before a node could be killed")
        asked = executor_requests(server) - before
        if sum(asked.values()) >= units // 4:
            for name in [n for n, c in asked.items() if c == 1]:
                for pid in unit_workers(name):
                    node = cluster.node_of(pid)
                    if node is not None and node in cluster.workers:
                        return name, node
        time.sleep(0.01)


MAILBOX_BLOCKS = 10
MAILBOX_ROUND_TRIPS = 300  # per block and transport
MAILBOX_CONNECTS = 30


def mailbox_over_tcp(work: Path) -> dict[str, float]:
    """Round trips to an echo actor from a client on ipc and one on TCP + CurveZMQ."""
    from shoal import daemon
    from shoal.mailbox import curve
    from shoal.mailbox.client import MailboxClient
    from shoal.messages.actors import ActorSpawn, ActorSpawnResult, EchoRequest
    from shoal.paths import Home

    home = Home.resolve(work / "hm")
    daemon.start(home, env={"SHOAL_MAILBOX_TCP": "127.0.0.1:0", "SHOAL_IDLE_TIMEOUT": "0"})
    try:
        spawned = daemon.request(home, ActorSpawn(role="echo", count=1), timeout=60.0)
        assert isinstance(spawned, ActorSpawnResult)
        echo, text = spawned.names[0], "x" * 100
        endpoints = {
            "ipc": (home.mailbox_endpoint, None),
            "tcp": (curve.tcp_file(home).read_text().strip(), curve.client_keys(home)),
        }

        def trips(client: MailboxClient, count: int) -> list[float]:
            times = []
            for i in range(count):
                t0 = time.perf_counter()
                client.request(echo, EchoRequest(text=text, seq=i), timeout=30.0)
                times.append(time.perf_counter() - t0)
            return times

        found: dict[str, list[float]] = {"ipc": [], "tcp": [], "ipc_new": [], "tcp_new": []}
        with contextlib.ExitStack() as stack:
            clients = {
                way: stack.enter_context(MailboxClient(endpoint, f"bench-{way}", keys))
                for way, (endpoint, keys) in endpoints.items()
            }
            for client in clients.values():
                trips(client, MAILBOX_ROUND_TRIPS)  # warm-up
            for _ in range(MAILBOX_BLOCKS):
                for way, client in clients.items():
                    found[way] += trips(client, MAILBOX_ROUND_TRIPS)
        for i in range(MAILBOX_CONNECTS):
            for way, (endpoint, keys) in endpoints.items():
                t0 = time.perf_counter()
                with MailboxClient(endpoint, f"bench-new-{way}-{i}", keys) as client:
                    client.request(echo, EchoRequest(text=text), timeout=30.0)
                found[f"{way}_new"].append(time.perf_counter() - t0)
    finally:
        daemon.stop(home)
    return {f"{key}_s": statistics.median(times) for key, times in found.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.3)
    parser.add_argument("--nodes", default="1,2,4", help="worker node counts, comma-separated")
    parser.add_argument("--kills", type=int, default=3, help="node-kill runs per setting")
    parser.add_argument("--kill-units", type=int, default=40, help="units of each such run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=["mailbox", "recovery"], help="run just this part")
    args = parser.parse_args()
    counts = [] if args.only else [int(n) for n in args.nodes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="/tmp/shK-"))
    results: dict[str, Any] = {
        "units": args.units,
        "model_delay_s": args.delay,
        "cpus": os.cpu_count(),
    }
    try:
        sys.stderr.write("the mailbox on ipc and on TCP with CurveZMQ...\n")
        results["mailbox"] = mailbox_over_tcp(work)
        sys.stderr.write(json.dumps({"mailbox": results["mailbox"]}) + "\n")
        if args.only != "mailbox":
            batches(work, args, counts, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    report(results, counts)
    return 0


def batches(
    work: Path, args: argparse.Namespace, counts: list[int], results: dict[str, Any]
) -> None:
    """Steps 2-4: the local pool, Ray on 1, 2 and 4 nodes (``counts``), and a node killed."""
    from bench_batch import make_repo, script

    from shoal import daemon
    from shoal.llm.scripted import ScriptedModelServer
    from shoal.paths import Home
    from shoal.settings import OrchestratorSettings

    home = work / "h"
    repo, names = make_repo(work, args.units)
    (work / "small").mkdir()
    small, _ = make_repo(work / "small", min(args.kill_units, args.units))
    log = sys.stderr
    try:
        with ScriptedModelServer(script(names, args.delay)) as server:
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
                ),
                "SHOAL_HOME": str(home),
                "SHOAL_EXECUTOR_MODEL": "openai/scripted-executor",
                "SHOAL_BASE_URL": server.base_url,
                "SHOAL_IDLE_TIMEOUT": "0",
                "SHOAL_PRELOAD": ",".join(
                    OrchestratorSettings.model_fields["preload"].default_factory()
                ),
            }
            for n in counts:
                log.write(f"local pool, {n} worker(s): {args.units} units...\n")
                extra = ("--backend", "local", "--workers", str(n))
                out = finish(run_batch(work, repo, env, *extra), args.units, "local")
                results[f"local, {n}"] = figures(out, n)
                log.write(json.dumps({f"local, {n}": results[f"local, {n}"]}) + "\n")
            for n in counts:
                log.write(f"ray, {n} worker node(s): cluster, batch, Ray alone...\n")
                results[f"ray, {n}"] = on_cluster(work, repo, env, n, args.units, args.delay)
                log.write(json.dumps({f"ray, {n}": results[f"ray, {n}"]}) + "\n")
            for key, head_env in (("node killed", None), ("fast checks", FAST_HEALTH_CHECKS)):
                if args.only not in (None, "recovery"):
                    break
                runs = []
                for i in range(args.kills):
                    log.write(f"ray, 2 worker nodes, one killed ({key}, {i + 1}/{args.kills})\n")
                    runs.append(recovery(work, small, env, args.kill_units, server, head_env))
                    log.write(json.dumps({key: runs[-1]}) + "\n")
                results[key] = runs
    finally:
        with contextlib.suppress(Exception):
            daemon.stop(Home.resolve(home))


def report(results: dict[str, Any], counts: list[int]) -> None:
    box = results["mailbox"]
    print(
        f"mailbox round trip to an echo actor: ipc {box['ipc_s'] * 1e6:.0f} us, "
        f"TCP+CurveZMQ {box['tcp_s'] * 1e6:.0f} us ({box['tcp_s'] / box['ipc_s']:.2f}x; "
        f"two of four hops on TCP); connect to first reply: ipc "
        f"{box['ipc_new_s'] * 1000:.1f} ms, TCP+CurveZMQ {box['tcp_new_s'] * 1000:.1f} ms"
    )
    if "node killed" not in results:
        return
    base = results[f"local, {counts[0]}"]["units_per_s"] if counts else 0.0
    print(
        f"shoal batch on a local Ray cluster ({results['cpus']} CPUs, {results['units']} units, "
        f"{results['model_delay_s'] * 1000:.0f} ms scripted model)"
    )
    for n in counts:
        r = results[f"local, {n}"]
        print(
            f"{f'local pool, {n} worker(s)':26} {r['units_per_s']:6.2f} units/s "
            f"{r['units_per_s'] / base:5.2f}x  median unit {r['median_unit_s']:.2f} s"
        )
    for n in counts:
        r = results[f"ray, {n}"]
        alone = r["ray_alone"]
        print(
            f"{f'ray, {n} worker node(s)':26} {r['units_per_s']:6.2f} units/s "
            f"{r['units_per_s'] / base:5.2f}x  median unit {r['median_unit_s']:.2f} s  "
            f"shoal's overhead {r['overhead_s'] * 1000:5.0f} ms/unit  "
            f"(Ray alone: {results['units'] / alone['sleep_wall_s']:.2f} sleeps/s, "
            f"no-op round trip {alone['noop_round_trip_s'] * 1000:.1f} ms; "
            f"cluster up in {r['cluster_start_s']:.1f} s, joined in {r['backend_start_s']:.1f} s)"
        )
    for label, key in (("node killed, Ray defaults", "node killed"),
                       ("node killed, checks 1 s x3", "fast checks")):  # fmt: skip
        waits = sorted(k["rerun_after_s"] for k in results[key])
        print(
            f"{label:26} its unit ran again after {waits[len(waits) // 2]:.2f} s (median of "
            f"{len(waits)} kills; {waits[0]:.2f}-{waits[-1]:.2f} s)"
        )


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
