"""Teammates in tmux panes: real members on a private tmux server, a scripted model, real kills."""

from __future__ import annotations

import datetime as dt
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

from shoal import daemon
from shoal.cli.app import app
from shoal.client import query as read
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.mailbox.client import MailboxClient
from shoal.messages.teams import TeamMemberStatus, TeamStatus
from shoal.paths import Home
from tests.conftest import processes_with_home, shoal, wait_for
from tests.stall_roles import SleepRequest
from tests.test_loop import call, make_repo, model_env, plan, verdict

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

STEER = "STEER-7f3 keep the change to one line"
EARLY = "EARLY-2c9 touch only calc.py"


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


def _screen(tmux: list[str], pane: str) -> str:
    return _tmux(tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", pane)


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
        run = _start(command, env)
        try:
            wait_for(
                lambda: server.requests_for("scripted-executor"),
                timeout=90,
                what="the executor's first model call",
            )
            busy = _team("red", env)["members"][0]
            assert busy["task_id"] and busy["phase"] == "executing"
            # Steering while the first model call is in flight: the member shows it once it
            # holds it (unanswered until the task ends), then dies before its next turn.
            _tmux(tmux, "send-keys", "-t", pane, "-l", EARLY)
            _tmux(tmux, "send-keys", "-t", pane, "Enter")
            wait_for(
                lambda: (
                    "✉" in (shown := _tmux(tmux, "capture-pane", "-p", "-J", "-t", pane))
                    and EARLY in shown.split("✉", 1)[1]
                ),
                timeout=30,
                what="the member to show the steering it got",
            )
            os.kill(member["pid"], signal.SIGKILL)
            wait_for(
                lambda: len(server.requests_for("scripted-executor")) >= 2,
                timeout=90,
                what="the respawned member to take the step again",
            )
            # The respawned pane shows what it showed before, then why it is back.
            screen = wait_for(
                lambda: "(redelivered)" in (shown := _screen(tmux, pane)) and shown,
                what="the work it is given again",
            )
            back = "restarted after SIGKILL (restart 1); redelivered: exec.request "
            assert back in screen and "iteration 1, team.message from " in screen, screen
            assert screen.index(EARLY) < screen.index(back) < screen.index("(redelivered)")
            _tmux(tmux, "send-keys", "-t", pane, "-l", STEER)
            _tmux(tmux, "send-keys", "-t", pane, "Enter")
            out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
        done = json.loads(out or "{}")
        assert done.get("status") == "accepted", err
        assert "a + b" in (repo / "calc.py").read_text()
        # The team's executor did the work: shoal started no executor of its own.
        assert "executor" not in [a.role for a in daemon.status(home).actors]
        executor = server.requests_for("scripted-executor")
        assert len(executor) == 4
        assert STEER in json.dumps(executor[2]["messages"])  # the turn after the person typed
        assert "(person)" in json.dumps(executor[2]["messages"])
        assert STEER not in json.dumps(executor[1]["messages"])
        # The steering the killed member held reached the respawned one on its first turn.
        assert EARLY not in json.dumps(executor[0]["messages"])
        assert EARLY in json.dumps(executor[1]["messages"])
        assert json.dumps(executor[1]["messages"]).count(EARLY) == 1

        after = _team("red", env)["members"][0]
    assert after["pane_id"] == pane  # the same pane, respawned in place
    assert after["restarts"] == 1 and after["alive"] and after["pid"] != member["pid"]
    assert after["tokens"] > 0 and not after["stalled"]
    assert _tmux(tmux, "display-message", "-p", "-t", pane, "#{pane_pid}").strip() == str(
        after["pid"]
    )
    steering = read(home, "messages.recent", {"kind": "team.message", "limit": 5})
    # Two typed lines, each recorded once (sender: the pane), however often delivered.
    assert [row[2] for row in steering.rows] == ["executor@red-1.pane"] * 2

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
        rows = read(home, "team.transcripts", {"team": "red", "member": "executor@red-1"})
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


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``shoal *command`` in the background, its output kept for ``communicate``."""
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )


def _members(home: Home, name: str) -> list[TeamMemberStatus]:
    reply = daemon.request(home, TeamStatus(name=name))
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


def _geometry(tmux: list[str], session: str) -> str:
    """Each pane of a session, one a line, as tmux itself lays it out."""
    fmt = "#{window_id} #{pane_id} #{pane_left},#{pane_top} #{pane_width}x#{pane_height}"
    return _tmux(tmux, "list-panes", "-s", "-t", f"={session}:", "-F", fmt)


def _alive(pid: int) -> bool:
    """The process runs (a zombie its parent, tmux, has not reaped yet does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@needs_tmux
def test_a_five_member_team_gets_a_pane_each_and_goes_down_after_its_busy_member_answers(
    home: Home, tmux: list[str], tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                # In flight when `team down` comes: the member must finish the message.
                "scripted-executor": [{**call("read_file", path="calc.py"), "delay": 4}],
                # Never asked (the budget ends the task first) but served, as configured.
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    # The person's own panes on the same server, in two windows: shoal must not touch them.
    _tmux(tmux, "new-session", "-d", "-s", "mine", "-x", "90", "-y", "20", "sleep 600")
    _tmux(tmux, "split-window", "-d", "-h", "-t", "=mine:", "sleep 600")
    _tmux(tmux, "new-window", "-d", "-t", "=mine:", "sleep 600")
    mine = _geometry(tmux, "mine")
    assert len(mine.splitlines()) == 3

    with ScriptedModelServer(script) as server:
        env = {**model_env(server), "SHOAL_PRELOAD": ""}  # five panes importing litellm: slow
        up = shoal(
            "team", "up", "blue", "--members", "planner,executor*3,evaluator", "--json", env=env
        )
        assert up.returncode == 0, up.stderr
        members = {m["name"]: m for m in _team("blue", env)["members"]}
        order = [
            "lead@blue-1",  # joins a team with loop roles (issue 19)
            "planner@blue-1",
            *(f"executor@blue-{i}" for i in (1, 2, 3)),
            "evaluator@blue-1",
        ]
        assert sorted(members) == sorted(order)
        for name, m in members.items():
            assert m["role"] == name.rsplit("-", 1)[0] and m["alive"] and m["state"] == "ready"
            assert m["last_heartbeat"] and m["pane_id"].startswith("%")
        assert len({m["pane_id"] for m in members.values()}) == 6
        # What tmux says: each member's own pane, running the member's process.
        fmt = "#{pane_id} #{pane_pid} #{@shoal_member}"
        panes = _tmux(tmux, "list-panes", "-s", "-t", "=shoal-blue:", "-F", fmt).split("\n")[:-1]
        assert sorted(panes) == sorted(
            f"{m['pane_id']} {m['pid']} {name}" for name, m in members.items()
        )
        # One window (issue 19: no member alone in a second one), main-vertical: the lead
        # first, the whole height on the left, 40% of the width; the others stacked beside
        # it, top to bottom in member order, each the rest of the width.
        windows = {}
        for line in _geometry(tmux, "shoal-blue").splitlines():
            window, pane, at, size = line.split()
            windows.setdefault(window, []).append((pane, at, size))
        (first,) = windows.values()
        assert [p for p, _, _ in first] == [members[n]["pane_id"] for n in order]
        (_, lead_at, lead_size), rest = first[0], first[1:]
        assert lead_at == "0,1" and lead_size.split("x") == ["79", "49"], first
        assert {at.split(",")[0] for _, at, _ in rest} == {"80"}, first
        tops = [int(at.split(",")[1]) for _, at, _ in rest]
        assert tops == sorted(tops) and len(set(tops)) == 5, first
        assert {size.split("x")[0] for _, _, size in rest} == {"120"}, first
        assert _geometry(tmux, "mine") == mine

        # The token budget ends the task on the executor's answer: no evaluation to wait for.
        command = ["run", "fix the add function", "-C", str(repo), "--team", "blue", "--json"]
        command += ["--budget-tokens", "1000"]
        run = _start(command, env)
        try:
            wait_for(
                lambda: server.requests_for("scripted-executor"),
                timeout=60,
                what="the team's executor's first model call",
            )
            busy: list[TeamMemberStatus] = wait_for(  # type: ignore[assignment]
                lambda: [m for m in _members(home, "blue") if m.busy],
                what="a busy member (from its heartbeats)",
            )
            assert [m.phase for m in busy] == ["executing"], busy
            worker = busy[0].name
            # In process (no interpreter start-up): the model's reply is still ~4 s away.
            down = CliRunner().invoke(app, ["team", "down", "blue"])
            assert down.exit_code == 0 and "team blue is down" in down.stdout, down.stderr
            # The idle members stopped at once; the busy one answered its message (recorded)
            # and only then stopped.
            results = read(home, "messages.recent", {"kind": "exec.result", "limit": 5}).rows
            answered = [row[7] for row in results if row[2] == worker]
            events = read(home, "actor_events.recent", {"kind": "stopped", "limit": 10}).rows
            stopped = {row[1]: row[0] for row in events}
            assert sorted(stopped) == sorted(order) and len(answered) == 1, (events, results)
            idle = [stopped[name] for name in order if name != worker]
            assert max(idle) < answered[0] < stopped[worker], (events, results)
            out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
    # The answer reached the task: its usage counted, and the task ended on it.
    done = json.loads(out or "{}")
    assert done.get("decision") == "budget_tokens" and done.get("iterations") == 1, err
    assert "(stopped: token budget reached)" in done["summary"], done

    # ... and shown in its pane before the pane closed: the scrollback stored at the end.
    rows = read(home, "team.transcripts", {"team": "blue"})
    kept = {
        row["member"]: row for row in (dict(zip(rows.columns, r, strict=True)) for r in rows.rows)
    }
    assert sorted(kept) == sorted(order)
    assert all(row["reason"] == "stopped" for row in kept.values())
    text = kept[worker]["text"]
    # Its answer, then its own last line (a killed member never writes it).
    assert text.index("iteration 1 done") < text.index(f"{worker} stopped (exit 0)"), text
    after = text.split(f"{worker} stopped (exit 0)", 1)[1].strip()
    assert not after or after.startswith("Pane is dead (status 0"), text  # tmux's own line

    assert _tmux(tmux, "list-panes", "-a", "-F", "#{session_name}").split() == ["mine"] * 3
    assert _geometry(tmux, "mine") == mine
    assert not any(_alive(m["pid"]) for m in members.values())
    assert not _pane_processes(home)
    assert not (home.root / "worktrees").exists() or not any((home.root / "worktrees").iterdir())
    worktrees = subprocess.run(
        ["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True
    ).stdout
    assert len(worktrees.splitlines()) == 1, worktrees
    assert shoal("team", "status", "blue").returncode == 1


@needs_tmux
def test_a_busy_member_is_killed_after_the_grace_and_at_once_with_force(
    home: Home, tmux: list[str]
) -> None:
    for team, how, waited in (
        ("held", ["--grace", "1"], (1.0, 15.0)),  # waits the grace, not the 120 s of work
        ("fast", ["--force", "--grace", "120"], (0.0, 15.0)),  # does not wait the grace
    ):
        up = shoal("team", "up", team, "--members", "tests.stall_roles:SleeperActor", "--json")
        assert up.returncode == 0, up.stderr
        member = json.loads(up.stdout)["members"][0]
        with MailboxClient(home.mailbox_endpoint) as client:
            client.send(member["name"], SleepRequest(seconds=120))
            wait_for(lambda t=team: _members(home, t)[0].busy, what="the member to be busy")
        asked = time.time()
        down = shoal("team", "down", team, *how)
        assert down.returncode == 0 and f"team {team} is down" in down.stdout, down.stderr
        events = read(home, "actor_events.recent", {"kind": "stopped", "limit": 5}).rows
        at = next(row[0] for row in events if row[1] == member["name"])
        stopped = dt.datetime.fromisoformat(at).replace(tzinfo=dt.UTC).timestamp() - asked
        assert waited[0] <= stopped < waited[1], (team, stopped)
        assert _tmux(tmux, "list-sessions", "-F", "#{session_name}").split() == []
        assert not _alive(member["pid"]) and not _pane_processes(home)
        rows = read(home, "team.transcripts", {"team": team})
        (row,) = (dict(zip(rows.columns, r, strict=True)) for r in rows.rows)
        assert row["member"] == member["name"] and row["reason"] == "stopped"
        # The work it was killed in; a killed member never writes its own last line.
        assert "test.sleep" in row["text"] and "stopped (exit" not in row["text"], row["text"]
    grace = CliRunner().invoke(app, ["team", "down", "--help"]).stdout
    assert "[default: 30.0" in " ".join(grace.split("--grace", 1)[1].split())  # the README's 30 s
