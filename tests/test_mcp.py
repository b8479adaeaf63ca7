"""MCP: a real stdio server (written here with the MCP SDK) used by the executor, and shoal as one.

The server is a small ``MCPServer`` script with a read-only ``lookup`` and a
``store`` that is not read-only; it appends its pid to a file so the tests can
see that it ran and that it is gone afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.mcp import tools as mcp_tools
from shoal.mcp.config import discover
from shoal.paths import Home
from shoal.tools import Permissions, Rule, Toolbox, Workspace
from shoal.tools.permissions import PermissionRequest, ToolKind
from tests.conftest import REPO, shoal, wait_for
from tests.test_loop import call, make_repo, model_env, plan, verdict


class _Called:
    """An MCP tool called through a toolbox, as the executor calls it: (output, ok)."""

    def __init__(self, box: Toolbox, tool: Any) -> None:
        self.box, self.name, self.close = box, tool.name, tool.close

    def run(self, arguments: dict[str, Any]) -> tuple[str, bool]:
        result = self.box.call(self.name, arguments)
        return result.output, result.ok


def start_tools(
    home: Home, cwd: Path, permissions: Permissions, asker: Any, outputs: Path | None, notice: Any
) -> list[_Called]:
    """The servers' tools in a toolbox of ``permissions`` (it checks and fits their calls)."""
    found = mcp_tools.start_tools(home, cwd, notice)
    box = Toolbox(Workspace([cwd], outputs or cwd / "out"), permissions, asker=asker)
    box.add(found)
    return [_Called(box, tool) for tool in found]


pytestmark = pytest.mark.timeout(120)

SERVER = """\
import os, sys, time
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()}\\n")
app = MCPServer("kv")


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def lookup(key: str) -> str:
    \"\"\"The value stored under key.\"\"\"
    return {"alpha": "value-42", "secret": "hunter2"}.get(key, "no such key")


@app.tool()
def store(key: str, value: str) -> str:
    \"\"\"Store a value under key.\"\"\"
    return f"stored {key}={value}"


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def nap(seconds: float) -> str:
    \"\"\"Sleep, then answer.\"\"\"
    time.sleep(seconds)
    return "awake"


app.run("stdio")
"""


HTTP_SERVER = """\
import sys
from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("web", log_level="WARNING")


@app.tool()
def whoami(ctx: Context) -> str:
    \"\"\"The Authorization header the client sent.\"\"\"
    return ctx.request_context.request.headers.get("authorization", "none")


app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
"""


def write_server(root: Path) -> Path:
    script = root / "kv_server.py"
    script.write_text(SERVER)
    return script


def pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def project_server(repo: Path, script: Path, pid_file: Path, **extra: Any) -> None:
    """A project-scope server as a cloned repository would bring it (not added by the user)."""
    (repo / ".shoal").mkdir(exist_ok=True)
    entry = {"command": sys.executable, "args": [str(script), str(pid_file)], **extra}
    (repo / ".shoal" / "mcp.json").write_text(json.dumps({"mcpServers": {"proj": entry}}))


def shoal_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI run in ``cwd`` (project-scope commands work on the directory they run in)."""
    return shoal(*args, cwd=cwd, check=True)


def tool_messages(requests: list[dict[str, Any]]) -> list[str]:
    """The tool results in the conversation of the last request, in order."""
    last = requests[-1]["messages"]
    return [m["content"] for m in last if m["role"] == "tool"]


async def _serve_session(repo: Path, env: dict[str, str]) -> dict[str, Any]:
    """Drive `shoal mcp serve` with the SDK's stdio client: look around, then run a task."""
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "shoal", "mcp", "serve"],
        cwd=str(repo),
        env={"PYTHONPATH": str(REPO), "SHOAL_HOME": os.environ["SHOAL_HOME"], **env},
    )
    seen: dict[str, Any] = {}
    async with Client(params, read_timeout_seconds=100) as client:
        listed = await client.list_tools()
        seen["tools"] = {t.name: t for t in listed.tools}
        seen["read"] = await client.call_tool("read_file", {"path": "calc.py"})
        seen["outside"] = await client.call_tool("read_file", {"path": "../kv_server.py"})
        seen["status"] = await client.call_tool("git_status", {})
        seen["task"] = await client.call_tool(
            "run_task", {"description": "fix the add function", "iterations": 1}
        )
    return seen


