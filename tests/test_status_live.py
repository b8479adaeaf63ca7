"""``shoal status --live``: a running task's progress, from the event bus.

In a real tmux pane (a private socket, its server killed after) the rich view
must show the task's iteration change from 1 to 2; without a terminal the
same command prints plain lines. Ctrl-C ends both.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from shoal import daemon
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.test_api import bare_repo
from tests.test_loop import call, model_env, plan, verdict

_ROW = re.compile(r"^(\S+)\s+(planning|executing|evaluating|refining|restoring)\s+(\d+)\s", re.M)


def test_status_live_follows_a_running_task_from_iteration_1_to_2(
    home: Home, tmp_path: Path
) -> None:
    assert shoal("status", "--live", "--json").returncode == 2  # one view at a time
    repo = bare_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    {**call("read_file", path="calc.py"), "delay": 1.5},
                    call("finish", summary="first try"),
                    {**call("finish", summary="second try"), "delay": 1.5},
                ],
                "scripted-evaluator": [verdict(0.5), verdict(0.9)],
            }
        }
    )
    sock = f"shoal-test-{uuid.uuid4().hex[:10]}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    procs: list[subprocess.Popen[str]] = []
    with ScriptedModelServer(script) as server:
        env = {**os.environ, **model_env(server)}
        daemon.start(home, env=model_env(server))  # the settings `shoal run` will ask for
        viewer = [sys.executable, "-m", "shoal", "status", "--live"]
        setting = [f"SHOAL_HOME={home.root}", f"PYTHONPATH={env['PYTHONPATH']}"]
        command = shlex.join(["env", *setting, *viewer])
        try:
            subprocess.run(
                [*tmux, "new-session", "-d", "-x", "200", "-y", "40", "-s", "live", command],
                check=True,
                env=env,
            )
            plain = subprocess.Popen(viewer, stdout=subprocess.PIPE, text=True, env=env)
            procs.append(plain)
            wait_for(lambda: "no running tasks" in _pane(tmux), 30, what="the live view")
            shoal("orchestrator", "spawn", "echo@alpha", check=True)  # a team's member
            wait_for(lambda: "team alpha: echo@alpha" in _pane(tmux), 30, what="the team")
            run = subprocess.Popen(
                [*viewer[:3], "run", "fix", "-C", str(repo), "--json", "-i", "2", "--quality=.99"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            procs.append(run)
            seen: dict[str, set[int]] = {}

            def shows(iteration: int) -> bool:
                for task, _phase, n in _ROW.findall(_pane(tmux)):
                    seen.setdefault(task, set()).add(int(n))
                return any(iteration in s for s in seen.values())

            wait_for(lambda: shows(1), 60, what="iteration 1 in the pane")
            wait_for(lambda: shows(2), 60, what="iteration 2 in the pane")
            stdout, stderr = run.communicate(timeout=90)
            out = json.loads(stdout)
            assert out["iterations"] == 2, stderr
            assert seen.get(out["task_id"]) >= {1, 2}  # the same row changed
            finished = re.compile(rf"^{out['task_id']}\s+unaccepted\s+2\s", re.M)
            wait_for(lambda: finished.search(_pane(tmux)), 15, what="the finished task")

            subprocess.run([*tmux, "send-keys", "-t", "live", "C-c"], check=True)
            wait_for(
                lambda: subprocess.run([*tmux, "has-session", "-t", "live"]).returncode != 0,
                15,
                what="the live view to exit on Ctrl-C",
            )
            plain.send_signal(signal.SIGINT)
            lines, _ = plain.communicate(timeout=15)
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    assert plain.returncode == 0
    task = out["task_id"]
    assert f"{task} executing iteration 1 " in lines and f"{task} executing iteration 2 " in lines
    assert f"{task}   read_file " in lines  # a tool call
    assert f"{task} done: unaccepted (max_iterations)" in lines
    assert "started echo@alpha-1 (echo@alpha)" in lines


def _pane(tmux: list[str]) -> str:
    result = subprocess.run(
        [*tmux, "capture-pane", "-p", "-t", "live"], capture_output=True, text=True
    )
    return result.stdout


def test_a_budget_warning_shows_in_the_plain_lines_and_the_live_table() -> None:
    from rich.console import Console

    from shoal.cli.live import LiveState, render
    from shoal.mailbox.envelope import Envelope
    from shoal.messages.tasks import BudgetWarning, TaskProgress

    state = LiveState()

    def event(payload: TaskProgress | BudgetWarning) -> str | None:
        return state.apply(Envelope.of(payload, sender="orchestrator", recipient="*", task_id="T1"))

    progress = TaskProgress(task_id="T1", phase="executing", iteration=1, tokens=850)
    assert event(progress) == "T1 executing iteration 1 · 850 tokens · $0.0000"
    warning = BudgetWarning(task_id="T1", budget="tokens", used=850, limit=1000, fraction=0.85)
    assert event(warning) == "T1 budget warning: 85% of its tokens budget"
    console = Console(width=200, record=True)
    console.print(render(state))
    row = next(line for line in console.export_text().splitlines() if line.startswith("T1"))
    assert "executing" in row and "850" in row and "⚠ tokens 85%" in row


def test_status_live_lists_members_busy_or_idle_with_their_subtask(
    home: Home, tmp_path: Path
) -> None:
    repo = bare_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    # Busy long enough to be seen by a view that asks once a second.
                    {**call("read_file", path="calc.py"), "delay": 8},
                    call("finish", summary="looked"),
                ],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        env = {**os.environ, **model_env(server), "SHOAL_PRELOAD": ""}
        up = shoal("team", "up", "alpha", "--members", "executor", "--mode", "process", env=env)
        assert up.returncode == 0, up.stderr
        viewer = [sys.executable, "-m", "shoal", "status", "--live"]
        plain = subprocess.Popen(viewer, stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert plain.stdout is not None
            seen = [plain.stdout.readline()]  # the view is up: the rest are changes
            while "member lead@alpha-1 idle" not in seen[-1]:
                seen.append(plain.stdout.readline())
            run = shoal("run", "look", "-C", str(repo), "--team", "alpha", "--json", env=env)
            assert run.returncode == 0, run.stderr
            task = json.loads(run.stdout)["task_id"]
            shoal("team", "down", "alpha", "--force", check=True)
        finally:
            plain.send_signal(signal.SIGINT)
            rest, _ = plain.communicate(timeout=15)
    lines = "".join(seen) + rest
    # Each member as it changed: idle, busy with the task and its phase, idle again.
    busy = f"member executor@alpha-1 busy {task[:10]} executing"
    assert busy in lines, lines
    assert lines.index(busy) < lines.rindex("member executor@alpha-1 idle"), lines


def test_the_live_view_fits_80_columns_and_names_each_members_subtask() -> None:
    from rich.console import Console

    from shoal.cli.live import LiveState, render
    from shoal.mailbox.envelope import Envelope
    from shoal.messages.tasks import TaskProgress
    from shoal.messages.teams import TeamMemberStatus

    state = LiveState()
    task = "06H2RI9FAU7KNQ9U2LKFPSDNHC"
    progress = TaskProgress(
        task_id=task, phase="evaluating", iteration=2, score=0.42, tokens=123456, cost_usd=0.0123
    )
    state.apply(Envelope.of(progress, sender="orchestrator", recipient="*", task_id=task))
    state.tasks[task].description = "split the parser module and fix its three failing tests"
    state.actors = {"lead@red-1": "lead@red", "executor@red-2": "executor@red"}

    def member(name: str, busy: bool, subtask: str | None = None) -> TeamMemberStatus:
        return TeamMemberStatus(
            name=name, role=name.rsplit("-", 1)[0], pane_id="%1", pid=1, alive=True,
            state="ready", busy=busy, restarts=0, stalled=False, stalls=0,
            task_id=task if busy else None, subtask=subtask, phase="executing" if busy else None,
            last_heartbeat=None, tokens=0, cost_usd=0.0,
        )  # fmt: skip

    state.set_members(
        {"red": [member("lead@red-1", False), member("executor@red-2", True, "lexer")]}
    )
    console = Console(width=80, record=True)
    console.print(render(state, 80))
    shown = console.export_text()
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    row = next(line for line in shown.splitlines() if line.startswith(task[:10]))
    for cell in ("evaluating", " 2 ", "0.42", "123,456", "$0.0123", "split the"):
        assert cell in row, row  # the phase and every number whole; the description cut
    assert "team red: lead@red-1 idle" in shown
    assert f"executor@red-2 busy {task[:10]}/lexer executing" in shown
