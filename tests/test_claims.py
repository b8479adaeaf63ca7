"""README promises under fault, each end to end: the behaviour or the test fails.

Each test says in a comment how it was checked to fail with the behaviour removed
(the code changed by hand, the test run, the change undone).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shoal import daemon
from shoal.client import query as read
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.mailbox.client import MailboxClient
from shoal.mailbox.envelope import Envelope
from shoal.messages.actors import ActorSpawn, EchoRequest
from shoal.paths import Home
from shoal.store.database import open_reader
from shoal.store.journal import Journal
from tests.conftest import SESSION_PREFIX, processes_with_home, shoal, wait_for
from tests.roles import CountRequest, KeepRequest

pytestmark = pytest.mark.timeout(240)


def spawn(home: Home, role: str, name: str | None = None) -> str:
    names = daemon.request(home, ActorSpawn(role=role, name=name), timeout=30).names
    wait_for(
        lambda: any(a.name == names[0] and a.state == "ready" for a in daemon.status(home).actors),
        timeout=60,
        what=f"{names[0]} ready",
    )
    return names[0]


def pid_of(home: Home, name: str) -> int:
    pid = next(a.pid for a in daemon.status(home).actors if a.name == name)
    assert pid is not None
    return pid


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- ack_timeout and orphan_timeout ---------------------------------------------------


def test_a_delivered_message_nobody_holds_goes_again_after_ack_timeout_a_held_one_never(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checked: with Deliveries.overdue() returning [] the frozen counter's message is never
    # sent again (the wait for `redelivered` times out); with Deliveries.held() not pushing
    # deadlines, the keeper's held message is sent again (`redelivered` is 2, not 0).
    monkeypatch.setenv("SHOAL_ACK_TIMEOUT", "1")
    monkeypatch.setenv("SHOAL_HEARTBEAT_TIMEOUT", "30")  # a frozen actor is not restarted
    daemon.start(home)
    keeper = spawn(home, "tests.roles:KeeperActor", "keeper")
    counter = spawn(home, "tests.roles:CounterActor", "counter")
    with MailboxClient(home.mailbox_endpoint) as client:
        assert client.request(counter, CountRequest(), timeout=30).payload["total"] == 1
        # Unacked for 3.5 ack_timeouts, but held (listed in the keeper's heartbeats).
        client.send(keeper, KeepRequest(text="held"))
        time.sleep(3.5)
        assert daemon.status(home).messages.redelivered == 0
        # Delivered to an actor that neither acks nor holds it (frozen): sent again.
        pid = pid_of(home, counter)
        os.kill(pid, signal.SIGSTOP)
        try:
            sent = client.send(counter, CountRequest())
            wait_for(
                lambda: daemon.status(home).messages.redelivered >= 1,
                timeout=10,
                what="the redelivery after ack_timeout",
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        reply = client.recv(timeout=30)
        assert reply is not None and reply.reply_to == sent.id
        # Both copies arrived; the handler ran once for them (by message id).
        assert reply.payload["total"] == 2
        assert client.request(counter, CountRequest(), timeout=30).payload["total"] == 3
        assert pid_of(home, counter) == pid  # the same instance all along


def test_an_actor_that_lost_its_orchestrator_exits_after_orphan_timeout(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checked: with the orphan check in ActorRuntime._loop removed, the echo actor
    # outlives its orchestrator (the wait for it to exit times out).
    monkeypatch.setenv("SHOAL_ORPHAN_TIMEOUT", "3")
    daemon.start(home)
    name = spawn(home, "echo")
    pid = pid_of(home, name)
    os.kill(daemon.status(home).pid, signal.SIGKILL)
    killed = time.monotonic()
    time.sleep(1.5)
    assert alive(pid), "the actor did not wait for its orchestrator"
    wait_for(lambda: not alive(pid), timeout=20, what="the orphaned actor to exit")
    assert time.monotonic() - killed > 2.5  # it waited about orphan_timeout
    log = (home.logs / "actors" / f"{name}.log").read_text()
    assert "no orchestrator for" in log and "exiting" in log
    wait_for(lambda: not processes_with_home(str(home.root)), timeout=20, what="all gone")


# --- the journal: kill -9 before a flush -------------------------------------------------


def log_lines(home: Home) -> list[str]:
    return (home.logs / "orchestrator.log").read_text().splitlines()


def journaled_ids(home: Home) -> set[str]:
    return {Envelope.decode(body).id for _, _, body in Journal.replay(home.journal).messages}


def recorded_ids(home: Home) -> set[str]:
    con = open_reader(home.database)
    try:
        return {row[0] for row in con.execute("SELECT id FROM messages").fetchall()}
    finally:
        con.close()


def kill_right_after_a_journal_write(home: Home, client: MailboxClient, n: int) -> None:
    """Send ``n`` messages and kill -9 the orchestrator the moment its journal grows."""
    pid = daemon.status(home).pid
    size = home.journal.stat().st_size
    for seq in range(n):
        client.send("echo-1", EchoRequest(text="j", seq=seq))
    while home.journal.stat().st_size == size:
        pass
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: daemon.running_pid(home) is None, what="the orchestrator gone")


def test_records_only_the_journal_held_at_a_kill_9_are_in_duckdb_after_the_restart(
    home: Home,
) -> None:
    # Checked: with orchestrator.server._recover returning 0 without replaying, the
    # records that were only in the journal are missing from DuckDB after the restart.
    daemon.start(home)
    spawn(home, "echo")
    only_journaled: set[str] = set()
    for _attempt in range(8):  # the kill must land before the recorder's next flush
        with MailboxClient(home.mailbox_endpoint) as client:
            client.request("echo-1", EchoRequest(text="warm"), timeout=30)
            kill_right_after_a_journal_write(home, client, 200)
        only_journaled = journaled_ids(home) - recorded_ids(home)
        daemon.start(home)
        if only_journaled:
            break
    assert only_journaled, "every kill came after a flush"
    # The journal was the only copy at the kill; the restart put every record in DuckDB.
    reply = read(home, "messages.recent", {"limit": 10_000})
    assert only_journaled <= {row[0] for row in reply.rows}
    started = [line for line in log_lines(home) if "journaled records" in line]
    recovered = int(started[-1].split("recovered ")[1].split()[0])
    assert recovered >= len(only_journaled)  # the replay put them there
    wait_for(lambda: daemon.status(home).actors[0].state == "ready", what="echo adopted")


# --- batch resume after kill -9 of the driver ----------------------------------------------


def test_a_batch_whose_driver_was_killed_9_resumes_with_only_its_unfinished_units(
    home: Home, tmp_path: Path
) -> None:
    # Checked: with load_outcomes() reading every unit back as pending, resume runs the
    # finished units again (their model requests grow); without backends._exit_with_parent
    # the killed driver's workers wait out their units' 30 s model calls (timeout below).
    from tests.test_batch import (
        INSTRUCTION,
        branch_file,
        edit,
        env_for,
        executor_requests,
        make_repo,
        units_of,
    )

    repo, names = make_repo(tmp_path, 6)
    slow = {"m02.py", "m03.py"}  # in their model calls when the driver dies; fast on resume
    routes = {f"unit: {n})": [edit(n, 30.0), edit(n)] if n in slow else [edit(n, 0.3)]
              for n in names}  # fmt: skip
    model = Script.model_validate({"models": {"scripted-executor": {"routes": routes}}})
    command = [
        *("batch", INSTRUCTION, "--files", "m*.py", "-C", str(repo), "--backend", "local"),
        *("--workers", "2", "--verify", "python check.py", "--json"),
    ]
    with ScriptedModelServer(model) as server:
        driver = subprocess.Popen(
            [sys.executable, "-m", "shoal", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env_for(server)},
        )
        try:
            batch_id = wait_for(lambda: finished_units(home, 2), timeout=120, what="two units")
            wait_for(lambda: set(executor_requests(server)) >= slow, timeout=60, what="m02, m03")
        finally:
            driver.kill()  # SIGKILL: no interrupted mark, no cancel, nothing flushed
            driver.wait()
        # Its workers stop with it, long before their units' model calls would answer.
        wait_for(lambda: not outside_orchestrator(home), timeout=10, what="its workers gone")
        assert isinstance(batch_id, str)
        before = units_of(home, batch_id)
        done_before = {n for n, r in before.items() if r["status"] != "pending"}
        assert done_before == {"m00.py", "m01.py"}
        assert read(home, "batch.get", {"batch_id": batch_id}).rows[0][3] == "running"
        asked_before = executor_requests(server)
        result = shoal(
            "batch", "resume", batch_id, "--backend", "local", "--json",
            env=env_for(server), timeout=180,
        )  # fmt: skip
        asked_after = executor_requests(server)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["status"] == "done" and out["accepted"] == 6 and out["ran"] == 4
    for name in names:
        grew = asked_after[name] - asked_before[name]
        assert grew == (0 if name in done_before else 1), (name, grew)
    after = units_of(home, batch_id)
    for name in done_before:
        assert after[name]["finished_at"] == before[name]["finished_at"]
    branch = out["branches"][str(repo)]
    for name in names:  # units from before and after the crash, each once on the branch
        assert "return 1" in branch_file(repo, branch, name)
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%s", f"main..{branch}"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert sorted(line.rsplit(": ", 1)[1] for line in log) == names


def outside_orchestrator(home: Home) -> list[int]:
    """Processes of this home that are not the orchestrator's (a batch driver's, ...)."""
    from tests.cluster_nodes import descendants

    pid = daemon.running_pid(home)
    ours = {pid, *descendants(pid)} if pid else set()
    return [p for p in processes_with_home(str(home.root)) if p not in ours]


def finished_units(home: Home, n: int) -> str | None:
    """The latest batch's id once ``n`` of its units have an outcome."""
    from shoal.store.queries import QueryError
    from tests.test_batch import units_of

    try:
        recent = read(home, "batches.recent", {"limit": 1})
    except QueryError:
        return None
    if not recent.rows:
        return None
    batch_id = recent.rows[0][0]
    done = [r for r in units_of(home, batch_id).values() if r["status"] != "pending"]
    return batch_id if len(done) >= n else None


