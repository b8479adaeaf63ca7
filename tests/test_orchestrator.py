"""The orchestrator's lifecycle: one per home, crash recovery, permissions, draining."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import zmq

from shoal import daemon
from shoal.client import Client
from shoal.client import query as read
from shoal.mailbox import wire
from shoal.mailbox.client import MailboxClient
from shoal.mailbox.envelope import ORCHESTRATOR, Envelope
from shoal.messages.actors import ActorSpawn, EchoRequest
from shoal.messages.store import StoreQuery
from shoal.messages.teams import TeamStatus
from shoal.paths import Home
from shoal.store.database import open_reader
from tests.conftest import shoal, wait_for


def mode(path: os.PathLike[str]) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def echo_ids_in_db(home: Home) -> set[str]:
    reply = read(home, "messages.recent", {"limit": 10_000, "kind": "echo.request"})
    return {row[0] for row in reply.rows}


def test_polled_reads_are_routed_but_neither_journaled_nor_recorded(orchestrator: Home) -> None:
    """A dashboard left open polls status, queries and teams without end (issue 16): each
    answer recorded grew the messages table and DuckDB's memory without bound."""
    client = Client(orchestrator)
    before = client.status().messages
    journal = orchestrator.journal.stat().st_size
    for _ in range(25):
        client.status()
        client.query("tasks.recent", {"limit": 5, "kind": None})
        client.request(TeamStatus())
    kinds = {row[0]: row[1] for row in client.query("messages.summary").rows}
    after = client.status().messages
    assert after.routed >= before.routed + 25 * 6  # each read and its answer
    assert after.unrecorded >= before.unrecorded + 25 * 6
    assert after.recorded == before.recorded
    assert orchestrator.journal.stat().st_size == journal
    polled = ("orchestrator.status", "store.query", "team.status")
    assert {k: n for k, n in kinds.items() if k.startswith(polled)} == {}


def test_an_actors_reads_are_recorded_both_ways(orchestrator: Home) -> None:
    """An actor's queries are part of its work (and its transcript): recorded as ever."""
    ctx = zmq.Context()
    actor = ctx.socket(zmq.DEALER)
    actor.setsockopt(zmq.IDENTITY, b"reader-1")
    actor.setsockopt(zmq.LINGER, 1000)  # the ack goes out before the close
    actor.connect(orchestrator.mailbox_endpoint)
    try:
        beat = wire.Beat(name="reader-1", role="reader", pid=os.getpid(), instance="i1")
        actor.send_multipart([wire.BEAT, beat.encode()])  # it is a peer from now on
        assert actor.poll(10_000) and actor.recv_multipart()[0] == wire.PONG
        query = StoreQuery(name="messages.summary")
        ask = Envelope.of(query, sender="reader-1", recipient=ORCHESTRATOR)
        actor.send_multipart([wire.MSG, ask.encode()])
        while actor.poll(10_000):
            tag, body = actor.recv_multipart()
            answer = Envelope.decode(body) if tag == wire.MSG else None
            if answer is not None and answer.reply_to == ask.id:
                actor.send_multipart([wire.ACK, wire.encode_acks([answer.id])])
                break
        else:
            raise AssertionError("no answer to the actor's query")
    finally:
        actor.close()
        ctx.term()
    rows = read(orchestrator, "messages.recent", {"limit": 100, "kind": None}).rows
    assert {(r[1], r[2]) for r in rows} >= {
        ("store.query", "reader-1"),
        ("store.query.result", "orchestrator"),
    }


def test_state_is_owner_only(orchestrator: Home) -> None:
    assert mode(orchestrator.root) == 0o700
    assert mode(orchestrator.run) == 0o700
    assert mode(orchestrator.database) == 0o600
    assert mode(orchestrator.mailbox_socket) == 0o600
    assert mode(orchestrator.events_socket) == 0o600
    assert mode(orchestrator.journal) == 0o600


def test_a_second_orchestrator_does_not_become_a_second_writer(orchestrator: Home) -> None:
    pid = daemon.running_pid(orchestrator)
    second = subprocess.run(
        [sys.executable, "-m", "shoal.orchestrator.server", "--home", str(orchestrator.root)],
        capture_output=True,
        timeout=30,
    )
    assert second.returncode == 3
    again = shoal("orchestrator", "start", check=True)
    assert f"already running (pid {pid}" in again.stdout
    assert daemon.running_pid(orchestrator) == pid
    assert daemon.status(orchestrator).pid == pid


