"""Executor tools for teams: background delegation, messages between teammates, team memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal
from tests.test_loop import call, make_repo, model_env, verdict
from tests.test_team_run import make_repo as make_three_file_repo


def text_of(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in request["messages"])


def test_delegated_subagents_report_back_and_a_failing_one_is_reported_failed(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    plan = call("submit_plan", steps=[{"title": "fix add", "detail": "a - b -> a + b"}])
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan],
                "scripted-executor": {
                    "routes": {
                        "Task: fix the add function": [
                            call(
                                "delegate",
                                tasks=[
                                    {"description": "find where add is defined"},
                                    {"description": "a job that breaks", "mode": "worktree"},
                                ],
                            ),
                            call("wait_for_subagents", timeout=60),
                            call("read_file", path="calc.py"),
                            call("edit_file", path="calc.py", old_string="a - b",
                                 new_string="a + b"),
                            call("finish", summary="fixed with help"),
                        ],
                        "Task: find where add is defined": [
                            call("grep", pattern="def add"),
                            call("finish", summary="add is defined in calc.py, line 1"),
                        ],
                        "Task: a job that breaks": [
                            {"status": 400, "error": {"message": "this subagent breaks"}}
                        ],
                    }
                },
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )  # fmt: skip
    with ScriptedModelServer(script) as server:
        result = shoal(
            "run", "fix the add function", "-C", str(repo), "--json",
            env=model_env(server), timeout=120,
        )  # fmt: skip
        requests = server.requests_for("scripted-executor")
    out = json.loads(result.stdout)
    assert out["status"] == "accepted", (out, [text_of(r)[-600:] for r in requests])
    main = [r for r in requests if "Task: fix the add function" in text_of(r)]
    # delegate, wait, then the turn that sees both results as messages.
    assert len(main) == 5
    third = text_of(main[2])
    assert "Messages that arrived while you worked" in third
    assert "accepted: add is defined in calc.py, line 1" in third
    assert "failed" in third and "this subagent breaks" in third
    listed = shoal("tasks", "--background", "--json", check=True).stdout.splitlines()
    background = [json.loads(line) for line in listed]
    assert sorted((b["kind"], b["status"]) for b in background) == [
        ("subagent", "accepted"),
        ("subagent", "failed"),
    ]
    assert {b["parent"] for b in background} == {out["task_id"]}
    # The read-only subagent could not have written; the worktree one is tidied away.
    assert "subagent" not in (repo / "calc.py").read_text()
    assert not any((home.root / "worktrees" / out["task_id"]).glob("d*"))


def test_teammates_message_each_other_and_team_memory_is_recalled_for_the_team(
    home: Home, tmp_path: Path
) -> None:
    repo = make_three_file_repo(tmp_path, buggy=("calc.py", "strs.py"))
    plan = call(
        "submit_plan",
        steps=[{"title": "fix both"}],
        subtasks=[
            {"id": "one", "title": "fix add", "files": ["calc.py"]},
            {"id": "two", "title": "fix shout", "files": ["strs.py"]},
        ],
    )
    note = "calc.py add must keep integer math for the add function"
    hello = "heads up from the add fixer: strs.py is yours"
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan],
                "scripted-executor": {
                    "routes": {
                        "subtask one ": [
                            {"tool_calls": [
                                {"name": "send_message", "arguments": {"to": n, "text": hello}}
                                for n in ("executor-1", "executor-2")
                            ]},
                            call("remember", note=note),
                            call("read_file", path="calc.py"),
                            call("edit_file", path="calc.py", old_string="a - b",
                                 new_string="a + b"),
                            call("finish", summary="fixed add"),
                        ],
                        "subtask two ": [
                            {**call("read_file", path="strs.py"), "delay": 1.5},
                            call("edit_file", path="strs.py", old_string="s.lower()",
                                 new_string="s.upper()"),
                            call("finish", summary="fixed shout"),
                        ],
                        "Task: fix the add function in calc.py": [call("finish", summary="ok")],
                    }
                },
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )  # fmt: skip
    with ScriptedModelServer(script) as server:
        # Two subtasks and their run: the third finished task makes mining due.
        env = {**model_env(server), "SHOAL_MINE_EVERY": "3"}
        team = shoal(
            "team", "run", "fix the two bugs", "-C", str(repo), "--size", "2",
            "--team", "red", "--json", env=env, timeout=150,
        )  # fmt: skip
        assert json.loads(team.stdout)["status"] == "accepted", team.stdout
        again = shoal(
            "run", "fix the add function in calc.py", "-C", str(repo), "--team", "red",
            "--json", env=env, timeout=120,
        )  # fmt: skip
        assert again.stdout.strip(), again.stderr
        executor = server.requests_for("scripted-executor")
        planner = server.requests_for("scripted-planner")
    two = [text_of(r) for r in executor if "subtask two " in text_of(r)]
    assert any(hello in t and "from executor-" in t for t in two[1:]), two
    later = [text_of(r) for r in executor if "Task: fix the add function in calc.py" in text_of(r)]
    assert later and note in later[0]  # the team's note, recalled for the team's task
    assert note not in text_of(planner[-1])  # roles outside the team do not see it
    # Mining became due with the third finished task and ran once no task was running.
    mined = json.loads(
        shoal("messages", "--kind", "mine.request", "--json", check=True).stdout.splitlines()[0]
    )
    assert mined["kind"] == "mine.request"


def test_a_message_to_an_idle_executor_is_acked_and_holds_nothing(orchestrator: Home) -> None:
    # Kept messages are held only while a task runs: held ones keep an orchestrator
    # from its idle exit.
    from shoal import daemon
    from shoal.mailbox.client import MailboxClient
    from shoal.messages.actors import ActorSpawn
    from shoal.messages.teams import TeamMessage
    from tests.conftest import wait_for

    name = daemon.request(orchestrator, ActorSpawn(role="executor")).names[0]

    def ready() -> bool:
        actors = daemon.status(orchestrator).actors
        return any(a.name == name and a.state == "ready" for a in actors)

    wait_for(ready, timeout=60, what="the executor up")
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        client.send(name, TeamMessage(text="when you start, read NOTES.md", sender="a person"))
    wait_for(
        lambda: daemon.status(orchestrator).messages.pending == 0,
        timeout=20,
        what="the message acked",
    )


def test_delegation_limits_and_long_results_are_cut_with_where_to_read_them() -> None:
    from types import SimpleNamespace

    from shoal.actors.delegate import (
        RESULT_LIMIT,
        DelegateArgs,
        Delegations,
        _delegate,
        result_text,
    )
    from shoal.messages.tasks import TaskDone

    delegations = Delegations()
    loop = SimpleNamespace(actor=SimpleNamespace(delegations=delegations), task_id="T")
    five = DelegateArgs.model_validate(
        {"tasks": [{"description": f"look at part {n}"} for n in range(5)]}
    )
    refused, ok = _delegate(loop, five)  # type: ignore[arg-type]
    assert not ok and "at most 4 per call and 4 running" in refused
    for n in range(3):
        delegations.started(f"S{n}", "T")
    two = DelegateArgs.model_validate({"tasks": [{"description": "a"}, {"description": "b"}]})
    refused, ok = _delegate(loop, two)  # type: ignore[arg-type]
    assert not ok and "(3 running now)" in refused
    done = TaskDone(
        task_id="S9",
        status="accepted",
        decision="done",
        score=None,
        iterations=1,
        tokens=0,
        cost_usd=0.0,
        files_changed=[],
        summary="x" * 5000,
    )
    text = result_text(done)
    assert len(text) < RESULT_LIMIT + 100 and text.endswith("(cut; full text: shoal show S9)")
