"""shoal.client from Python, as a script would drive shoal: submit, follow, cancel, query."""

from __future__ import annotations

from pathlib import Path

from shoal.client import Client
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from shoal.submission import task_submit
from tests.test_loop import call, make_repo, model_env, plan, verdict


def _task(home: Home, repo: Path, server: ScriptedModelServer, monkeypatch) -> object:
    for name, value in model_env(server).items():
        monkeypatch.setenv(name, value)
    return task_submit(home, "fix the add function", repo, {}, no_model="-")


def test_a_script_submits_follows_and_queries_a_task(
    home: Home, tmp_path: Path, monkeypatch
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("read_file", path="calc.py"),
                    {
                        **call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                        "delay": 0.3,
                    },
                    call("finish", summary="add adds"),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        client = Client(home)
        with client.submit(_task(home, repo, server, monkeypatch)) as task:
            kinds = [event.kind for event in task.events()]
            done = task.wait()
    assert task.waiting_for is None and done.task_id == task.task_id
    assert (done.status, done.files_changed) == ("accepted", ["calc.py"])
    assert "exec.event" in kinds and "eval.checks" in kinds
    tools = [e for e in kinds if e == "exec.event"]
    assert len(tools) >= 3  # read, edit, finish as they happened
    rows = client.query("tasks.recent", {"limit": 5})
    assert rows.rows[0][0] == task.task_id
    assert client.status().running_tasks == 0


def test_a_script_cancels_a_task_it_submitted(home: Home, tmp_path: Path, monkeypatch) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [{**call("read_file", path="calc.py"), "delay": 1.0}],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        client = Client(home)
        with client.submit(_task(home, repo, server, monkeypatch)) as task:
            for event in task.events():
                if event.kind == "task.progress" and event.payload["phase"] == "executing":
                    task.cancel()
            done = task.wait()
    assert (done.status, done.decision) == ("cancelled", "cancelled")


def test_a_request_with_no_orchestrator_says_so_at_once(home: Home) -> None:
    import time

    import pytest

    from shoal.client import ClientError
    from shoal.messages.actors import OrchestratorStatus

    client = Client(home)
    assert not client.running()
    t0 = time.monotonic()
    with pytest.raises(ClientError, match=r"no orchestrator runs for .*shoal orchestrator start"):
        client.request(OrchestratorStatus())
    assert time.monotonic() - t0 < 1.0  # not a mailbox timeout


def test_a_channel_talks_to_actors_and_hears_its_topics(home: Home) -> None:
    from shoal.messages.actors import ActorSpawn, EchoReply, EchoRequest

    client = Client(home)
    client.start(same_settings=False)
    assert client.running()
    spawned = client.request(ActorSpawn(role="echo"), timeout=30)
    with client.channel(["actor."]) as channel:
        reply = channel.request(EchoRequest(text="hi", seq=7), to="role:echo", timeout=30)
        assert isinstance(reply, EchoReply) and (reply.text, reply.seq) == ("hi", 7)
        assert reply.handled_by in spawned.names  # type: ignore[attr-defined]
        sent = channel.send(EchoRequest(text="again"), to="role:echo")
        client.request(ActorSpawn(role="echo"), timeout=30)  # a second one: actor.started
        mail = event = None
        for _ in range(200):
            got_mail, got_event = channel.receive(0.1)
            mail, event = mail or got_mail, event or got_event
            if mail and event:
                break
    assert mail is not None and mail.reply_to == sent.id and mail.payload["text"] == "again"
    assert event is not None and event.kind.startswith("actor.")


def test_send_delivers_a_one_way_message_to_an_actor(orchestrator: Home) -> None:
    # What the HTTP API's steering does from inside the orchestrator (through its bridge),
    # a script does from outside: a team.message to a member, recorded and acked.
    from shoal.client import query, sql
    from shoal.messages.actors import ActorSpawn
    from shoal.messages.teams import TeamMessage
    from tests.conftest import wait_for

    client = Client(orchestrator)
    name = client.request(ActorSpawn(role="executor")).names[0]  # type: ignore[attr-defined]
    wait_for(lambda: any(a.name == name and a.state == "ready" for a in client.status().actors),
             timeout=60, what="the executor up")  # fmt: skip
    before = client.status().messages
    client.send(TeamMessage(text="read NOTES.md first", sender="a script"), to=name)

    def recorded() -> list[list[object]]:
        rows = query(orchestrator, "messages.recent", {"kind": "team.message"}).rows
        return [r for r in rows if r[3] == name]

    wait_for(recorded, timeout=20, what="the message recorded")
    wait_for(lambda: client.status().messages.pending == 0, timeout=20, what="it acked")
    after = client.status().messages
    assert after.routed > before.routed and after.undeliverable == before.undeliverable
    # The executor took it: its ack is recorded against the message's id.
    message_id = recorded()[0][0]

    def acked() -> bool:
        result = sql(orchestrator, f"SELECT count(*) FROM acks WHERE message_id = '{message_id}'")
        return result.rows[0][0] == 1

    wait_for(acked, timeout=20, what="the executor's ack recorded")
