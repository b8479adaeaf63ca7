"""Benchmark how fast a team member in a tmux pane comes back after ``kill -9``.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``, and tmux)::

    python3 scripts/bench_panes.py            # a table
    python3 scripts/bench_panes.py -n 20      # more kills
    python3 scripts/bench_panes.py --json     # one JSON object

One orchestrator under a temporary ``SHOAL_HOME``, a private tmux server
(``SHOAL_TMUX_SOCKET``), and two echo actors: ``echo@bench-1`` in a pane (the
``tmux`` launcher) and ``echo-local`` forked from the forkserver (the ``local``
launcher, the baseline). Each round kills one of them with SIGKILL, sends it an
``echo.request`` at once, and measures from the kill:

- *back*: the new process exists (tmux: the pane's pid changed in the same pane;
  local: the orchestrator's status shows a new pid);
- *answering*: the reply to that request arrived from the new instance (the
  broker held the message and redelivered it).

Kills alternate between the two, so other load on the machine weighs on both.
``SHOAL_RESTART_BACKOFF_MAX=0.1`` keeps the restart backoff at its first step
for every round (repeated kills would otherwise back off exponentially), and no
modules are preloaded (``SHOAL_PRELOAD=""``): echo needs none. Everything is
stopped and removed at the end.
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
import uuid
from pathlib import Path
from typing import Any

KILLS = 10
TARGET_RESPAWN_S = 2.0


def _tmux(socket: str, *args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True
    ).stdout.strip()


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.005) -> Any:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def measure(kills: int) -> dict[str, Any]:
    from shoal import daemon
    from shoal.mailbox.client import MailboxClient
    from shoal.mailbox.envelope import ORCHESTRATOR
    from shoal.messages.actors import ActorSpawn, EchoRequest, OrchestratorStatus
    from shoal.messages.teams import TeamDown, TeamMemberSpec, TeamUp
    from shoal.paths import Home

    root = tempfile.mkdtemp(prefix="shB-", dir="/tmp")
    socket = f"shoal-bench-{uuid.uuid4().hex[:8]}"
    env = {
        "SHOAL_HOME": root,
        "SHOAL_TMUX_SOCKET": socket,
        "SHOAL_PRELOAD": "",
        "SHOAL_IDLE_TIMEOUT": "0",
        "SHOAL_HEARTBEAT_INTERVAL": "0.2",
        "SHOAL_RESTART_BACKOFF_MAX": "0.1",
    }
    os.environ.update(env)
    repo = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
    home = Home.resolve(root)
    try:
        daemon.start(home)
        with MailboxClient(home.mailbox_endpoint) as client:
            client.request(
                ORCHESTRATOR,
                TeamUp(name="bench", members=[TeamMemberSpec(role="echo")], tmux_socket=socket),
                timeout=30,
            )
            client.request(ORCHESTRATOR, ActorSpawn(role="echo", name="echo-local"), timeout=30)
            pane_name, local_name = "echo@bench-1", "echo-local"
            for name in (pane_name, local_name):
                client.request(name, EchoRequest(text="ready?"), timeout=60)

            def status_pid(name: str) -> int | None:
                reply = client.request(
                    ORCHESTRATOR, OrchestratorStatus(), timeout=10
                ).parse_payload()
                return next((a.pid for a in reply.actors if a.name == name), None)  # type: ignore[attr-defined]

            pane = _tmux(socket, "list-panes", "-a", "-F", "#{pane_id}").split()[0]
            figures: dict[str, dict[str, list[float]]] = {
                "tmux": {"back": [], "answering": []},
                "local": {"back": [], "answering": []},
            }
            same_pane = True
            for i in range(2 * kills):
                launcher = "tmux" if i % 2 == 0 else "local"
                name = pane_name if launcher == "tmux" else local_name
                if launcher == "tmux":
                    pid = int(_tmux(socket, "display-message", "-p", "-t", pane, "#{pane_pid}"))
                else:
                    pid = _wait(lambda n=name: status_pid(n), 30, "a pid")
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                request = client.send(name, EchoRequest(text=f"round {i}"))
                if launcher == "tmux":

                    def back(p: int = pid) -> bool:
                        out = _tmux(
                            socket, "display-message", "-p", "-t", pane, "#{pane_pid} #{pane_dead}"
                        ).split()
                        return len(out) == 2 and out[0] != str(p) and out[1] == "0"

                    _wait(back, 30, "the pane's new process")
                else:
                    _wait(lambda p=pid, n=name: status_pid(n) not in (None, p), 30, "a new pid")
                figures[launcher]["back"].append(time.perf_counter() - t0)
                while True:
                    reply = client.recv(timeout=30)
                    if reply is None:
                        raise RuntimeError(f"{name} did not answer after the kill")
                    if reply.reply_to == request.id:
                        break
                figures[launcher]["answering"].append(time.perf_counter() - t0)
                panes = _tmux(socket, "list-panes", "-a", "-F", "#{pane_id}").split()
                same_pane = same_pane and panes == [pane]
            client.request(ORCHESTRATOR, TeamDown(name="bench", force=True), timeout=10)
    finally:
        with contextlib.suppress(Exception):
            daemon.stop(home, timeout=20)
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    def med(launcher: str, key: str) -> float:
        return statistics.median(figures[launcher][key])

    return {
        "kills_each": kills,
        "tmux_back_s": med("tmux", "back"),
        "tmux_back_max_s": max(figures["tmux"]["back"]),
        "tmux_answering_s": med("tmux", "answering"),
        "tmux_answering_max_s": max(figures["tmux"]["answering"]),
        "local_back_s": med("local", "back"),
        "local_answering_s": med("local", "answering"),
        "same_pane_every_time": same_pane,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--kills", type=int, default=KILLS, help="kills per launcher")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.stderr.write("bench_panes: needs tmux\n")
        return 2
    r = measure(args.kills)
    if args.json:
        sys.stdout.write(json.dumps(r) + "\n")
        return 0
    ok = "ok" if r["tmux_back_max_s"] <= TARGET_RESPAWN_S else "MISSED"
    back_ratio = r["tmux_back_s"] / r["local_back_s"]
    answer_ratio = r["tmux_answering_s"] / r["local_answering_s"]
    rows = [
        (
            "pane respawned after kill -9 (median)",
            r["tmux_back_s"],
            f"max {r['tmux_back_max_s']:.3f} s; target <= {TARGET_RESPAWN_S:g} s {ok}; "
            f"same pane every time: {r['same_pane_every_time']}",
        ),
        ("local actor restarted (median)", r["local_back_s"], f"pane/local {back_ratio:.1f}x"),
        (
            "pane member answering again (median)",
            r["tmux_answering_s"],
            f"max {r['tmux_answering_max_s']:.3f} s; its redelivered request answered",
        ),
        (
            "local actor answering again (median)",
            r["local_answering_s"],
            f"pane/local {answer_ratio:.1f}x",
        ),
    ]
    print(f"shoal pane respawn benchmark ({r['cpus']} CPUs, {r['kills_each']} kills each)")
    for label, seconds, note in rows:
        print(f"{label:<40} {seconds * 1000:7.0f} ms  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
