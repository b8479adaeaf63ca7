"""Agent definitions: Claude Code's ``.claude/agents/*.md`` as they are, listed, run, delegated to.

The loader is checked on files alone; the rest end to end with a scripted
model: ``shoal run --agent``, ``delegate(agent=...)`` and a ``NAME@agent`` team
member in a tmux pane, each acting as the definition (its prompt, only its
tools, its model).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import daemon
from shoal.messages.base import from_dict
from shoal.messages.tasks import TaskOptions
from shoal.paths import Home
from shoal.skills import agents
from tests.conftest import shoal
from tests.test_loop import call, make_repo, plan, verdict

# Claude Code's own format: name, description, tools as a comma-separated string.
REVIEWER = """---
name: reviewer
description: Expert code reviewer. Use proactively after code changes.
tools: Read, Grep, Glob
model: {model}
---
You are REVIEWER-9f2, a senior code reviewer. Read the changed code and report
problems by file and line; never edit anything.
"""
BROKEN = "---\nname: broken\ntools: [Read\n---\nbody\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def project(tmp_path: Path, model: str = "openai/scripted-reviewer") -> Path:
    repo = make_repo(tmp_path)
    write(repo / ".claude" / "agents" / "reviewer.md", REVIEWER.format(model=model))
    write(repo / ".claude" / "agents" / "broken.md", BROKEN)
    return repo


def tool_names(request: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools", [])}


def system_prompt(request: dict[str, Any]) -> str:
    return request["messages"][0]["content"]


def env(server: Any, **extra: str) -> dict[str, str]:
    return {
        "SHOAL_PLANNER_MODEL": "openai/scripted-planner",
        "SHOAL_EXECUTOR_MODEL": "openai/scripted-executor",
        "SHOAL_EVALUATOR_MODEL": "openai/scripted-evaluator",
        "SHOAL_BASE_URL": server.base_url,
        "SHOAL_PRELOAD": "litellm",
        **extra,
    }


def test_claude_code_files_load_unchanged_and_a_broken_one_is_one_warning(tmp_path: Path) -> None:
    repo = project(tmp_path, model="inherit")
    user = tmp_path / "home-agents"
    write(user / "reviewer.md", "---\nname: reviewer\n---\nthe user's own\n")
    write(user / "helper.md", "---\ndescription: helps\npermissionMode: acceptEdits\n---\nHelp.\n")
    write(
        repo / ".shoal" / "agents" / "ops.md",
        "---\nname: ops\ntools: [Bash, mcp__kv__get, mcp__db, TodoWrite, Frobnicate]\n"
        "model: sonnet\npermission-mode: plan\n---\nRun things.\n",
    )
    found = agents.discover(user, repo)
    assert sorted(found.agents) == ["helper", "ops", "reviewer"]
    reviewer = found.agents["reviewer"]  # the project's wins over the user's
    assert reviewer.scope == "claude" and reviewer.tools == ["read_file", "grep", "glob"]
    assert reviewer.model is None and "REVIEWER-9f2" in reviewer.prompt
    assert found.agents["helper"].permission_mode == "accept-edits"  # named after its file
    ops = found.agents["ops"]
    assert ops.tools == ["shell", "git", "kv__get", "db__*"]
    assert ops.model == "anthropic/claude-sonnet-4-5" and ops.permission_mode == "plan"
    assert ops.notes == ["tool 'Frobnicate' is not one shoal has; left out"]
    assert len(found.warnings) == 1
    assert found.warnings[0].startswith(str(repo / ".claude" / "agents" / "broken.md"))
    assert "invalid YAML in the frontmatter" in found.warnings[0]
    write(repo / ".shoal" / "agents" / "bad.md", "---\npermission-mode: yolo\n---\nx\n")
    warnings = agents.discover(user, repo).warnings
    assert any(
        w.startswith(f"{repo}/.shoal/agents/bad.md: permission-mode 'yolo'") for w in warnings
    )
    with pytest.raises(agents.AgentError, match="no agent named 'nobody'"):
        found.get("nobody")


def test_an_agent_narrows_the_permission_mode_and_takes_the_executor_model() -> None:
    options = from_dict(
        TaskOptions,
        {
            "permission_mode": "accept-edits",
            "models": {"executor": {"model": "openai/x", "base_url": "http://h"}},
        },
    )
    ops = agents.AgentDefinition(name="ops", prompt="p", model="openai/y", permission_mode="bypass")
    applied = agents.apply(options, ops)
    assert applied.permission_mode == "accept-edits"  # never wider than the user's
    assert applied.models["executor"].model == "openai/y"
    assert applied.models["executor"].base_url == "http://h"
    plan_agent = ops.model_copy(update={"permission_mode": "plan"})
    assert agents.apply(options, plan_agent).permission_mode == "plan"
    assert applied.agent is not None and applied.agent.name == "ops"


def test_agents_list_and_show(home: Home, tmp_path: Path) -> None:
    repo = project(tmp_path)
    write(home.root / "agents" / "helper.md", "---\ndescription: helps\n---\nHelp.\n")
    listed = shoal("agents", "list", "--json", cwd=repo)
    assert listed.returncode == 0
    out = json.loads(listed.stdout)
    assert [a["name"] for a in out["agents"]] == ["helper", "reviewer"]
    assert [a["scope"] for a in out["agents"]] == ["user", "claude"]
    assert len(out["warnings"]) == 1 and "broken.md" in out["warnings"][0]
    assert "broken.md: invalid YAML" in listed.stderr  # one line, the rest still listed
    shown = shoal("agents", "show", "reviewer", cwd=repo, check=True).stdout
    assert "tools: read_file, grep, glob" in shown and "REVIEWER-9f2" in shown
    missing = shoal("agents", "show", "nobody", cwd=repo)
    assert missing.returncode == 1 and "no agent named 'nobody'" in missing.stderr
    unknown = shoal("run", "x", "--agent", "nobody", cwd=repo, env={"SHOAL_MODEL": "openai/x"})
    assert unknown.returncode == 2 and "no agent named 'nobody'" in unknown.stderr


@pytest.mark.timeout(240)
def test_run_as_an_agent_offers_and_runs_only_its_tools_with_its_model(
    home: Home, tmp_path: Path
) -> None:
    from shoal.llm.scripted import ScriptedModelServer

    repo = project(tmp_path)
    script = {
        "models": {
            "scripted-planner": [plan()],
            "scripted-reviewer": [
                call("shell", command="touch ran.txt"),
                call("read_file", path="calc.py"),
                call("finish", summary="calc.py:2 subtracts"),
            ],
            "scripted-evaluator": [verdict(0.9)],
        }
    }
    with ScriptedModelServer(script) as server:
        ran = shoal(
            "run",
            "review calc.py",
            "--agent",
            "reviewer",
            "--json",
            "--no-checks",
            cwd=repo,
            env=env(server),
            timeout=120,
        )
        asked = server.requests_for("scripted-reviewer")
        executor = server.requests_for("scripted-executor")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["summary"] == "calc.py:2 subtracts"
    assert executor == [] and len(asked) == 3  # the agent's model, through the executor role
    assert tool_names(asked[0]) == {"read_file", "grep", "glob", "finish"}
    assert "You act as the agent reviewer" in system_prompt(asked[0])
    assert "REVIEWER-9f2" in system_prompt(asked[0])
    refusal = asked[1]["messages"][-1]["content"]
    assert refusal == (
        "the agent reviewer may not use shell; its tools are read_file, glob, grep, finish"
    )
    assert not (repo / "ran.txt").exists()
    assert "def add" in asked[2]["messages"][-1]["content"]  # read_file did run


@pytest.mark.timeout(240)
def test_delegate_gives_a_subagent_the_definition(home: Home, tmp_path: Path) -> None:
    from shoal.llm.scripted import ScriptedModelServer

    repo = project(tmp_path)
    script = {
        "models": {
            "scripted-planner": [plan()],
            "scripted-executor": [
                call("delegate", tasks=[{"description": "review calc.py", "agent": "nobody"}]),
                call("delegate", tasks=[{"description": "review calc.py", "agent": "reviewer"}]),
                call("wait_for_subagents", timeout=60),
                call("finish", summary="delegated"),
            ],
            "scripted-reviewer": [
                call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                call("finish", summary="REVIEW-DONE calc.py:2 subtracts"),
            ],
            "scripted-evaluator": [verdict(0.9)],
        }
    }
    with ScriptedModelServer(script) as server:
        ran = shoal(
            "run",
            "have calc.py reviewed",
            "--json",
            "--no-checks",
            cwd=repo,
            env=env(server),
            timeout=180,
        )
        parent = server.requests_for("scripted-executor")
        sub = server.requests_for("scripted-reviewer")
    assert ran.returncode == 0, ran.stderr
    assert "task 1: no agent named 'nobody'" in parent[1]["messages"][-1]["content"]
    assert "as agent reviewer" in parent[2]["messages"][-1]["content"]
    assert tool_names(sub[0]) == {"read_file", "grep", "glob", "finish"}
    assert "REVIEWER-9f2" in system_prompt(sub[0])
    assert "the agent reviewer may not use edit_file" in sub[1]["messages"][-1]["content"]
    assert "REVIEW-DONE" in json.dumps(parent[3]["messages"])  # the result came back
    assert "a - b" in (repo / "calc.py").read_text()


@pytest.fixture
def tmux(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A private tmux server for the test (SHOAL_TMUX_SOCKET); only it is ever killed."""
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux")
    socket = f"shoal-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("SHOAL_TMUX_SOCKET", socket)
    yield ["tmux", "-L", socket]
    daemon.stop(home, timeout=15)
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


