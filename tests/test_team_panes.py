"""Teammates in tmux panes: real members on a private tmux server, a scripted model, real kills."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoal.cli.app import app
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.mailbox.client import MailboxClient
from shoal.mailbox.envelope import TeamMemberStatus, TeamStatusRequest
from shoal.orchestrator import daemon
from shoal.paths import Home
from shoal.store.queries import read
from tests.conftest import processes_with_home, shoal, wait_for
from tests.stall_roles import SleepRequest
from tests.test_loop import call, make_repo, model_env, plan, verdict

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

STEER = "STEER-7f3 keep the change to one line"


@pytest.fixture
def tmux(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A private tmux server for the test (SHOAL_TMUX_SOCKET); only it is ever killed."""
    socket = f"shoal-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("SHOAL_TMUX_SOCKET", socket)
    yield ["tmux", "-L", socket]
    daemon.stop(home, timeout=15)  # members first: a killed pane would be respawned
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def _tmux(tmux: list[str], *args: str) -> str:
    return subprocess.run([*tmux, *args], capture_output=True, text=True).stdout


def _team(name: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(shoal("team", "status", name, "--json", check=True, env=env).stdout)


def _clients(tmux: list[str]) -> list[str]:
    return _tmux(tmux, "list-clients", "-F", "#{client_session}").split()


def _pane_processes(home: Home) -> list[int]:
    found = []
    for pid in processes_with_home(str(home.root)):
        try:
            if b"shoal.tmux.pane" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass  # gone meanwhile
    return found


@needs_tmux
def test_a_pane_member_is_respawned_in_place_takes_steering_and_leaves_a_transcript(
    home: Home, tmux: list[str], tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    # In flight when the pane's process is killed; never answered.
                    {"content": "thinking", "delay": 120},
                    # The respawned member starts the step again; a person types meanwhile.
                    {**call("read_file", path="calc.py"), "delay": 3},
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("finish", summary="add now adds"),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    # The person's own session on the same server: shoal must leave it as it is.
    _tmux(tmux, "new-session", "-d", "-s", "mine", "-x", "90", "-y", "20", "sleep 600")
    mine = _tmux(
        tmux, "list-panes", "-t", "=mine:", "-F", "#{pane_id} #{pane_width}x#{pane_height}"
    )
    with ScriptedModelServer(script) as server:
        env = model_env(server)
        up = shoal("team", "up", "red", "--members", "executor", "--json", env=env)
        assert up.returncode == 0, up.stderr
        member = json.loads(up.stdout)["members"][0]
        assert member["name"] == "executor@red-1" and member["state"] == "ready"
        pane = member["pane_id"]
        assert pane.startswith("%") and member["alive"] and member["restarts"] == 0
        assert _tmux(tmux, "display-message", "-p", "-t", pane, "#{pane_pid}").strip() == str(
            member["pid"]
        )
        assert _tmux(tmux, "show-options", "-pv", "-t", pane, "remain-on-exit").strip() == "on"
        cmdline = Path(f"/proc/{member['pid']}/cmdline").read_bytes().decode()
        assert "shoal.tmux.pane" in cmdline and server.base_url not in cmdline  # env via FIFO

        # From a terminal outside tmux, attach; from inside tmux, switch the client.
        shoal_cmd = (
            f"SHOAL_HOME={home.root} PYTHONPATH={os.environ['PYTHONPATH']} "
            f"{sys.executable} -m shoal team attach red"
        )
        _tmux(
            tmux, "new-session", "-d", "-s", "viewer", "-x", "100", "-y", "30", f"TMUX= {shoal_cmd}"
        )
        wait_for(lambda: _clients(tmux) == ["shoal-red"], timeout=20, what="an attached client")
        _tmux(tmux, "kill-session", "-t", "=viewer")
        wait_until_attached = (
            "until [ \"$(tmux display -p '#{session_attached}')\" = 1 ]; do sleep 0.1; done"
        )
        _tmux(
            tmux,
            "new-session",
            "-d",
            "-s",
            "inner",
            f"{wait_until_attached}; {shoal_cmd}; sleep 60",
        )
        attach_inner = f"TMUX= tmux -L {tmux[2]} attach -t =inner"
        _tmux(tmux, "new-session", "-d", "-s", "viewer", "-x", "100", "-y", "30", attach_inner)
        wait_for(lambda: _clients(tmux) == ["shoal-red"], timeout=20, what="a switched client")
        for session in ("viewer", "inner"):
            _tmux(tmux, "kill-session", "-t", f"={session}")
        no_terminal = shoal("team", "attach", "red")
        assert no_terminal.returncode == 1
        assert "attaching needs a terminal" in no_terminal.stderr
        assert len(no_terminal.stderr.splitlines()) == 1

        command = ["run", "fix the add function", "-C", str(repo), "--team", "red", "--json"]
        run = subprocess.Popen(
            [sys.executable, "-m", "shoal", *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env},
        )
        try:
            wait_for(
                lambda: server.requests_for("scripted-executor"),
                timeout=90,
                what="the executor's first model call",
            )
            busy = _team("red", env)["members"][0]
            assert busy["task_id"] and busy["phase"] == "executing"
            os.kill(member["pid"], signal.SIGKILL)
            wait_for(
                lambda: len(server.requests_for("scripted-executor")) >= 2,
                timeout=90,
                what="the respawned member to take the step again",
            )
            _tmux(tmux, "send-keys", "-t", pane, "-l", STEER)
            _tmux(tmux, "send-keys", "-t", pane, "Enter")
            out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
        done = json.loads(out or "{}")
        assert done.get("status") == "accepted", err
        assert "a + b" in (repo / "calc.py").read_text()
        executor = server.requests_for("scripted-executor")
        assert len(executor) == 4
        assert STEER in json.dumps(executor[2]["messages"])  # the turn after the person typed
        assert "(person)" in json.dumps(executor[2]["messages"])
        assert STEER not in json.dumps(executor[1]["messages"])

        after = _team("red", env)["members"][0]
    assert after["pane_id"] == pane  # the same pane, respawned in place
    assert after["restarts"] == 1 and after["alive"] and after["pid"] != member["pid"]
    assert after["tokens"] > 0 and not after["stalled"]
    assert _tmux(tmux, "display-message", "-p", "-t", pane, "#{pane_pid}").strip() == str(
        after["pid"]
    )
    steering = read(home, "messages.recent", {"kind": "team.message", "limit": 5})
    assert [row[2] for row in steering.rows] == ["executor@red-1.pane"]  # sender: the pane

    down = shoal("team", "down", "red")
    assert down.returncode == 0 and "team red is down" in down.stdout, down.stderr
    assert _tmux(tmux, "list-panes", "-a", "-F", "#{session_name}").split() == ["mine"]
    assert (
        _tmux(tmux, "list-panes", "-t", "=mine:", "-F", "#{pane_id} #{pane_width}x#{pane_height}")
        == mine
    )
    assert not _pane_processes(home)
    assert shoal("team", "status", "red").returncode == 1

    def transcripts() -> list[dict]:
        rows = read(home, "team.transcripts", {"team": "red"})
        return [dict(zip(rows.columns, row, strict=True)) for row in rows.rows]

    kept = wait_for(lambda: len(transcripts()) == 2 and transcripts(), what="two transcripts")
    by_reason = {row["reason"]: row for row in kept}  # type: ignore[union-attr]
    assert set(by_reason) == {"restarted", "stopped"}
    assert all(row["pane_id"] == pane and row["member"] == "executor@red-1" for row in kept)
    # What it was doing when killed: the work it had been given (its phase line may not
    # have been drawn yet when the kill came).
    assert "iteration 1: fix the add function" in by_reason["restarted"]["text"]
    final = by_reason["stopped"]["text"]
    assert STEER in final and "read_file" in final and "edit_file" in final
    assert "iteration 1 done" in final
    shown = shoal("team", "transcripts", "red", "--member", "executor@red-1")
    assert STEER in shown.stdout


def _members(home: Home, name: str) -> list[TeamMemberStatus]:
    reply = daemon.request(home, TeamStatusRequest(name=name))
    return reply.teams[0].members


def test_a_busy_member_that_makes_no_progress_is_flagged_and_restarted(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_STALL_TIMEOUT", "1")
    monkeypatch.setenv("SHOAL_IDLE_TIMEOUT", "1")
    up = shoal(
        "team", "up", "slow", "--members", "tests.stall_roles:SleeperActor", "--mode", "process"
    )
    assert up.returncode == 0, up.stderr
    time.sleep(2)  # no traffic for twice the idle timeout, but a team is up: it stays
    assert daemon.running_pid(home) is not None
    member = _members(home, "slow")[0]
    assert member.pane_id is None and member.alive and member.state == "ready"
    with MailboxClient(home.mailbox_endpoint) as client:
        client.send(member.name, SleepRequest(seconds=30))
        flagged = wait_for(
            lambda: (m := _members(home, "slow")[0]).stalled and m.restarts >= 1 and m,
            timeout=30,
            what="the stalled member to be flagged and restarted",
        )
    assert flagged.stalls >= 1 and flagged.pid != member.pid  # type: ignore[union-attr]
    events = read(home, "actor_events.recent", {"kind": "stalled", "limit": 5})
    assert events.rows and events.rows[0][1] == member.name
    cli = CliRunner()
    assert "STALLED" in cli.invoke(app, ["team", "status", "slow"]).stdout
    down = cli.invoke(app, ["team", "down", "slow", "--force"])
    assert down.exit_code == 0 and "team slow is down" in down.stdout, down.stderr
    assert json.loads(cli.invoke(app, ["team", "status", "--json"]).stdout) == {"teams": []}


def test_bad_team_commands_fail_in_one_line(home: Home) -> None:
    cli = CliRunner()
    cases = [
        (("team", "up", "no good", "--members", "executor"), 2, "is not a team name"),
        (("team", "up", "red", "--members", "nosuchrole"), 2, "unknown actor role"),
        (("team", "up", "red", "--members", "executor@x"), 2, "plain roles"),
        (("team", "up", "red", "--members", "executor", "--mode", "ssh"), 2, "--mode"),
        (("team", "status", "nope"), 1, "no team named 'nope' is up"),
        (("team", "attach", "nope"), 1, "no team named 'nope' is up"),
        (("team", "down", "nope"), 1, "no team named 'nope' is up"),
    ]
    for args, code, text in cases:
        result = cli.invoke(app, list(args))
        assert result.exit_code == code, (args, result.stderr)
        assert text in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert daemon.running_pid(home) is None  # none of them started an orchestrator
