"""``GET /api/v1/events``: the orchestrator's events as Server-Sent Events, over real HTTP
from a real orchestrator running a task with the scripted model."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shoal.api.events import Filter
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.mailbox.envelope import Envelope
from shoal.messages.actors import ActorStarted
from shoal.messages.tasks import TaskProgress
from shoal.paths import Home
from tests.conftest import wait_for
from tests.test_api import TOKEN, bare_repo, request, serve
from tests.test_loop import call, plan, verdict


class EventReader:
    """An SSE client on a thread: the events (decoded ``data:``) and comment lines."""

    def __init__(self, url: str, token: str | None = TOKEN, cookie: str = "") -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if cookie:
            headers["Cookie"] = cookie
        self.conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                          headers=headers)  # fmt: skip
        self.response = self.conn.getresponse()
        self.events: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.ids: list[str] = []
        if self.response.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while line := self.response.readline():
                text = line.decode().rstrip("\n")
                if text.startswith("data: "):
                    self.events.append(json.loads(text[6:]))
                elif text.startswith("id: "):
                    self.ids.append(text[4:])
                elif text.startswith(":"):
                    self.comments.append(text[1:].strip())
        except (OSError, ValueError, AttributeError):
            pass  # closed by the test (http.client then has no socket to read)

    def kinds(self, task_id: str | None = None) -> list[str]:
        return [e["kind"] for e in self.events if task_id is None or e["task_id"] == task_id]

    def close(self) -> None:
        self.conn.close()


def used(n: int = 100) -> dict[str, Any]:
    return {"usage": {"prompt_tokens": n, "completion_tokens": 0}}


def one_iteration_script() -> Script:
    return Script.model_validate(
        {
            "models": {
                "scripted-any": [
                    {**plan(), **used()},
                    {
                        **call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                        **used(),
                    },
                    {**call("finish", summary="fixed"), **used()},
                    {**verdict(0.9), **used()},
                ],
                "scripted-small": ["nothing to learn"],
            }
        }
    )


def test_a_tasks_events_stream_in_order_to_the_end_and_filters_keep_others_out(
    home: Home, tmp_path: Path
) -> None:
    repo = bare_repo(tmp_path)
    with ScriptedModelServer(one_iteration_script()) as server:
        env = {
            "SHOAL_BASE_URL": server.base_url,
            "SHOAL_SMALL_MODEL": "openai/scripted-small",
            "SHOAL_API_TOKEN": TOKEN,
            "SHOAL_API_HEARTBEAT": "0.3",
        }
        url = serve("--port", "0", env=env)
        # No token, a wrong one: 401 like every other route; a bad filter names itself.
        for token in (None, "wrong"):
            refused = EventReader(f"{url}/events", token=token)
            assert refused.response.status == 401
            assert json.loads(refused.response.read())["error"]["code"] == "unauthorized"
            refused.close()
        status, body = request("GET", f"{url}/events?task=no/such", token=TOKEN)
        assert status == 422 and body["error"]["message"].startswith("task:"), body
        assert request("GET", f"{url}/events?colour=red", token=TOKEN)[0] == 422

        everything = EventReader(f"{url}/events")
        assert everything.response.getheader("Content-Type").startswith("text/event-stream")
        elsewhere = EventReader(f"{url}/events?task=0000")
        wait_for(lambda: "connected" in everything.comments, 10, what="the stream to open")
        status, created = request(
            "POST",
            f"{url}/tasks",
            token=TOKEN,
            body={
                "description": "fix the add function",
                "cwd": str(repo),
                "model": "openai/scripted-any",
                "iterations": 1,
            },
        )
        assert status == 202, created
        task_id = created["id"]
        mine = EventReader(f"{url}/events?task={task_id[:8]}")  # a prefix of the id
        try:
            wait_for(lambda: "task.done" in everything.kinds(task_id), 90, what="task.done")
            wait_for(lambda: "task.done" in mine.kinds(), 10, what="the filtered task.done")
            ordered = everything.kinds(task_id)
            assert ordered[0] == "task.progress" and ordered[-1] == "task.done", ordered
            assert {"exec.event", "task.progress"} <= set(ordered)
            phases = [e["payload"]["phase"] for e in everything.events
                      if e["kind"] == "task.progress" and e["task_id"] == task_id]  # fmt: skip
            assert phases.index("executing") < phases.index("evaluating"), phases
            # The task's last event (flow.summary events of no task may follow it).
            last = [e for e in everything.events if e["task_id"] == task_id][-1]
            assert last["payload"]["status"] in ("accepted", "unaccepted")
            # Events of no task (actors starting) reach the unfiltered stream only.
            assert any(e["task_id"] is None for e in everything.events)
            assert mine.events and {e["task_id"] for e in mine.events} == {task_id}
            assert mine.kinds()[-1] == "task.done"
            # Each event carries its id, for a browser's Last-Event-ID.
            assert everything.ids == [e["id"] for e in everything.events]
            # Nothing of this task for another task's stream; heartbeats keep it open.
            wait_for(lambda: "heartbeat" in elsewhere.comments, 5, what="a heartbeat")
            assert elsewhere.events == []
        finally:
            for reader in (everything, elsewhere, mine):
                reader.close()
        assert TOKEN not in (home.logs / "orchestrator.log").read_text()


def test_the_team_filter_takes_a_teams_members_and_what_is_said_about_them() -> None:
    def env(sender: str, payload: Any) -> Envelope:
        return Envelope.of(payload, sender=sender, recipient="*")

    red = Filter(team="red")
    progress = TaskProgress(task_id="T1", phase="executing")
    assert red.wants(env("executor@red-2", progress))
    assert not red.wants(env("executor@redder-1", progress))
    assert not red.wants(env("executor-1", progress))
    started = ActorStarted(name="executor@red-1", role="executor@red", pid=1, restarts=0)
    assert red.wants(env("orchestrator", started))
    assert not Filter(team="blue").wants(env("orchestrator", started))
    both = Filter(task="T1", team="red")
    assert both.wants(env("lead@red-1", progress))
    assert not both.wants(env("lead@red-1", TaskProgress(task_id="T2", phase="executing")))