def test_the_executor_uses_an_mcp_server_through_shoal_mcp_serve(
    home: Home, tmp_path: Path
) -> None:
    """`mcp add`, then a task (submitted with run_task over `shoal mcp serve`) calls the tool."""
    repo = make_repo(tmp_path)
    script = write_server(tmp_path)
    user_pids, project_pids = tmp_path / "kv.pids", tmp_path / "proj.pids"
    shoal("mcp", "add", "kv", "--", sys.executable, str(script), str(user_pids), check=True)
    project_server(repo, script, project_pids)  # never approved: must not start
    executor_script = [
        call("kv__lookup", key="alpha"),
        call("kv__store", key="k", value="v"),
        call("proj__lookup", key="alpha"),
        call("finish", summary="looked it up"),
    ]
    replies = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": executor_script,
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(replies) as server:
        seen = asyncio.run(_serve_session(repo, model_env(server)))
        executor = server.requests_for("scripted-executor")

    # shoal mcp serve: its tools, confined and read-only ones marked so.
    assert {"read_file", "glob", "grep", "git_status", "git_diff", "git_log", "run_task"} <= set(
        seen["tools"]
    )
    assert seen["tools"]["read_file"].annotations.read_only_hint is True
    assert not seen["tools"]["run_task"].annotations.read_only_hint
    assert "return a - b" in seen["read"].content[0].text and not seen["read"].is_error
    assert seen["outside"].is_error and "outside the workspace" in seen["outside"].content[0].text
    assert not seen["status"].is_error and "##" in seen["status"].content[0].text
    task = seen["task"]
    assert not task.is_error, task.content
    done = json.loads(task.content[0].text)
    assert done["iterations"] == 1 and done["summary"] == "looked it up"
    assert done["task_id"] and done["status"] in ("accepted", "unaccepted")

    # The executor saw the server's tools with their schemas, and the result reached the model.
    offered = {t["function"]["name"]: t["function"] for t in executor[0]["tools"]}
    assert offered["kv__lookup"]["parameters"]["properties"]["key"]["type"] == "string"
    assert "kv__store" in offered and "proj__lookup" not in offered
    results = tool_messages(executor)
    assert results[0] == "value-42"
    # store is not read-only: without an allow rule there is nobody to ask, so it is refused.
    assert "needs approval" in results[1] and "--allow store" in results[1]
    assert "no tool named 'proj__lookup'" in results[2]

    # The server ran once and is gone; the unapproved project server never started.
    (pid,) = pids(user_pids)
    wait_for(lambda: not alive(pid), timeout=10, what="the MCP server to exit")
    assert not project_pids.exists()
    logs = "".join(p.read_text() for p in (home.logs / "actors").glob("*.log"))
    assert "MCP server proj" in logs and "needs approval" in logs
    assert not list((home.root / "run" / "mcp").glob("*.pid"))  # pid files cleaned up