@pytest.mark.timeout(300)
def test_a_team_member_acts_as_a_defined_agent_in_a_pane(
    home: Home, tmux: list[str], tmp_path: Path
) -> None:
    from shoal.llm.scripted import ScriptedModelServer

    repo = project(tmp_path)
    script = {
        "models": {
            "scripted-planner": [plan()],
            "scripted-reviewer": [
                call("write_file", path="notes.md", content="x"),
                call("finish", summary="PANE-REVIEW done"),
            ],
            "scripted-evaluator": [verdict(0.9)],
        }
    }
    with ScriptedModelServer(script) as server:
        up = shoal(
            "team",
            "up",
            "red",
            "--members",
            "reviewer@agent",
            "--json",
            cwd=repo,
            env=env(server),
            timeout=90,
        )
        assert up.returncode == 0, up.stderr
        member = json.loads(up.stdout)["members"][0]
        assert member["name"] == "executor.reviewer@red-1" and member["state"] == "ready"
        assert member["pane_id"].startswith("%")
        ran = shoal(
            "run",
            "review calc.py",
            "--team",
            "red",
            "--agent",
            "reviewer",
            "--json",
            "--no-checks",
            cwd=repo,
            env=env(server),
            timeout=120,
        )
        asked = server.requests_for("scripted-reviewer")
        pane = subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", member["pane_id"], "-S", "-200"],
            capture_output=True,
            text=True,
        ).stdout
        down = shoal("team", "down", "red", env=env(server))
    assert ran.returncode == 0, ran.stderr
    task_id = json.loads(ran.stdout)["task_id"]
    assert down.returncode == 0
    listed = shoal("messages", "--kind", "exec.result", "--task", task_id, "--json").stdout
    senders = {json.loads(line)["sender"] for line in listed.splitlines()}
    assert senders == {"executor.reviewer@red-1"}, listed
    assert tool_names(asked[0]) == {"read_file", "grep", "glob", "finish"}
    assert "REVIEWER-9f2" in system_prompt(asked[0])
    assert "may not use write_file" in asked[1]["messages"][-1]["content"]
    # The member's pane shows its work: the refused call and the agent's summary.
    assert "write_file" in pane and "PANE-REVIEW done" in pane and task_id[:10] in pane


def test_a_restricted_toolbox_offers_and_runs_only_the_list(tmp_path: Path) -> None:
    from shoal.tools import Permissions, Toolbox, Workspace
    from shoal.tools.base import ToolArgs
    from shoal.tools.registry import agent_tool

    repo = make_repo(tmp_path)
    box = Toolbox(Workspace([repo], tmp_path / "out"), Permissions(mode="bypass"))
    ran: list[str] = []
    for name in ("kv__get", "db__query"):
        box.add(
            [agent_tool(name, "x", ToolArgs, lambda args, n=name: (ran.append(n) or "ok", True))]
        )
    box.restrict(["read_file", "kv__*", "finish"], "the agent ops")
    assert [s["function"]["name"] for s in box.schemas()] == ["read_file", "kv__get"]
    assert box.call("kv__get", {}).ok and ran == ["kv__get"]
    refused = box.call("db__query", {})
    assert refused.denied and not refused.ok and ran == ["kv__get"]
    assert refused.output == "the agent ops may not use db__query; its tools are read_file, kv__get"
    shell = box.call("shell", {"command": "touch x"})  # bypass mode: only the list stops it
    assert shell.denied and not (repo / "x").exists()
    assert "there is no tool named 'nope'" in box.call("nope", {}).output
