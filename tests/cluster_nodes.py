"""A real multi-node Ray cluster on this machine: ``ray start`` processes, loopback only.

The head offers no CPUs (as Ray advises for a cluster's head), so Ray tasks and
shoal's actor hosts run on the worker nodes. Each node is a ``ray start
--block`` process in a session of its own; killing a node kills its whole
process tree at once (raylet, Ray workers, what they started), as a lost
machine would lose it.

Worker nodes can be made as good as other hosts for shoal (``hide_tmp``): each
runs in a private mount namespace (``unshare -m``, root only) with an empty
tmpfs over ``/tmp``, so the driver's repositories, ``SHOAL_HOME`` and the
mailbox's ipc socket under /tmp are not there. Ray's own temp dir and anything
the nodes must share live under ``root`` outside /tmp. The network stays shared
(loopback), as a cluster's network is.

Used by ``tests/test_cluster.py`` and ``scripts/bench_cluster.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# `ray start` of the Ray this interpreter imports (a `ray` on PATH may be another's).
RAY = [sys.executable, "-m", "ray.scripts.scripts"]

# Starts a node after hiding /tmp from it: the mount is private to the new namespace.
_HIDE_TMP = 'mount -t tmpfs -o mode=1777 shoal-node-tmp /tmp && exec "$@"'

_WAIT_NODES = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
want, gone = (set(json.loads(a)) for a in sys.argv[2:4])
deadline = time.monotonic() + float(sys.argv[4])
while time.monotonic() < deadline:
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    if want <= alive and not alive & gone:
        print(json.dumps(sorted(alive)))
        break
    time.sleep(0.2)
else:
    sys.exit(f"alive {sorted(alive)}, want {sorted(want)}")
"""


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    node_id: str = ""
    """Ray's id of the node (hex), from its raylet's command line."""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class LocalCluster:
    """A head (0 CPUs) and worker nodes (``cpus`` each), all on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        *,
        hide_tmp: bool = False,
        cpus: int = 1,
        head_env: dict[str, str] | None = None,
    ) -> None:
        """``head_env``: more environment for the head (``RAY_<config>`` settings)."""
        self.root = root
        self.head_env = head_env or {}
        self.hide_tmp = hide_tmp
        self.cpus = cpus
        self.temp = root / "ray"
        self.head: Node | None = None
        self.workers: list[Node] = []
        self.address = ""
        self._count = 0
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        """Ray's processes: shoal importable from this checkout, nothing asked outside."""
        fake_home = self.root / "home"
        fake_home.mkdir(parents=True, exist_ok=True)
        # Ray's usage module asks cloud metadata servers when this file is missing.
        (fake_home / "ray_bootstrap_config.yaml").write_text("{}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "RAY_"))}
        env.update(
            HOME=str(fake_home),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="disabled",
            LITELLM_LOCAL_MODEL_COST_MAP="True",
        )
        return env

    def _common(self, name: str) -> list[str]:
        # A temp dir per node: nodes started at once would pick the same socket names.
        temp = self.temp / name
        temp.mkdir(parents=True, exist_ok=True)
        return [
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
            # Units pass only small strings: Ray's least object store, not 30% of memory each.
            f"--object-store-memory={100 * 1024 * 1024}",
            "--block",
        ]

    def start(self, workers: int, timeout: float = 120.0) -> None:
        marker = self.temp / "head" / "ray_current_cluster"
        marker.unlink(missing_ok=True)
        command = [*RAY, "start", "--head", "--port=0", "--num-cpus=0"]
        command += ["--include-dashboard=false", *self._common("head")]
        self.head = self._spawn("head", command, self.head_env)
        deadline = time.monotonic() + timeout
        while not (marker.exists() and marker.read_text().strip()):
            if not self.head.alive or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start; see {self.log('head')}")
            time.sleep(0.1)
        self.address = marker.read_text().strip()
        for _ in range(workers):
            self.add_worker(wait=False)
        self.wait_nodes(timeout)

    def add_worker(self, wait: bool = True) -> Node:
        self._count += 1
        name = f"worker-{self._count}"
        command = [*RAY, "start", f"--address={self.address}", f"--num-cpus={self.cpus}"]
        command += self._common(name)
        if self.hide_tmp:
            hide = ["unshare", "-m", "--propagation", "private", "sh", "-c", _HIDE_TMP, "sh"]
            command = [*hide, *command]
        node = self._spawn(name, command)
        self.workers.append(node)
        if wait:
            self.wait_nodes()
        return node

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Node:
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                start_new_session=True,
            )
        return Node(name, proc)

    def live_workers(self) -> list[Node]:
        return [w for w in self.workers if w.alive]

    def wait_nodes(self, timeout: float = 120.0, dead_seen: bool = False) -> None:
        """Until every live node has registered with the head; with ``dead_seen``, also
        until the head has seen the killed ones die (its health checks take ~15 s)."""
        deadline = time.monotonic() + timeout
        nodes = [n for n in [self.head, *self.workers] if n is not None and n.alive]
        for node in nodes:
            while not node.node_id:
                node.node_id = _raylet_node_id(node.proc.pid)
                if not node.node_id:
                    if not node.alive or time.monotonic() > deadline:
                        raise RuntimeError(f"{node.name} did not start; see {self.log(node.name)}")
                    time.sleep(0.2)
        want = [n.node_id for n in nodes]
        gone = [n.node_id for n in self.workers if not n.alive and dead_seen]
        env = {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # a driver on 127.0.0.1
        left = str(max(1.0, deadline - time.monotonic()))
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _WAIT_NODES,
                self.address,
                json.dumps(want),
                json.dumps(gone),
                left,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=float(left) + 60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the cluster's nodes did not all register: {done.stderr[-2000:]}")

    def node_of(self, pid: int) -> Node | None:
        """The node whose process tree holds ``pid``."""
        by_pid = {n.proc.pid: n for n in [self.head, *self.workers] if n is not None}
        while pid > 1:
            if pid in by_pid:
                return by_pid[pid]
            pid = _parent(pid)
        return None

    def by_id(self, node_id: str) -> Node | None:
        return next((n for n in [self.head, *self.workers] if n and n.node_id == node_id), None)

    def kill(self, node: Node) -> None:
        """SIGKILL the node's whole process tree at once, as a machine that is lost."""
        tree = [node.proc.pid, *descendants(node.proc.pid)]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        node.proc.wait(10)

    def stop(self) -> None:
        nodes = [*self.workers, *([self.head] if self.head else [])]
        for node in nodes:
            if node.alive:
                self.kill(node)
        shutil.rmtree(self.root, ignore_errors=True)


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _parent(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else 0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            children.setdefault(_parent(int(entry)), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _raylet_node_id(root: int) -> str:
    for pid in descendants(root):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"/raylet"):
            for arg in args:
                if arg.startswith(b"--node_id="):
                    return arg.split(b"=", 1)[1].decode()
    return ""
