"""``/api/v1/teams``: teams and members, a member's transcript, and steering lines, over
real HTTP from a real orchestrator with a headless team running a scripted task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.test_api import TOKEN, bare_repo, request, serve
from tests.test_loop import call, model_env, plan, verdict

STEER = "steering line: also add a docstring to add()"


def text_of(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"])


def slow_script(slow: float = 4.0) -> Script:
    """The executor's second reply waits ``slow`` seconds: a line steered meanwhile is in
    its third request."""
    return Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("read_file", path="calc.py"),
                    {**call("read_file", path="calc.py"), "delay": slow},
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    {**call("finish", summary="fixed add"), "delay": 1.0},
                ],
                "scripted-evaluator": [verdict(0.9)],
                "scripted-small": ["nothing to learn"],
            }
        }
    )


def team_env(server: ScriptedModelServer) -> dict[str, str]:
    return {
        **model_env(server),
        "SHOAL_PRELOAD": "",
        "SHOAL_SMALL_MODEL": "openai/scripted-small",
        "SHOAL_API_TOKEN": TOKEN,
    }


def team_up(env: dict[str, str], name: str = "red") -> None:
    up = shoal("team", "up", name, "--members", "executor", "--mode", "process", env=env,
               timeout=90)  # fmt: skip
    assert up.returncode == 0, up.stderr


def test_teams_members_transcripts_and_a_steering_line_reaching_the_next_turn(
    home: Home, tmp_path: Path
) -> None:
    repo = bare_repo(tmp_path)
    with ScriptedModelServer(slow_script()) as server:
        env = team_env(server)
        url = serve("--port", "0", env=env)
        team_up(env)
        # Every new route wants the token, like the others.
        for method, path in (
            ("GET", "/teams"),
            ("GET", "/teams/red/members/executor-1/transcript"),
            ("POST", "/teams/red/members/executor-1/steer"),
        ):
            status, body = request(method, url + path, body={"text": "x"})
            assert status == 401 and body["error"]["code"] == "unauthorized", (path, body)
        status, teams = request("GET", f"{url}/teams", token=TOKEN)
        assert status == 200, teams
        (red,) = teams["teams"]
        assert red["name"] == "red" and red["mode"] == "process"
        members = {m["name"]: m for m in red["members"]}
        assert set(members) == {"lead@red-1", "executor@red-1"}, members
        assert members["executor@red-1"]["steerable"] and not members["lead@red-1"]["steerable"]
        assert members["executor@red-1"]["busy"] is False
        # Unknown teams and members: 404 naming what is missing.
        for method, path in (
            ("GET", "/teams/blue/members/executor-1/transcript"),
            ("GET", "/teams/red/members/executor-9/transcript"),
            ("POST", "/teams/red/members/planner-1/steer"),
            ("POST", "/teams/red/members/executor@blue-1/steer"),
            ("POST", "/teams/no%2Fsuch/members/executor-1/steer"),
        ):
            status, body = request(method, url + path, token=TOKEN, body={"text": "x"})
            assert status == 404 and body["error"]["code"] == "not_found", (path, body)
        status, body = request(
            "POST", f"{url}/teams/red/members/executor-1/steer", token=TOKEN, body={"text": ""}
        )
        assert status == 422, body
        paths = request("GET", f"{url}/openapi.json", token=TOKEN)[1]["paths"]
        steer = paths["/api/v1/teams/{team}/members/{member}/steer"]["post"]
        assert "SteerCreate" in json.dumps(steer) and "SteerSent" in json.dumps(steer)
        assert "TeamList" in json.dumps(paths["/api/v1/teams"])
        assert "MemberTranscript" in json.dumps(
            paths["/api/v1/teams/{team}/members/{member}/transcript"]
        )

        status, created = request(
            "POST",
            f"{url}/tasks",
            token=TOKEN,
            body={"description": "fix the add function", "cwd": str(repo), "iterations": 1,
                  "team": "red"},
        )  # fmt: skip
        assert status == 202, created
        task_id = created["id"]
        # The executor's second request waits at the model: steer it now.
        wait_for(lambda: len(server.requests_for("scripted-executor")) >= 2, 90,
                 what="the executor's second model turn")  # fmt: skip
        status, teams = request("GET", f"{url}/teams", token=TOKEN)
        busy = {m["name"]: m for m in teams["teams"][0]["members"]}["executor@red-1"]
        assert busy["busy"] and busy["task_id"] == task_id, busy
        status, sent = request(
            "POST",
            f"{url}/teams/red/members/executor%40red-1/steer",  # the full name, URL-encoded
            token=TOKEN,
            body={"text": STEER},
        )
        assert status == 202 and sent == {"team": "red", "member": "executor@red-1",
                                          "status": "sent"}, sent  # fmt: skip
        wait_for(lambda: len(server.requests_for("scripted-executor")) >= 3, 60,
                 what="the executor's third model turn")  # fmt: skip
        turns = [text_of(r) for r in server.requests_for("scripted-executor")]
        assert all(STEER not in t for t in turns[:2])
        assert STEER in turns[2], turns[2][-2000:]

        def transcript() -> str:
            status, body = request(
                "GET", f"{url}/teams/red/members/executor-1/transcript", token=TOKEN
            )
            assert status == 200, body
            assert body["member"] == "executor@red-1" and body["truncated"] is False
            return body["text"]

        # What its pane would show: the work, the tool calls, the steering line, the end.
        wait_for(lambda: "done" in transcript(), 90, what="the iteration's end in the transcript")
        text = transcript()
        assert "▶ task " in text and "fix the add function" in text, text
        assert 'read_file {"path": "calc.py"} ✓' in text and "│ +a + b" in text, text
        assert text.index("▶ task ") < text.index(STEER) < text.index("iteration 1 done"), text
        assert f"✉ the dashboard (person): {STEER}" in text, text
        assert "executing (iteration 1)" in text, text  # its task's phases, as in its pane
        assert "[bold" not in text  # plain text, no markup
        assert json.dumps(text)  # JSON-safe
    assert TOKEN not in (home.logs / "orchestrator.log").read_text()


def test_a_member_that_reads_no_steering_lines_is_refused_with_409(
    home: Home, tmp_path: Path
) -> None:
    with ScriptedModelServer(slow_script()) as server:
        env = team_env(server)
        url = serve("--port", "0", env=env)
        up = shoal("team", "up", "blue", "--members", "evaluator", "--mode", "process",
                   env=env, timeout=90)  # fmt: skip
        assert up.returncode == 0, up.stderr
        for member in ("evaluator-1", "lead-1"):  # the lead only shows messages to it
            status, body = request(
                "POST", f"{url}/teams/blue/members/{member}/steer", token=TOKEN, body={"text": "x"}
            )
            assert status == 409 and "reads no steering lines" in body["error"]["message"], body
        status, body = request(
            "GET", f"{url}/teams/blue/members/evaluator-1/transcript", token=TOKEN
        )
        assert status == 200 and body["member"] == "evaluator@blue-1", body
