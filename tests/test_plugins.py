"""Plugins in Claude Code's layout: what they bring, approval, removal, commands and hooks."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from shoal.plugins.store import agent_dirs
from shoal.skills.commands import discover_commands
from tests.conftest import shoal
from tests.test_chat import chat_env, chat_lines
from tests.test_loop import call, make_repo, model_env, plan, verdict

GUARD = """#!/bin/sh
# A PreToolUse hook: refuse rm, as Claude Code plugins do (exit 2, reason on stderr).
input=$(cat)
case "$input" in
  *'"command": "rm '*) echo "no rm here (from $CLAUDE_PLUGIN_ROOT)" >&2; exit 2 ;;
esac
exit 0
"""
NOTE = """#!/bin/sh
cat > /dev/null
echo '{"decision": "block", "reason": "remember to run the tests"}'
"""


def make_plugin(root: Path, name: str = "demo-kit") -> Path:
    """A plugin folder exactly as Claude Code lays one out."""
    plugin = root / name
    (plugin / ".claude-plugin").mkdir(parents=True)
    (plugin / ".claude-plugin" / "plugin.json").write_text(
        json.dumps(
            {
                "name": name,
                "version": "1.2.0",
                "description": "A demo",
                "author": {"name": "Someone", "email": "s@example.com"},
                "keywords": ["demo"],
            }
        )
    )
    skill = plugin / "skills" / "tidy-imports"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(
        "---\nname: tidy-imports\ndescription: Sort and prune Python imports.\n---\n\nSort them.\n"
    )
    (plugin / "agents").mkdir()
    (plugin / "agents" / "reviewer.md").write_text(
        "---\nname: code-reviewer\ndescription: Reviews a diff.\ntools: Read, Grep\n---\n\n"
        "You review code.\n"
    )
    (plugin / "commands").mkdir()
    (plugin / "commands" / "explain.md").write_text(
        "---\ndescription: Explain a file\nargument-hint: FILE\n---\n\n"
        "Explain what $ARGUMENTS does, in two sentences.\n"
    )
    (plugin / ".mcp.json").write_text(
        json.dumps(
            {"mcpServers": {"kv": {"command": "python3", "args": ["${CLAUDE_PLUGIN_ROOT}/kv.py"]}}}
        )
    )
    (plugin / "hooks").mkdir()
    for script, text in (("guard.sh", GUARD), ("note.sh", NOTE)):
        (plugin / "hooks" / script).write_text(text)
        (plugin / "hooks" / script).chmod(0o755)
    hooks = {
        "hooks": {
            "PreToolUse": [
                {
                    "matcher": "Bash",
                    "hooks": [
                        {"type": "command", "command": "${CLAUDE_PLUGIN_ROOT}/hooks/guard.sh"}
                    ],
                }
            ],
            "PostToolUse": [
                {
                    "matcher": "Read",
                    "hooks": [
                        {"type": "command", "command": "${CLAUDE_PLUGIN_ROOT}/hooks/note.sh"}
                    ],
                }
            ],
            "Stop": [{"hooks": [{"type": "command", "command": "echo done"}]}],
        }
    }
    (plugin / "hooks" / "hooks.json").write_text(json.dumps(hooks))
    return plugin


def listed(repo: Path, *args: str) -> list[dict]:
    out = shoal(*args, "--json", cwd=repo, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_a_claude_code_plugin_adds_its_parts_and_removing_it_removes_them(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    source = make_plugin(tmp_path / "src")
    outside = tmp_path / "secret.txt"
    outside.write_text("not the plugin's")
    (source / "skills" / "leak.txt").symlink_to(outside)  # dropped when it is added
    (source / "agents" / "same.md").symlink_to("reviewer.md")  # inside: kept
    added = shoal("plugin", "add", str(source), cwd=repo)
    assert added.returncode == 0, added.stderr
    installed = home.root / "plugins" / "demo-kit"
    assert f"added plugin demo-kit (user) in {installed}" in added.stdout
    assert "skills: tidy-imports" in added.stdout and "commands: /explain" in added.stdout
    [row] = listed(repo, "plugin", "list")
    assert (row["name"], row["scope"], row["status"], row["version"]) == (
        "demo-kit", "user", "ready", "1.2.0"
    )  # fmt: skip
    parts = row["parts"]
    assert parts["skills"] == ["tidy-imports"]
    assert parts["agents"] == ["code-reviewer", "code-reviewer"]
    assert not (installed / "skills" / "leak.txt").exists()
    assert (installed / "agents" / "same.md").is_symlink()
    assert parts["commands"] == ["explain"] and parts["mcp_servers"] == ["kv"]
    assert [(h["event"], h["supported"]) for h in parts["hooks"]] == [
        ("PreToolUse", True), ("PostToolUse", True), ("Stop", False)
    ]  # fmt: skip
    text = shoal("plugin", "list", cwd=repo, check=True).stdout
    assert "hooks not run (events shoal does not have): Stop" in text
    skills = {s["name"]: s for s in listed(repo, "skills", "list")}
    assert skills["tidy-imports"]["layer"] == "user"
    [server] = [s for s in listed(repo, "mcp", "list") if s["name"] == "kv"]
    assert server["plugin"] == "demo-kit" and server["status"] == "ready"
    assert f"{installed}/kv.py" in server["target"]  # ${CLAUDE_PLUGIN_ROOT} filled in
    assert agent_dirs(home, repo) == [("user", installed / "agents")]
    commands = discover_commands(home, repo)
    assert commands.get("explain").render("calc.py") == (
        "Explain what calc.py does, in two sentences."
    )
    assert commands.get("demo-kit:explain") is commands.get("explain")
    # Commands of one's own and of the repository, by name, later layers winning.
    (home.root / "commands").mkdir()
    (home.root / "commands" / "hello.md").write_text("Say hello to $1 and $2.")
    (repo / ".claude" / "commands").mkdir(parents=True)
    (repo / ".claude" / "commands" / "explain.md").write_text("Our own: $ARGUMENTS")
    commands = discover_commands(home, repo)
    assert commands.get("hello").render("Ann 'Bo B'") == "Say hello to Ann and Bo B."
    assert commands.get("explain").render("x") == "Our own: x"
    assert commands.get("demo-kit:explain").render("x").startswith("Explain what x does")
    (repo / ".claude" / "commands" / "explain.md").unlink()
    # The copy is the plugin: the source folder can go.
    shutil.rmtree(source)
    assert listed(repo, "plugin", "list")[0]["status"] == "ready"
    removed = shoal("plugin", "remove", "demo-kit", cwd=repo)
    assert removed.returncode == 0 and "removed plugin demo-kit (user)" in removed.stdout
    assert listed(repo, "plugin", "list") == [] and not installed.exists()
    assert "tidy-imports" not in {s["name"] for s in listed(repo, "skills", "list")}
    assert [s for s in listed(repo, "mcp", "list") if s["name"] == "kv"] == []
    assert agent_dirs(home, repo) == [] and discover_commands(home, repo).get("explain") is None


def test_a_broken_manifest_is_one_line_of_error(home: Home, tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path)
    manifest = plugin / ".claude-plugin" / "plugin.json"
    cases = {
        '{"name": "demo-kit",': "not valid JSON",
        '{"version": "1"}': "name: Field required",
        '{"name": "two words"}': "name: String should match pattern",
        '{"name": "x", "agents": "../../elsewhere"}': "'../../elsewhere' leads outside the plugin",
    }
    for text, reason in cases.items():
        manifest.write_text(text)
        result = shoal("plugin", "add", str(plugin))
        assert result.returncode == 1, text
        assert result.stderr.count("\n") == 1 and reason in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    manifest.unlink()
    missing = shoal("plugin", "add", str(plugin))
    assert missing.returncode == 1 and "has no .claude-plugin/plugin.json" in missing.stderr
    nowhere = shoal("plugin", "add", str(tmp_path / "nothing"))
    assert nowhere.returncode == 1 and "neither a folder nor a git URL" in nowhere.stderr
    assert not (home.root / "plugins.json").exists()  # nothing half-installed


def test_a_projects_plugins_need_approval_and_can_be_switched_off(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    # Someone committed a plugin to the repository: it is there, but not used.
    make_plugin(repo / ".shoal" / "plugins")
    (repo / ".shoal" / "plugins.json").write_text(json.dumps({"plugins": {"demo-kit": {}}}))
    [row] = listed(repo, "plugin", "list")
    assert (row["scope"], row["status"]) == ("project", "needs approval")
    assert "tidy-imports" not in {s["name"] for s in listed(repo, "skills", "list")}
    assert not any(s["name"] == "kv" for s in listed(repo, "mcp", "list"))
    assert discover_commands(home, repo).get("explain") is None
    assert shoal("plugin", "approve", "demo-kit", cwd=repo).returncode == 0
    assert listed(repo, "plugin", "list")[0]["status"] == "ready"
    skills = {s["name"]: s for s in listed(repo, "skills", "list")}
    assert skills["tidy-imports"]["layer"] == "project"
    # A change to any file of it needs approval again.
    (repo / ".shoal" / "plugins" / "demo-kit" / "commands" / "explain.md").write_text("Do evil.")
    assert listed(repo, "plugin", "list")[0]["status"] == "needs approval"
    assert discover_commands(home, repo).get("explain") is None
    shoal("plugin", "approve", "demo-kit", cwd=repo, check=True)
    off = shoal("plugin", "disable", "demo-kit", cwd=repo)
    assert off.returncode == 0 and "demo-kit (project): disabled" in off.stdout
    assert "tidy-imports" not in {s["name"] for s in listed(repo, "skills", "list")}
    shoal("plugin", "enable", "demo-kit", cwd=repo, check=True)
    assert "tidy-imports" in {s["name"] for s in listed(repo, "skills", "list")}
    # One a user adds to the project is approved by adding it.
    other = make_plugin(tmp_path / "src", "other-kit")
    shoal("plugin", "add", str(other), "--scope", "project", cwd=repo, check=True)
    statuses = {r["name"]: r["status"] for r in listed(repo, "plugin", "list")}
    assert statuses == {"demo-kit": "ready", "other-kit": "ready"}
    assert (repo / ".shoal" / "plugins" / "other-kit" / "skills").is_dir()


def test_a_plugin_comes_from_a_git_url(home: Home, tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path / "src")
    for cmd in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "plugin"],
    ):
        subprocess.run(["git", "-C", str(plugin), *cmd], check=True)
    url = f"file://{plugin}"
    added = shoal("plugin", "add", url)
    assert added.returncode == 0, added.stderr
    copy = home.root / "plugins" / "demo-kit"
    assert (copy / "skills" / "tidy-imports" / "SKILL.md").is_file()
    assert not (copy / ".git").exists()
    assert listed(tmp_path, "plugin", "list")[0]["source"] == url
    bad = shoal("plugin", "add", f"file://{tmp_path}/no-such-repo.git")
    assert bad.returncode == 1 and "cannot clone" in bad.stderr


def test_commands_run_as_tasks_and_in_chat_and_hooks_guard_tool_calls(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    shoal("plugin", "add", str(make_plugin(tmp_path / "src")), check=True)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("shell", command="rm calc.py"),
                    call("read_file", path="calc.py"),
                    call("finish", summary="explained"),
                ],
                "scripted-evaluator": [verdict(0.3)],
                "scripted-chat": ["It adds, or tries to."],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        ran = shoal(
            "run", "calc.py", "--command", "explain", "-C", str(repo), "--json", "-i", "1",
            "--permission-mode", "bypass", env=model_env(server), timeout=120,
        )  # fmt: skip
        planned = json.dumps(server.requests_for("scripted-planner")[0]["messages"])
        executor = server.requests_for("scripted-executor")
        chat = chat_lines(repo, ["/explain calc.py", "/commands"], chat_env(server))
        asked = json.dumps(server.requests_for("scripted-chat")[0]["messages"])
    assert json.loads(ran.stdout)["task_id"], ran.stderr
    assert "Explain what calc.py does, in two sentences." in planned
    refused = executor[1]["messages"][-1]["content"]
    assert "shell was refused by the demo-kit plugin's hook: no rm here" in refused
    assert str(home.root / "plugins" / "demo-kit") in refused  # CLAUDE_PLUGIN_ROOT was set
    assert (repo / "calc.py").exists()  # bypass mode allowed it; the hook did not
    read = executor[2]["messages"][-1]["content"]
    assert "def add" in read and "[demo-kit hook] remember to run the tests" in read
    assert chat.returncode == 0, chat.stderr
    assert "Explain what calc.py does, in two sentences." in asked
    assert "/explain FILE (demo-kit)" in chat.stdout
    missing = shoal("run", "--command", "nosuch", "-C", str(repo), env=model_env(server))
    assert missing.returncode == 2 and "no command 'nosuch' (commands: explain)" in missing.stderr


def test_hooks_get_no_keys_and_a_failing_or_slow_hook_lets_the_call_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoal.plugins.hooks import Hook, ToolHooks

    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-hooks-123")

    def hooks(command: str, timeout: float = 5) -> ToolHooks:
        return ToolHooks(
            [Hook("kit", tmp_path, "PreToolUse", "Bash", command, timeout)], tmp_path, "t1"
        )

    told = hooks("env; exit 2").before("shell", {"command": "ls"}, None)
    assert told and "CLAUDE_PLUGIN_ROOT=" in told and "PATH=" in told
    assert "sk-not-for-hooks-123" not in told and "OPENAI_API_KEY" not in told
    started = time.monotonic()
    assert hooks("sleep 5; exit 2", timeout=1).before("shell", {"command": "ls"}, None) is None
    assert time.monotonic() - started < 4
    assert hooks("exit 1").before("shell", {"command": "ls"}, None) is None
    assert hooks("exit 2").before("read_file", {"path": "x"}, None) is None  # not matched
