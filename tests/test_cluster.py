"""shoal on a real multi-node Ray cluster on this machine: a head (no CPUs) and two worker
nodes, each a ``ray start`` process, all on 127.0.0.1 (see tests/cluster_nodes.py).

The worker nodes run in private mount namespaces with an empty /tmp, so for shoal they are
other hosts: the repositories and SHOAL_HOME of the tests (under /tmp) and the mailbox's
ipc socket are not there. The module starts the cluster once; a test that kills a node
leaves the next one a fresh node in its place (``two_workers``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import daemon
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.mailbox import curve
from shoal.paths import Home
from tests.cluster_nodes import LocalCluster
from tests.conftest import shoal, wait_for
from tests.test_batch import INSTRUCTION, executor_requests, make_repo, script, units_of

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # Outside /tmp: the worker nodes share this (Ray's temp dirs, a bare repository).
    root = Path(tempfile.mkdtemp(prefix=f"shC{os.getpid()}-", dir="/var/tmp"))
    nodes = LocalCluster(root, hide_tmp=True)
    try:
        nodes.start(workers=2)
        (root / "shared").mkdir()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def two_workers(cluster: LocalCluster) -> LocalCluster:
    """The cluster with two live worker nodes (a node killed by an earlier test replaced)."""
    while len(cluster.live_workers()) < 2:
        cluster.add_worker(wait=False)
    cluster.wait_nodes()
    return cluster


def node_of_unit(unit: dict[str, Any]) -> str:
    """The Ray node a unit ran on, from its ``worker`` ("host:pid node <id>")."""
    worker = unit["worker"] or ""
    assert " node " in worker, worker
    return worker.split(" node ", 1)[1]


def bare_copy(repo: Path, where: Path) -> str:
    """A bare clone of ``repo`` the worker nodes can read: its file:// URL."""
    bare = where / f"{repo.parent.name}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    return f"file://{bare}"


def branch_log(repo: Path, branch: str) -> list[tuple[str, list[str]]]:
    """(subject, files) of each commit the batch put on ``branch``, oldest first."""
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--reverse", "--format=%x00%s", "--name-only",
         f"main..{branch}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    commits = []
    for chunk in out.split("\0")[1:]:
        subject, *files = [line for line in chunk.splitlines() if line]
        commits.append((subject, files))
    return commits


