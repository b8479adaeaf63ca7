"""Idle actors give their memory back: stopped after a quiet while, forked again on demand."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal import daemon
from shoal.client import query
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import wait_for
from tests.test_loop import call, make_repo, plan, run_task, verdict

LOOP = {"planner", "executor", "evaluator", "learner", "pattern-miner"}


def _live_roles(home: Home) -> set[str]:
    return {a.role for a in daemon.status(home).actors if a.state != "stopped"}


def test_the_loops_actors_are_retired_when_idle_and_come_back_for_the_next_task(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_ACTOR_IDLE_RETIRE", "1")
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("finish", summary="fixed"),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        code, first = run_task(server, repo)
        assert code == 0, first
        pid = daemon.running_pid(home)
        wait_for(lambda: not (_live_roles(home) & LOOP), timeout=30, what="idle actors retired")
        events = query(home, "actor_events.recent", {"limit": 50}).rows
        retired = {row[2] for row in events if row[4] == "retired"}
        assert retired == LOOP  # each said so, with the reason
        # The next task forks them again; the orchestrator stayed up all along.
        code, second = run_task(server, repo)
        assert code == 0 and second["status"] == "accepted", second
        assert daemon.running_pid(home) == pid
