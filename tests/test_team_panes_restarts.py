"""Restarts told: a member killed again and again keeps its pane's history, and each time
the pane says how it died and the how-manyth restart it is (a private tmux server)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.team_screens import Tmux, start, team_status
from tests.team_screens import tmux as tmux  # a fixture
from tests.test_loop import call, make_repo, model_env, plan, verdict

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


@needs_tmux
@pytest.mark.timeout(180)
def test_each_restart_is_one_line_naming_the_signal_and_the_count(
    home: Home,
    tmux: Tmux,
) -> None:
    up = shoal("team", "up", "zz", "--members", "echo", env={"SHOAL_PRELOAD": ""})
    assert up.returncode == 0, up.stderr
    pane = tmux.member_panes("shoal-zz")["echo@zz-1"]
    for n in (1, 2, 3):
        pid = team_status("zz")["members"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        line = f"echo@zz-1 restarted after SIGKILL (restart {n}); nothing to take up again"
        shown = tmux.wait(pane, line)
        wait_for(lambda p=pid: team_status("zz")["members"][0]["pid"] not in (None, p))
    # The third restart's own first line follows its restart line: take the screen then.
    shown = tmux.wait(pane, "waiting for work", after=3)
    # The history is all there, in order: the first start's lines, then each restart.
    starts = [i for i, text in enumerate(shown.splitlines()) if "waiting for work" in text]
    restarts = [i for i, text in enumerate(shown.splitlines()) if "restarted after" in text]
    assert len(starts) == 4 and len(restarts) == 3, shown
    assert starts[0] < restarts[0] < starts[1] < restarts[1] < starts[2] < restarts[2], shown
    assert team_status("zz")["members"][0]["restarts"] == 3


@needs_tmux
@pytest.mark.timeout(240)
def test_a_task_whose_member_died_says_so_in_runs_output_and_in_the_pane(
    home: Home,
    tmux: Tmux,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    {"content": "thinking", "delay": 120},  # in flight when it is killed
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("finish", summary="add adds"),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        env = {**model_env(server), "SHOAL_PRELOAD": ""}
        up = shoal("team", "up", "kk", "--members", "executor", env=env)
        assert up.returncode == 0, up.stderr
        pane = tmux.member_panes("shoal-kk")["executor@kk-1"]
        run = start(["run", "fix add", "-C", str(repo), "--team", "kk"], env)
        try:
            wait_for(lambda: server.requests_for("scripted-executor"), timeout=60)
            members = {m["name"]: m for m in team_status("kk", env)["members"]}
            os.kill(members["executor@kk-1"]["pid"], signal.SIGKILL)
            out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
    assert out.startswith("accepted:"), (out, err)
    again = "↻ executor@kk-1 takes iteration 1 up again (delivery 2): the actor that had it"
    assert again in err
    assert err.index(again) < err.index("read_file")  # before the calls it repeats
    shown = tmux.screen(pane)
    assert "restarted after SIGKILL (restart 1); redelivered: exec.request " in shown
    assert "iteration 1 (redelivered): fix add" in shown