@contextlib.contextmanager
def shoal_process(*args: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """The CLI in a subprocess the test can act on while it runs; killed if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def batch_env(server: ScriptedModelServer) -> dict[str, str]:
    return {"SHOAL_EXECUTOR_MODEL": "openai/scripted-executor", "SHOAL_BASE_URL": server.base_url}


def test_units_run_on_the_worker_nodes_which_clone_the_repository_by_url_where_paths_differ(
    home: Home, tmp_path: Path, two_workers: LocalCluster
) -> None:
    cluster = two_workers
    repo, names = make_repo(tmp_path, 6)
    url = bare_copy(repo, cluster.root / "shared")
    # The verify runs on the worker: it proves the unit's node does not have the repository.
    verify = f"test ! -e {repo} && python check.py"
    with ScriptedModelServer(script(names, delays=dict.fromkeys(names, 0.5))) as server:
        lonely = shoal(
            "batch", INSTRUCTION, "--files", "m00.py", "-C", str(repo), "--backend", "ray",
            "--ray-address", cluster.address, "--dry-run", "--json",
            env=batch_env(server), timeout=240,
        )  # fmt: skip
        result = shoal(
            "batch", INSTRUCTION, "--files", "m*.py", "-C", str(repo), "--backend", "ray",
            "--ray-address", cluster.address, "--repo-url", url, "--workers", "2",
            "--verify", verify, "--json",
            env=batch_env(server), timeout=240,
        )  # fmt: skip
        requests = executor_requests(server)
    # Without a URL a worker says why it cannot clone, instead of using another repository.
    assert lonely.returncode == 1, lonely.stderr[-3000:]
    (unit,) = json.loads(lonely.stdout)["unit_results"]
    assert unit["status"] == "failed" and "is not on this worker's node" in unit["error"]
    assert "--repo-url" in unit["error"]

    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["status"] == "done" and out["accepted"] == 6 and out["ran"] == 6
    assert requests == Counter(dict.fromkeys(names, 1))
    rows = units_of(home, out["batch_id"])
    where = {name: node_of_unit(row) for name, row in rows.items()}
    workers = {w.node_id for w in cluster.live_workers()}
    assert set(where.values()) == workers, (where, workers)  # both worker nodes, not the head
    assert all(row["verify_passed"] for row in rows.values())
    # The accepted patches are committed in the driver's repository, one commit per unit.
    commits = branch_log(repo, out["branches"][str(repo)])
    assert [files for _, files in commits] == [[n] for n in names]


def test_a_worker_node_killed_mid_batch_has_its_unit_run_again_on_the_other_node_once(
    home: Home, tmp_path: Path, two_workers: LocalCluster
) -> None:
    from tests.test_batch import unit_workers

    cluster = two_workers
    repo, names = make_repo(tmp_path, 8)
    url = bare_copy(repo, cluster.root / "shared")
    command = [
        *("batch", INSTRUCTION, "--files", "m*.py", "-C", str(repo), "--backend", "ray"),
        *("--ray-address", cluster.address, "--repo-url", url, "--workers", "2"),
        *("--verify", "python check.py", "--json"),
    ]
    with (
        ScriptedModelServer(script(names, delays=dict.fromkeys(names, 1.5))) as server,
        shoal_process(*command, env=batch_env(server)) as proc,
    ):
        # Both nodes at work; then the node of one unit in the middle of its model call dies.
        wait_for(lambda: len(executor_requests(server)) >= 2, timeout=150, what="two units")

        def running() -> tuple[str, list[int]] | None:
            # The unit asked last, if its worker still runs it (an earlier one may be done:
            # a unit found and its worker looked up in two looks would race its end).
            for unit in reversed(list(executor_requests(server))):
                if pids := unit_workers(unit):
                    return unit, pids
            return None

        found = wait_for(running, timeout=60, interval=0.05, what="a unit at work")
        assert isinstance(found, tuple)
        victim, pids = found
        node = cluster.node_of(pids[0])
        assert node in cluster.live_workers(), node
        cluster.kill(node)
        stdout, stderr = proc.communicate(timeout=240)
        requests = executor_requests(server)
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout)
    assert out["status"] == "done" and out["accepted"] == 8 and out["lost"] == 0
    assert out["ran"] == 9  # the victim twice, every other unit once
    assert requests == Counter({n: 2 if n == victim else 1 for n in names})
    rows = units_of(home, out["batch_id"])
    assert rows[victim]["attempts"] == 2
    survivor = next(w for w in cluster.live_workers() if w is not node)
    assert node_of_unit(rows[victim]) == survivor.node_id
    assert all(r["status"] == "accepted" and r["verify_passed"] for r in rows.values())
    # In the result branch every unit is there once: none lost, none done twice.
    commits = branch_log(repo, out["branches"][str(repo)])
    assert sorted(files[0] for _, files in commits) == names
    assert all(len(files) == 1 for _, files in commits)
    subprocess.run(
        ["git", "-C", str(repo), "checkout", "-q", out["branches"][str(repo)]], check=True
    )
    for name in names:
        assert (repo / name).read_text() == "def value():\n    return 1\n"


# --- planner, executor and evaluator as Ray actors on the worker nodes ----------------


def fix_script(first_delay: float = 0.0) -> Script:
    """Plan, fix calc.py (after ``first_delay`` on the executor's first call), judge 0.95.

    The executor's first reply only reads: an executor killed while waiting for it
    leaves the next one the whole job, which the following replies do."""
    from tests.test_loop import call, plan, verdict

    executor = [
        {**call("read_file", path="calc.py"), "delay": first_delay},
        call("read_file", path="calc.py"),
        call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
        call("finish", summary="add now adds"),
    ]
    return Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": {"replies": executor, "repeat_last": False},
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )


def run_on_cluster(
    cluster: LocalCluster, server: ScriptedModelServer, repo: Path, description: str
) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    """``shoal run --backend ray --ray-address ...``: the orchestrator it starts joins the
    cluster and binds its mailbox on loopback TCP (CurveZMQ) for the actors there."""
    from tests.test_loop import model_env

    return shoal_process(
        *("run", description, "-C", str(repo), "--json"),
        *("--backend", "ray", "--ray-address", cluster.address),
        env={**model_env(server), "SHOAL_MAILBOX_TCP": "127.0.0.1:0"},
    )


def loop_actors(home: Home) -> dict[str, Any]:
    """role -> the status of its (one) actor."""
    actors = daemon.status(home).actors
    return {a.role: a for a in actors if a.role in ("planner", "executor", "evaluator")}


def shared_repo(cluster: LocalCluster, tmp_path: Path) -> Path:
    """The calc repository where the worker nodes see it too (executors work in it)."""
    from tests.test_loop import make_repo as calc_repo

    return calc_repo(Path(tempfile.mkdtemp(dir=cluster.root / "shared")))


def test_loop_actors_on_worker_nodes_reach_the_mailbox_over_curve_tcp_and_it_is_all_encrypted(
    home: Home, two_workers: LocalCluster
) -> None:
    from tests.capture import LoopbackCapture

    cluster = two_workers
    repo = shared_repo(cluster, Path())
    marker = f"ticket-{os.urandom(6).hex()}"
    with (
        ScriptedModelServer(fix_script()) as server,
        LoopbackCapture() as capture,
        run_on_cluster(cluster, server, repo, f"fix the add function ({marker})") as proc,
    ):
        stdout, stderr = proc.communicate(timeout=240)
        actors = loop_actors(home)
        endpoint = curve.tcp_file(home).read_text().strip()
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout)
    assert out["status"] == "accepted" and out["files_changed"] == ["calc.py"]
    assert "a + b" in (repo / "calc.py").read_text()
    workers = cluster.live_workers()
    for role, actor in actors.items():
        assert actor.launcher == "ray" and actor.pid, (role, actor)
        # On a worker node, which sees no ipc socket: it ran with a scratch home of its own.
        assert cluster.node_of(actor.pid) in workers, role
        environ = Path(f"/proc/{actor.pid}/environ").read_bytes().split(b"\0")
        assert f"SHOAL_HOME={home.root}".encode() not in environ, role

    port = int(endpoint.rsplit(":", 1)[1])
    mailbox = capture.streams(port)
    model = b"".join(capture.streams(server.port))
    # The capture sees plaintext where there is some: the task, on its way to the model.
    assert marker.encode() in model
    # The actors' streams to the mailbox: CURVE greetings, then nothing readable.
    assert len(mailbox) >= 6 and sum(map(len, mailbox)) > 20_000, [len(s) for s in mailbox]
    assert all(b"CURVE" in stream[:64] for stream in mailbox)
    for secret in (marker, "exec.request", "plan.request", "calc.py", "executor-1", "a + b"):
        assert not any(secret.encode() in stream for stream in mailbox), secret


def test_a_worker_node_killed_mid_task_has_its_executor_restarted_on_the_other_node(
    home: Home, two_workers: LocalCluster
) -> None:
    cluster = two_workers
    repo = shared_repo(cluster, Path())
    with (
        ScriptedModelServer(fix_script(first_delay=8.0)) as server,
        run_on_cluster(cluster, server, repo, "fix the add function") as proc,
    ):
        wait_for(
            lambda: server.requests_for("scripted-executor"),
            timeout=150,
            what="the executor's first model call",
        )
        first = loop_actors(home)["executor"]
        node = cluster.node_of(first.pid)
        assert node in cluster.live_workers(), node
        cluster.kill(node)
        stdout, stderr = proc.communicate(timeout=240)
        actors = loop_actors(home)
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout)
    assert out["status"] == "accepted" and out["iterations"] == 1
    assert "a + b" in (repo / "calc.py").read_text()
    executor = actors["executor"]
    assert executor.name == first.name and executor.restarts >= 1
    survivor = next(w for w in cluster.live_workers() if w is not node)
    assert cluster.node_of(executor.pid) is survivor
    # The new instance did the work from the start: the read after the kill, then the edit.
    assert len(server.requests_for("scripted-executor")) == 4