def test_stale_pid_and_sockets_after_a_crash_are_cleaned(home: Home) -> None:
    home.ensure()
    dead = subprocess.Popen(["true"])
    dead.wait()
    home.pid_file.write_text(f"{dead.pid}\n")
    home.lock_file.touch()
    home.mailbox_socket.write_text("stale")
    home.events_socket.write_text("stale")
    assert daemon.running_pid(home) is None
    status = shoal("orchestrator", "status", "--json")
    assert status.returncode == 3 and '"running": false' in status.stdout
    pid, started = daemon.start(home)
    assert started and pid != dead.pid
    assert daemon.status(home).pid == pid


def test_kill_9_of_the_orchestrator_loses_no_record_and_actors_reconnect(home: Home) -> None:
    daemon.start(home)
    daemon.request(home, ActorSpawn(role="echo"))
    sent = []
    with MailboxClient(home.mailbox_endpoint) as client:
        client.request("echo-1", EchoRequest(text="warm"), timeout=30)
        echo_pid = daemon.status(home).actors[0].pid
        for seq in range(2000):
            sent.append(client.send("echo-1", EchoRequest(text="r", seq=seq)).id)
        for _ in range(2000):
            assert client.recv(timeout=30) is not None
        os.kill(daemon.running_pid(home), signal.SIGKILL)  # records may be only in the journal
    wait_for(lambda: daemon.running_pid(home) is None, what="orchestrator gone")
    daemon.start(home)
    assert set(sent) <= echo_ids_in_db(home)
    wait_for(lambda: daemon.status(home).actors[0].state == "ready", what="actor adopted")
    echo = daemon.status(home).actors[0]
    assert (echo.name, echo.pid, echo.restarts) == ("echo-1", echo_pid, 0)
    with MailboxClient(home.mailbox_endpoint) as client:
        assert (
            client.request("echo-1", EchoRequest(text="back"), timeout=30).payload["text"] == "back"
        )


def test_sigterm_drains_and_flushes_every_record(orchestrator: Home) -> None:
    daemon.request(orchestrator, ActorSpawn(role="echo"))
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        client.request("echo-1", EchoRequest(text="warm"), timeout=30)
        sent = [client.send("echo-1", EchoRequest(text="d", seq=i)).id for i in range(3000)]
        for _ in range(3000):
            assert client.recv(timeout=30) is not None
    pid = daemon.running_pid(orchestrator)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: daemon.running_pid(orchestrator) is None, what="orchestrator exit")
    assert orchestrator.journal.stat().st_size == 0  # everything went to DuckDB
    con = open_reader(orchestrator.database)
    try:
        ids = {
            r[0]
            for r in con.execute("SELECT id FROM messages WHERE kind='echo.request'").fetchall()
        }
        stopped = con.execute("SELECT count(*) FROM actor_events WHERE event='stopped'").fetchone()
    finally:
        con.close()
    assert set(sent) <= ids
    assert stopped == (1,)


def test_idle_orchestrator_exits_by_itself(home: Home, monkeypatch) -> None:
    monkeypatch.setenv("SHOAL_IDLE_TIMEOUT", "1")
    daemon.start(home)
    daemon.request(home, ActorSpawn(role="echo"))
    wait_for(lambda: daemon.running_pid(home) is None, timeout=20, what="idle exit")


def test_read_only_commands_work_with_and_without_an_orchestrator(orchestrator: Home) -> None:
    with MailboxClient(orchestrator.mailbox_endpoint) as client:
        client.request("orchestrator", ActorSpawn(role="echo"), timeout=10)
        client.request("echo-1", EchoRequest(text="x"), timeout=30)
    # Recording trails routing by up to one flush interval.
    running = wait_for(
        lambda: (
            read(orchestrator, "messages.recent", {"kind": "echo.request"})
            if read(orchestrator, "messages.recent", {"kind": "echo.request"}).rows
            else None
        ),
        what="the request recorded",
    )
    daemon.stop(orchestrator)
    stopped = read(orchestrator, "messages.recent", {"kind": "echo.request"})
    assert running.rows == stopped.rows and len(stopped.rows) == 1
    listed = shoal("messages", "--kind", "echo.request", "--json", check=True)
    assert '"kind": "echo.request"' in listed.stdout
