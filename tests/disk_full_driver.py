"""Drives an orchestrator through a full disk; run by tests/test_disk_full.py.

It runs inside a private mount namespace whose SHOAL_HOME is a small tmpfs, so
filling "the disk" fills only that. One task runs to the end first; a second
one is mid-way (its executor's first answer is slow) when the disk is filled;
a third is submitted while it is full; then space is freed. What it saw is
printed as one JSON object on stdout for the test to judge.

    python -m tests.disk_full_driver WORKDIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shoal import daemon
from shoal.client import query as read
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.test_api import bare_repo
from tests.test_loop import call, model_env, plan, verdict


def fill(path: Path) -> int:
    """Write zeros into ``path`` until the disk refuses; the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    written = 0
    try:
        while True:
            written += os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28, exc
    finally:
        os.close(fd)
    return written


def task_rows(home: Home, task_id: str) -> dict[str, Any]:
    reply = read(home, "task.get", {"task_id": task_id})
    return dict(zip(reply.columns, reply.rows[0], strict=True)) if reply.rows else {}


def message_ids(home: Home, task_id: str) -> list[str]:
    reply = read(home, "messages.recent", {"task_id": task_id, "limit": 10_000})
    return sorted(row[0] for row in reply.rows)


def settled_message_ids(home: Home, task_id: str) -> list[str]:
    """The task's message ids once two reads 0.5 s apart agree (at most 15 s)."""
    deadline = time.monotonic() + 15
    ids = message_ids(home, task_id)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = message_ids(home, task_id)
        if again == ids:
            return ids
        ids = again
    return ids


def run(server: ScriptedModelServer, repo: Path, what: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", what, "-C", str(repo), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **model_env(server)},
    )


def script() -> Script:
    edit = call("edit_file", path="calc.py", old_string="a - b", new_string="a + b")
    slow_read = {**call("read_file", path="calc.py"), "delay": 3.0}
    swap = call("edit_file", path="calc.py", old_string="a + b", new_string="b + a")
    return Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan(), plan()],
                "scripted-executor": [
                    call("read_file", path="calc.py"),
                    edit,
                    call("finish", summary="add now adds"),
                    slow_read,  # the second task: the disk fills while this is awaited
                    swap,
                    call("finish", summary="operands swapped"),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )


def main(workdir: Path) -> dict[str, Any]:
    home = Home.resolve()
    # An orchestrator holding unwritten records must not exit idle: give it the chance.
    os.environ["SHOAL_IDLE_TIMEOUT"] = "3"
    seen: dict[str, Any] = {"home": str(home.root)}
    repo = bare_repo(workdir)
    with ScriptedModelServer(script()) as server:
        first = run(server, repo, "fix the add function")
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        seen["first"] = json.loads(out)
        first_id = seen["first"]["task_id"]
        # The first task's last messages (its learner's) may still be on their way after
        # its `shoal run` returned: take them once they stop changing.
        seen["first_messages_before"] = settled_message_ids(home, first_id)
        seen["pid_before"] = daemon.running_pid(home)

        second = run(server, repo, "swap the operands")
        wait_for(
            lambda: len(server.requests_for("scripted-executor")) >= 4,
            60,
            what="the second task's executor to ask the model",
        )
        filler = home.root / "filler"
        seen["filled_bytes"] = fill(filler)
        out, err = second.communicate(timeout=120)
        seen["second"] = {"code": second.returncode, "stdout": out, "stderr": err}
        second_id = json.loads(out)["task_id"] if out.strip() else None

        third = shoal("run", "refused while full", "-C", str(repo), env=model_env(server))
        seen["third"] = {"code": third.returncode, "stderr": third.stderr}
        seen["second_while_full"] = task_rows(home, second_id) if second_id else {}
        time.sleep(5)  # idle for longer than its idle timeout, still holding records
        seen["pid_while_full"] = daemon.running_pid(home)

        filler.unlink()
        seen["freed_at"] = time.time()
        if second_id:
            wait_for(
                lambda: task_rows(home, second_id).get("status") not in (None, "running"),
                30,
                what="the second task's final state to be written",
            )
            seen["second_after"] = task_rows(home, second_id)
            seen["second_messages"] = len(message_ids(home, second_id))
        seen["first_messages_after"] = message_ids(home, first_id)
        counters = daemon.status(home).messages
        seen["counters"] = {"routed": counters.routed, "recorded": counters.recorded}
        seen["pid_after"] = daemon.running_pid(home)
        fourth = run(server, repo, "works again")
        out, err = fourth.communicate(timeout=120)
        seen["fourth"] = {"code": fourth.returncode, "stderr": err[-2000:]}
    shoal("orchestrator", "stop")  # (it may have gone idle meanwhile)
    wait_for(lambda: daemon.running_pid(home) is None, 20, what="the orchestrator to stop")
    seen["journal_bytes_after_stop"] = home.journal.stat().st_size
    seen["log"] = (home.logs / "orchestrator.log").read_text()
    # Starting on a full disk fails in one line, and starts once there is room.
    fill(filler)
    start = shoal("orchestrator", "start")
    seen["start_while_full"] = {"code": start.returncode, "stderr": start.stderr}
    filler.unlink()
    seen["start_after"] = shoal("orchestrator", "start").returncode
    return seen


if __name__ == "__main__":
    try:
        result = main(Path(sys.argv[1]))
    finally:
        if daemon.running_pid(Home.resolve()) is not None:
            shoal("orchestrator", "stop")
    print(json.dumps(result))