def test_permission_rules_and_project_approval_govern_mcp_tools(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = write_server(tmp_path)
    pid_file = tmp_path / "proj.pids"
    project_server(repo, script, pid_file)
    # A repository's Claude Code .mcp.json is read too, and needs approval the same way.
    (repo / ".mcp.json").write_text(json.dumps({"mcpServers": {"legacy": {"command": "x"}}}))
    notices: list[str] = []

    def tools(permissions: Permissions) -> dict[str, Any]:
        found = start_tools(home, repo, permissions, None, tmp_path / "out", notices.append)
        return {t.name: t for t in found}

    def listed() -> dict[str, Any]:
        out = shoal_in(repo, "mcp", "list", "--json").stdout
        return {row["name"]: row for row in map(json.loads, out.splitlines())}

    def status() -> str:
        return next(s.status for s in discover(home, repo).servers if s.name == "proj")

    def close(found: dict[str, Any]) -> None:
        for tool in found.values():
            if tool.close:
                tool.close()

    assert {(n, r["scope"], r["status"]) for n, r in listed().items()} == {
        ("proj", "project", "needs approval"),
        ("legacy", "project", "needs approval"),
    }
    assert tools(Permissions()) == {} and not pid_file.exists()
    assert any("shoal mcp approve proj" in n for n in notices)

    assert "approved proj" in shoal_in(repo, "mcp", "approve", "proj").stdout
    assert status() == "ready"
    deny_store = Rule(action="deny", tool="proj__store")
    secret = Rule(action="deny", tool="proj__*", pattern="*secret*")
    found = tools(Permissions(mode="accept-edits", rules=[deny_store, secret]))
    try:
        assert set(found) == {"proj__lookup", "proj__store", "proj__nap"}
        assert found["proj__lookup"].run({"key": "alpha"}) == ("value-42", True)
        text, ok = found["proj__store"].run({"key": "k", "value": "v"})
        assert not ok and "denied by the permission rule (deny proj__store)" in text
        text, ok = found["proj__lookup"].run({"key": "secret"})
        assert not ok and "hunter2" not in text and "*secret*" in text
    finally:
        close(found)
    (pid,) = pids(pid_file)
    assert not alive(pid)

    # A changed definition (here: allowing store, a 1 s call timeout) needs a new approval;
    # then store runs without asking, except in plan mode, which refuses what is not read-only.
    project_server(repo, script, pid_file, allow=["store"], timeout=1)
    assert status() == "needs approval"
    shoal_in(repo, "mcp", "approve", "proj")
    found = tools(Permissions(mode="accept-edits"))
    try:
        assert found["proj__store"].run({"key": "k", "value": "v"}) == ("stored k=v", True)
        text, ok = found["proj__nap"].run({"seconds": 5})
        assert not ok and text.startswith("proj__nap failed:"), text
        assert found["proj__nap"].run({"seconds": 0}) == ("awake", True)  # the session goes on
    finally:
        close(found)
    plan_mode = Permissions(mode="plan", rules=[Rule(action="allow", tool="proj__store")])
    request = PermissionRequest("proj__store", ToolKind.MCP, "{}")
    assert plan_mode.decide(request).action == "deny"
    assert not any(alive(p) for p in pids(pid_file))

    # A project server you add yourself is approved by adding it; --allow lands in its entry.
    shoal_in(repo, "mcp", "add", "mine", "--scope", "project", "--allow", "*", "--", "mine-server")
    assert next(s for s in discover(home, repo).servers if s.name == "mine").approved
    added = json.loads((repo / ".shoal" / "mcp.json").read_text())["mcpServers"]["mine"]
    assert added["allow"] == ["*"] and listed()["mine"]["allow"] == ["*"]


def test_mcp_rule_names_and_bad_servers(home: Home, tmp_path: Path) -> None:
    # Rules may name MCP tools (not known until their servers start) and whole servers.
    ws = Workspace([tmp_path], tmp_path / "out")
    Toolbox(ws, Permissions(rules=[Rule(action="deny", tool="github__*")]))
    with pytest.raises(ValueError, match="unknown tools shel"):
        Toolbox(ws, Permissions(rules=[Rule(action="deny", tool="shel")]))
    with pytest.raises(ValueError):
        Rule(action="deny", tool="bad__name__*x")
    every = Permissions(rules=[Rule(action="deny", tool="github__*")])
    assert every.decide(PermissionRequest("github__create_issue", ToolKind.READ, "{}")).action == (
        "deny"
    )
    assert every.decide(PermissionRequest("gitlab__x", ToolKind.READ, "{}")).action == "allow"

    # A server that cannot start is reported in one line; the others still load.
    notices: list[str] = []
    shoal("mcp", "add", "ghost", "-e", "API_KEY=abc123", "--", "no-such-command-here", check=True)
    listing = shoal("mcp", "list", check=True).stdout
    assert "API_KEY" in listing and "abc123" not in listing
    bad = shoal("mcp", "add", "two__words", "--", "x")
    assert bad.returncode == 2 and "not a server name" in bad.stderr
    no_url = shoal("mcp", "add", "web", "--transport", "http")
    assert no_url.returncode == 2 and "url" in no_url.stderr and "Traceback" not in no_url.stderr
    assert start_tools(home, tmp_path, Permissions(), None, None, notices.append) == []
    assert notices == [
        "MCP server ghost failed to start: command 'no-such-command-here' was not found or is "
        f"not executable (its stderr: {home.logs / 'mcp'})"
    ]
    assert (home.root / "mcp.json").stat().st_mode & 0o777 == 0o600

    # Failure messages (logged, shown to the model, recorded) never carry a secret.
    from shoal.mcp.config import ServerConfig
    from shoal.mcp.host import McpHost

    web = ServerConfig.model_validate(
        {"url": "https://h/mcp?key=${KEY}", "headers": {"Authorization": "Bearer ${TOK}"}}
    )
    secrets = web.secrets({"KEY": "k3y-value", "TOK": "t0ken-value"})
    host = McpHost(tmp_path / "run", tmp_path / "logs", tmp_path, secrets=secrets)
    host.close()
    failure = RuntimeError("401 for https://h/mcp?key=k3y-value (sent Bearer t0ken-value)")
    assert host.reason(failure) == "RuntimeError: 401 for https://h/mcp?key=*** (sent ***)"
    removed = shoal("mcp", "remove", "ghost", check=True)
    assert "removed ghost" in removed.stdout
    assert shoal("mcp", "remove", "ghost").returncode == 1


def test_an_http_server_gets_its_headers_with_secrets_from_the_environment(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "web.py").write_text(HTTP_SERVER)
    web = subprocess.Popen(
        [sys.executable, str(tmp_path / "web.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _accepts(port), timeout=30, what="the HTTP MCP server")
        url = f"http://127.0.0.1:{port}/mcp"
        header = "Authorization: Bearer ${WEB_TOKEN}"
        shoal("mcp", "add", "web", "--transport", "http", "--url", url, "-H", header, check=True)
        assert "${WEB_TOKEN}" in (home.root / "mcp.json").read_text()  # the secret is not
        notices: list[str] = []
        monkeypatch.delenv("WEB_TOKEN", raising=False)
        assert start_tools(home, tmp_path, Permissions(), None, None, notices.append) == []
        assert notices == ["MCP server web was not started: ${WEB_TOKEN} is used but not set"]
        monkeypatch.setenv("WEB_TOKEN", "s3cret")
        # whoami is not marked read-only, so it takes an allow rule (there is nobody to ask).
        allow = Permissions(rules=[Rule(action="allow", tool="web__whoami")])
        found = start_tools(home, tmp_path, allow, None, None, notices.append)
        try:
            assert [t.name for t in found] == ["web__whoami"] and len(notices) == 1
            assert found[0].run({}) == ("Bearer s3cret", True)
        finally:
            for tool in found:
                if tool.close:
                    tool.close()
    finally:
        web.terminate()
        web.wait(10)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_servers_left_by_a_killed_actor_are_killed_by_the_next_host(tmp_path: Path) -> None:
    """A stdio server is in its own session, out of reach of the supervisor's kill of its actor."""
    from shoal.mcp.host import McpHost

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid is now free: the owner of the files below is dead
    left, reused = run_dir / f"{gone.pid}-executor-9-abc-kv.pid", run_dir / f"{gone.pid}-x-y.pid"

    def server(marker: Path) -> subprocess.Popen[bytes]:
        # Like a server that ignores the end of its stdin, started the way the host starts one.
        return subprocess.Popen(
            ["sleep", "60"], start_new_session=True, env={"SHOAL_MCP_PID_FILE": str(marker)}
        )

    stubborn, stranger = server(left), server(tmp_path / "another.pid")
    try:
        left.write_text(f"{stubborn.pid}\n")
        reused.write_text(f"{stranger.pid}\n")  # a pid file whose pid now names something else
        McpHost(run_dir, tmp_path / "logs", tmp_path).close()
        assert stubborn.wait(10) == -9
        assert stranger.poll() is None  # not ours: never killed
        assert not list(run_dir.glob("*.pid"))
    finally:
        for proc in (stubborn, stranger):
            proc.kill()
            proc.wait()


ENV_SERVER = """\
import os, sys
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

app = MCPServer("envy")


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def env(name: str) -> str:
    \"\"\"One of this server's environment variables.\"\"\"
    return os.environ.get(name, "<unset>")


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def last_arg() -> str:
    \"\"\"This server's last command-line argument.\"\"\"
    return sys.argv[-1]


app.run("stdio")
"""


def test_a_servers_env_and_args_are_filled_from_the_environment_when_it_starts(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "t0ken-" + os.urandom(6).hex()
    script = tmp_path / "env_server.py"
    script.write_text(ENV_SERVER)
    shoal(
        "mcp",
        "add",
        "envy",
        "--env",
        "TOKEN=${SHOAL_TEST_TOKEN}",
        "--env",
        "REGION=${SHOAL_TEST_REGION:-eu-west}",
        "--",
        sys.executable,
        str(script),
        "${SHOAL_TEST_ARG:-plain}",
        check=True,
    )
    stored = (home.root / "mcp.json").read_text()
    assert "${SHOAL_TEST_TOKEN}" in stored and "${SHOAL_TEST_REGION:-eu-west}" in stored

    # Set; set but empty and unset: the defaults stand in.
    monkeypatch.setenv("SHOAL_TEST_TOKEN", token)
    monkeypatch.setenv("SHOAL_TEST_REGION", "")
    monkeypatch.delenv("SHOAL_TEST_ARG", raising=False)
    notices: list[str] = []
    found = start_tools(home, tmp_path, Permissions(), None, None, notices.append)
    try:
        tools = {t.name: t for t in found}
        assert set(tools) == {"envy__env", "envy__last_arg"}, notices
        assert tools["envy__env"].run({"name": "TOKEN"}) == (token, True)
        assert tools["envy__env"].run({"name": "REGION"}) == ("eu-west", True)
        assert tools["envy__last_arg"].run({}) == ("plain", True)
    finally:
        for tool in found:
            if tool.close:
                tool.close()

    # The listing names the variables; no value filled in reaches it.
    env = {"SHOAL_TEST_TOKEN": token, "SHOAL_TEST_REGION": "us-east-9", "SHOAL_TEST_ARG": "given"}
    listing = shoal("mcp", "list", env=env, check=True).stdout
    rows = [
        json.loads(line) for line in shoal("mcp", "list", "--json", env=env).stdout.splitlines()
    ]
    assert "envy" in listing and "env REGION, TOKEN" in listing
    assert [r["target"].endswith("(env REGION, TOKEN)") for r in rows] == [True]
    for shown in (listing, json.dumps(rows)):
        assert token not in shown and "us-east-9" not in shown and "given" not in shown


def test_a_server_that_never_answers_its_handshake_fails_in_time_and_is_stopped(
    tmp_path: Path,
) -> None:
    from shoal.mcp.config import ServerConfig
    from shoal.mcp.host import McpHost

    mute = ServerConfig.model_validate(
        {"command": sys.executable, "args": ["-c", "import time; time.sleep(120)"]}
    )
    run_dir = tmp_path / "run"
    host = McpHost(run_dir, tmp_path / "logs", tmp_path)
    started = time.monotonic()
    try:
        tools, failures = host.start({"mute": mute}, timeout=1.0)
        took = time.monotonic() - started
        written = [pid for f in run_dir.glob("*") if f.is_file() for pid in pids(f)]
    finally:
        host.close()
    assert tools == [] and failures == {"mute": "it did not start within 1s"}
    assert took < 10, took
    assert written and not any(alive(pid) for pid in written)  # stopped with the host