# --- the HTTP API: ?status= and X-Shoal-Timestamp --------------------------------------------


class BusyOnce:
    """A webhook receiver: 503 with ``Retry-After: 2`` to a delivery's first attempt, then
    200; each POST kept with the wall-clock second it arrived."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.posts.append((time.time(), headers))
                first = headers["x-shoal-attempt"] == "1"
                self.send_response(503 if first else 200)
                if first:
                    self.send_header("Retry-After", "2")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_tasks_are_listed_by_status_and_each_webhook_attempt_is_stamped_when_sent(
    home: Home, tmp_path: Path
) -> None:
    # Checked: with Endpoints.list_tasks passing no status to `tasks.recent`, ?status=running
    # lists the accepted task too; with X-Shoal-Timestamp taken once per delivery instead
    # of per attempt, the retry 2 s later carries the first attempt's second.
    from tests.test_api import bare_repo, request, serve
    from tests.test_loop import call, plan, verdict

    quick, slow = bare_repo(tmp_path / "quick"), bare_repo(tmp_path / "slow")
    receiver = BusyOnce()
    home.ensure()
    home.config_file.write_text(
        f'[[webhooks]]\nurl = "{receiver.url}"\nevents = ["task.complete"]\nsecret = "k"\n'
    )
    script = Script.model_validate(
        {
            "models": {
                "scripted-any": [
                    plan(),
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("finish", summary="fixed"),
                    verdict(0.95),
                ],
                "scripted-slow": [plan(), {**call("read_file", path="calc.py"), "delay": 3}],
            }
        }
    )
    try:
        with ScriptedModelServer(script) as server:
            env = {"SHOAL_BASE_URL": server.base_url, "SHOAL_PRELOAD": "litellm"}
            url = serve("--port", "0", env=env)

            def post(repo: Path, model: str) -> str:
                body = {"description": "fix the add function", "cwd": str(repo), "model": model}
                status, created = request("POST", f"{url}/tasks", body=body)
                assert status == 202, created
                return created["id"]

            def listed(status: str) -> list[str]:
                code, body = request("GET", f"{url}/tasks?status={status}")
                assert code == 200, body
                return [t["id"] for t in body["tasks"]]

            done = post(quick, "openai/scripted-any")
            wait_for(lambda: listed("accepted") == [done], 90, what="the first task accepted")
            running = post(slow, "openai/scripted-slow")
            wait_for(lambda: len(server.requests_for("scripted-slow")) >= 2, 60, what="executor")
            assert listed("running") == [running]
            assert listed("accepted") == [done]
            assert listed("unaccepted") == [] and listed("cancelled") == []
            assert sorted(listed("running") + listed("accepted")) == sorted([done, running])
            code, body = request("GET", f"{url}/tasks?status=finished")
            assert code == 422 and "status" in body["error"]["message"], body
            assert request("POST", f"{url}/tasks/{running}/cancel")[0] == 202
            wait_for(lambda: listed("cancelled") == [running], 30, what="the cancel")
            assert listed("running") == []
        wait_for(lambda: len(receiver.posts) >= 2, 30, what="the webhook's retry")
    finally:
        receiver.close()
    (first_at, first), (second_at, second) = receiver.posts[:2]
    assert (first["x-shoal-attempt"], second["x-shoal-attempt"]) == ("1", "2")
    stamps = [int(first["x-shoal-timestamp"]), int(second["x-shoal-timestamp"])]
    # Unix seconds when each attempt was sent: the second's is its own, 2 s later.
    for stamp, arrived in zip(stamps, (first_at, second_at), strict=True):
        assert arrived - 1.5 <= stamp <= arrived, (stamp, arrived)
    assert stamps[1] - stamps[0] >= 1


# --- team run --team NAME on a team that is up ----------------------------------------------


def test_a_team_run_with_team_runs_its_subtasks_on_that_teams_members(
    home: Home, tmp_path: Path
) -> None:
    # Checked: with Scheduler._role_for ignoring the task's team, the subtasks go to
    # shoal's own executor-N and evaluator-N (started for the run) and the test fails.
    from tests.test_loop import call, model_env, verdict
    from tests.test_team_run import FILES, fix, make_repo, subtask

    repo = make_repo(tmp_path, buggy=("calc.py", "strs.py"))
    ids = {"calc.py": "fix-add", "strs.py": "fix-shout"}
    plan = call(
        "submit_plan",
        steps=[{"title": "fix each function"}],
        subtasks=[subtask(ids[name], name) for name in ids],
    )
    routes = {f"subtask {ids[n]} ": fix(n, *FILES[n][1:]) for n in ids}
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan],
                "scripted-executor": {"routes": routes},
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        env = model_env(server)
        up = shoal(
            "team", "up", "red", "--members", "executor*2,evaluator", "--mode", "process",
            "--json", env=env, timeout=120,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        members = {m["name"] for m in json.loads(up.stdout)["members"]}
        # The lead pane (the team's own member since teams grew one) beside the three.
        assert members == {"lead@red-1", "executor@red-1", "executor@red-2", "evaluator@red-1"}
        run = shoal(
            "team", "run", "fix the two bugs", "-C", str(repo), "--size", "2", "--team", "red",
            "--json", env=env, timeout=180,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["status"] == "accepted" and {s["status"] for s in out["subtasks"]} == {"accepted"}
    done_by: dict[str, Counter[str]] = {"exec.result": Counter(), "eval.result": Counter()}
    for kind, senders in done_by.items():
        listed = shoal("messages", "--kind", kind, "-n", "100", "--json", check=True)
        senders.update(json.loads(line)["sender"] for line in listed.stdout.splitlines())
    # Both subtasks on the team's two executors; every evaluation on its evaluator.
    assert set(done_by["exec.result"]) == {"executor@red-1", "executor@red-2"}, done_by
    assert set(done_by["eval.result"]) == {"evaluator@red-1"}, done_by
    names = {a.name for a in daemon.status(home).actors}
    assert not {n for n in names if n.startswith(("executor-", "evaluator-"))}, names


# --- tmux panes after an orchestrator crash; another home's session ----------------------------


@pytest.fixture
def tmux(home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A private tmux server for the test (SHOAL_TMUX_SOCKET); only it is ever killed."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (scripts/test installs it)")
    socket = f"shoal-claims-{os.urandom(5).hex()}"
    monkeypatch.setenv("SHOAL_TMUX_SOCKET", socket)
    yield ["tmux", "-L", socket]
    daemon.stop(home, timeout=15)  # members first: a killed pane would be respawned
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def test_panes_are_adopted_after_a_kill_9_of_the_orchestrator_and_another_homes_are_refused(
    home: Home, tmux: list[str]
) -> None:
    # Checked: with Supervisor.adopt() returning at once, the restarted orchestrator knows
    # no team red (its status fails); with TmuxLauncher._find finding no pane, the dead
    # member comes back in a new pane; with open_team's owner check removed, team up blue
    # takes over the other home's session.
    up = shoal("team", "up", "red", "--members", "executor*2", "--json", timeout=120)
    assert up.returncode == 0, up.stderr
    members = {m["name"]: m for m in json.loads(up.stdout)["members"]}
    one, two = members["executor@red-1"], members["executor@red-2"]
    os.kill(daemon.status(home).pid, signal.SIGKILL)
    wait_for(lambda: daemon.running_pid(home) is None, what="the orchestrator gone")
    # With nobody supervising, one member dies; its pane stays (remain-on-exit).
    os.kill(two["pid"], signal.SIGKILL)
    pane_dead = ("display-message", "-p", "-t", two["pane_id"], "#{pane_dead}")
    wait_for(lambda: tmux_out(tmux, *pane_dead) == "1", what="the dead pane")
    daemon.start(home)

    def settled() -> dict[str, Any] | None:
        by = {m["name"]: m for m in team_status("red")["members"]}
        back = by["executor@red-2"]
        if (
            back["state"] != "ready"
            or back["pid"] == two["pid"]
            or by[one["name"]]["state"] != ("ready")
        ):
            return None
        return by

    by = wait_for(settled, timeout=60, what="the team adopted and the dead member back")
    assert isinstance(by, dict)
    adopted = by["executor@red-1"]
    assert (adopted["pid"], adopted["pane_id"], adopted["restarts"]) == (
        one["pid"], one["pane_id"], 0,
    )  # fmt: skip
    assert by["executor@red-2"]["pane_id"] == two["pane_id"]  # respawned in place
    panes = tmux_out(tmux, "list-panes", "-s", "-t", "=shoal-red:", "-F", "#{pane_id}").split()
    lead = members["lead@red-1"]["pane_id"]
    assert sorted(panes) == sorted([lead, one["pane_id"], two["pane_id"]])  # no second set
    events = read(home, "actor_events.recent", {"limit": 200}).rows
    assert ("executor@red-1", "adopted") in {(row[1], row[4]) for row in events}

    # A session shoal-blue of another home on the same tmux server is not taken over.
    other = Home.resolve(tempfile.mkdtemp(prefix=SESSION_PREFIX))
    theirs = {"SHOAL_HOME": str(other.root)}
    try:
        blue = shoal("team", "up", "blue", "--members", "executor", "--json", env=theirs)
        assert blue.returncode == 0, blue.stderr
        before = tmux_out(tmux, "list-panes", "-s", "-t", "=shoal-blue:", "-F", "#{pane_id}")
        refused = shoal("team", "up", "blue", "--members", "executor")
        assert refused.returncode != 0
        assert "shoal-blue already exists and is not this SHOAL_HOME's" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        after = tmux_out(tmux, "list-panes", "-s", "-t", "=shoal-blue:", "-F", "#{pane_id}")
        assert after == before and len(after.split()) == 2  # its lead and its executor
        assert all(m["alive"] for m in team_status("blue", theirs)["members"])
        assert "blue" not in shoal("team", "status", "--json").stdout
    finally:
        daemon.stop(other, timeout=15)
        wait_for(lambda: not processes_with_home(str(other.root)), timeout=20, what="blue gone")
        shutil.rmtree(other.root, ignore_errors=True)


def tmux_out(server: list[str], *args: str) -> str:
    return subprocess.run([*server, *args], capture_output=True, text=True).stdout.strip()


def team_status(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = shoal("team", "status", name, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
