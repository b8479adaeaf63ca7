"""``/api/v1/flow``, ``/api/v1/batches`` and ``/api/v1/cost/series``, with the events that
keep the dashboard's views of them live (``flow.summary``, ``batch.unit.started``,
``batch.progress``, ``usage.recorded``): a real orchestrator, the scripted model (priced as
gpt-4o by litellm's own table), a real local batch pool, over real HTTP."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from shoal.batch.units import unit_id
from shoal.client import query as read
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.orchestrator.flow import MAX_EDGES, MAX_MINUTE_EDGES, Flow, party
from shoal.paths import Home
from tests.conftest import wait_for
from tests.test_api import TOKEN, bare_repo, request, serve
from tests.test_api_events import EventReader
from tests.test_loop import call, plan, verdict

ROUTES = ("/flow", "/batches", "/batches/0000000000", "/cost/series")


def priced(n: int = 1000) -> dict[str, Any]:
    return {"usage": {"prompt_tokens": n, "completion_tokens": 100}}


def priced_script() -> Script:
    """One iteration, every model call on ``gpt-4o``: litellm prices it, so it costs."""
    return Script.model_validate(
        {
            "models": {
                "gpt-4o": [
                    {**plan(), **priced()},
                    {
                        **call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                        **priced(),
                    },
                    {**call("finish", summary="fixed"), **priced()},
                    {**verdict(0.9), **priced()},
                ],
                "scripted-small": ["nothing to learn"],
            }
        }
    )


def priced_env(server: ScriptedModelServer) -> dict[str, str]:
    return {
        "SHOAL_BASE_URL": server.base_url,
        "SHOAL_SMALL_MODEL": "openai/scripted-small",
        "SHOAL_API_TOKEN": TOKEN,
    }


def run_priced_task(url: str, repo: Path) -> str:
    body = {"description": "fix the add function", "cwd": str(repo), "model": "openai/gpt-4o",
            "iterations": 1}  # fmt: skip
    status, created = request("POST", f"{url}/tasks", token=TOKEN, body=body)
    assert status == 202, created
    return created["id"]


def edges(flow: dict[str, Any], kind: str) -> dict[tuple[str, str], int]:
    return {(e["sender"], e["recipient"]): e["count"] for e in flow["edges"] if e["kind"] == kind}


def test_the_views_routes_need_the_token_and_refuse_bad_queries(home: Home) -> None:
    url = serve("--port", "0", env={"SHOAL_API_TOKEN": TOKEN})
    for path in ROUTES:
        for token in (None, "wrong"):
            status, body = request("GET", url + path, token=token)
            assert status == 401 and body["error"]["code"] == "unauthorized", (path, body)
    bad = [
        ("/cost/series?bucket=week", 422, "bucket"),
        ("/cost/series?last=0", 422, "last"),
        ("/cost/series?by=colour", 422, "by"),
        ("/flow?minutes=11", 422, "minutes"),
        ("/batches?status=lost", 422, "status"),
        ("/batches/0000000000", 404, "no batch"),
        ("/batches/no-such", 404, "no batch"),
    ]
    for path, code, text in bad:
        status, body = request("GET", url + path, token=TOKEN)
        assert (status, text in body["error"]["message"]) == (code, True), (path, body)
    assert request("GET", f"{url}/batches", token=TOKEN) == (200, {"batches": []})
    status, series = request("GET", f"{url}/cost/series", token=TOKEN)
    assert status == 200 and (series["points"], series["total_usd"]) == ([], 0.0), series
    assert (series["bucket"], series["by"]) == ("hour", "role")
    assert series["since"].endswith(":00:00Z"), series  # 23 whole hours before this one
    paths = request("GET", f"{url}/openapi.json", token=TOKEN)[1]["paths"]
    for path, model in zip(ROUTES, ("FlowView", "BatchList", "BatchDetail", "CostSeries"),
                           strict=True):  # fmt: skip
        route = path.replace("0000000000", "{batch_id}")
        assert model in str(paths[f"/api/v1{route}"]), route


def test_a_tasks_messages_and_costs_show_in_the_flow_and_the_cost_series_and_on_the_stream(
    home: Home, tmp_path: Path
) -> None:
    repo = bare_repo(tmp_path)
    with ScriptedModelServer(priced_script()) as server:
        url = serve("--port", "0", env=priced_env(server))
        stream = EventReader(f"{url}/events")
        try:
            wait_for(lambda: "connected" in stream.comments, 10, what="the stream to open")
            task_id = run_priced_task(url, repo)
            wait_for(lambda: "task.done" in stream.kinds(task_id), 90, what="task.done")
            # The broker's counts of the second in which the task ended come a moment later.
            wait_for(lambda: _streamed(stream, "task.done"), 5, what="the last flow summary")
            flow = request("GET", f"{url}/flow", token=TOKEN)[1]
            # The broker's counts, by the actor it gave each message to: the planner's,
            # executor's and evaluator's requests and their replies.
            for kind, actor in (("plan", "planner"), ("exec", "executor"), ("eval", "evaluator")):
                sent = edges(flow, f"{kind}.request")
                assert [r for _, r in sent] and all(
                    s == "orchestrator" and r.startswith(f"{actor}-") for s, r in sent
                ), (kind, sent)
                back = edges(flow, f"{kind}.result")
                assert {s for s, _ in back} == {r for _, r in sent}, (kind, back)
            assert edges(flow, "task.submit") == {(f"api-{_api_pid(url)}", "orchestrator"): 1}
            assert all(r == "*" for _, r in edges(flow, "exec.event"))
            # As many as the messages table recorded; the stream's summaries add up to it.
            recorded = read(home, "messages.recent", {"kind": "exec.event", "task_id": task_id,
                                                      "limit": 1000}).rows  # fmt: skip
            assert sum(edges(flow, "exec.event").values()) == len(recorded) > 0
            wait_for(lambda: _streamed(stream, "exec.event") == len(recorded), 5,
                     what="the flow summaries on the stream")  # fmt: skip
            summaries = [e for e in stream.events if e["kind"] == "flow.summary"]
            assert all(e["sender"] == "orchestrator" and e["task_id"] is None for e in summaries)
            ats = [e["payload"]["at"] for e in summaries]
            assert all(b - a >= 0.9 for a, b in itertools.pairwise(ats)), ats

            # What it cost: per minute and role, per hour and model; the live events say it too.
            total = request("GET", f"{url}/cost", token=TOKEN)[1]["total_usd"]
            assert total > 0
            per_role = request("GET", f"{url}/cost/series?bucket=minute&last=10", token=TOKEN)[1]
            assert set(per_role["keys"]) == {"planner", "executor", "evaluator"}, per_role
            assert per_role["total_usd"] == pytest.approx(total)
            assert all(p["t"].endswith(":00Z") and p["cost_usd"] > 0 for p in per_role["points"])
            by_model = request("GET", f"{url}/cost/series?by=model", token=TOKEN)[1]
            assert by_model["keys"] == ["openai/gpt-4o"] and len(by_model["points"]) in (1, 2)
            assert by_model["total_tokens"] == per_role["total_tokens"] == 4 * 1100
            wait_for(lambda: "usage.recorded" in stream.kinds(task_id), 5, what="usage events")
            usage = [e["payload"] for e in stream.events if e["kind"] == "usage.recorded"]
            assert {u["role"] for u in usage} == {"planner", "executor", "evaluator"}
            assert sum(u["cost_usd"] for u in usage) == pytest.approx(total)
            assert {u["model"] for u in usage} == {"openai/gpt-4o"}
        finally:
            stream.close()


def test_a_chat_turns_cost_is_in_the_series_and_on_the_stream(home: Home, tmp_path: Path) -> None:
    from tests.test_chat import chat_lines
    from tests.test_loop import make_repo

    repo = make_repo(tmp_path)
    script = Script.model_validate({"models": {"gpt-4o": [{"content": "It adds.", **priced()}]}})
    with ScriptedModelServer(script) as server:
        env = {**priced_env(server), "SHOAL_EXECUTOR_MODEL": "openai/gpt-4o"}
        url = serve("--port", "0", env=env)
        stream = EventReader(f"{url}/events")
        try:
            wait_for(lambda: "connected" in stream.comments, 10, what="the stream to open")
            out = chat_lines(repo, ["what does calc.py do?"], env)
            assert out.returncode == 0 and "It adds." in out.stdout, out.stderr
            wait_for(lambda: "usage.recorded" in stream.kinds(), 10, what="the turn's usage")
        finally:
            stream.close()
    (used,) = [e["payload"] for e in stream.events if e["kind"] == "usage.recorded"]
    assert (used["role"], used["task_id"], used["model"], used["calls"]) == (
        "chat", None, "openai/gpt-4o", 1)  # fmt: skip
    assert used["cost_usd"] > 0 and used["prompt_tokens"] == 1000
    series = request("GET", f"{url}/cost/series?bucket=day&last=1", token=TOKEN)[1]
    assert series["keys"] == ["chat"] and series["total_usd"] == pytest.approx(used["cost_usd"])


def _api_pid(url: str) -> int:
    return request("GET", f"{url}/health")[1]["pid"]


def _streamed(stream: EventReader, kind: str) -> int:
    return sum(
        e["count"]
        for event in stream.events
        if event["kind"] == "flow.summary"
        for e in event["payload"]["edges"]
        if e["kind"] == kind
    )


def test_a_batchs_units_run_and_end_in_the_list_and_on_the_stream(
    home: Home, tmp_path: Path
) -> None:
    from tests.test_batch import make_repo, script, start_local_batch

    repo, names = make_repo(tmp_path, 3)
    with ScriptedModelServer(script(names, delays={"m00.py": 4.0})) as server:
        url = serve("--port", "0", env={"SHOAL_API_TOKEN": TOKEN})
        stream = EventReader(f"{url}/events")
        wait_for(lambda: "connected" in stream.comments, 10, what="the stream to open")
        batch = start_local_batch(repo, server)
        try:
            listed = wait_for(lambda: request("GET", f"{url}/batches", token=TOKEN)[1]["batches"],
                              60, what="the batch to be recorded")  # fmt: skip
            (running,) = listed  # type: ignore[misc]
            assert (running["status"], running["units"], running["backend"]) == (
                "running", 3, "local")  # fmt: skip
            prefix = f"{url}/batches/{running['id'][:8]}"

            def slow_unit() -> tuple[str, int]:
                units = request("GET", prefix, token=TOKEN)[1]["units_detail"]
                return {u["name"]: (u["status"], u["attempts"]) for u in units}["m00.py"]

            # m00's model call waits 4 s: it runs (its first try) while the other two end.
            wait_for(lambda: slow_unit() == ("running", 1), 30, what="m00.py to be running")
            out, err = batch.communicate(timeout=120)
        finally:
            if batch.poll() is None:
                batch.kill()
                batch.wait()
            stream.close()
    assert batch.returncode == 0, err[-3000:]
    assert '"status": "done"' in out
    (done,) = request("GET", f"{url}/batches", token=TOKEN)[1]["batches"]
    assert (done["status"], done["finished"], done["accepted"], done["not_accepted"]) == (
        "done", 3, 3, 0)  # fmt: skip
    detail = request("GET", f"{url}/batches/{done['id']}", token=TOKEN)[1]
    assert [(u["name"], u["status"]) for u in detail["units_detail"]] == [
        (n, "accepted") for n in names
    ]
    assert detail["applied"] == {str(repo): f"shoal/batch-{done['id']}"}
    started = [e["payload"] for e in stream.events if e["kind"] == "batch.unit.started"]
    assert sorted(p["unit_id"] for p in started) == sorted(unit_id(n) for n in names)
    progress = [e["payload"] for e in stream.events if e["kind"] == "batch.progress"]
    assert progress[0]["status"] == "running" and progress[0]["unit_id"] is None
    assert progress[-1] == {"batch_id": done["id"], "status": "done", "unit_id": None,
                            "unit_status": None, "units": 3, "finished": 3}  # fmt: skip
    ended = Counter(p["unit_status"] for p in progress if p["unit_id"])
    assert ended == Counter({"accepted": 3})
    finished = [p["finished"] for p in progress if p["unit_id"]]
    assert sorted(finished) == [1, 2, 3]


def test_the_flow_folds_clients_caps_what_it_keeps_and_sums_the_last_minutes() -> None:
    assert party("client-4242-0a1b2c") == "client"
    assert party("aclient-7-ffffff") == "aclient"
    assert party("executor@red-1.ask-0f0f0f") == "executor@red-1"
    assert party("executor-1") == "executor-1" and party("api-4242") == "api-4242"
    flow = Flow()
    assert not flow.due(0.0)
    for n in range(3):
        flow.counts[(f"client-{100 + n}-abcdef", "orchestrator", "task.submit")] = 1
    flow.counts[("orchestrator", "executor-1", "exec.request")] = 5
    assert flow.due(0.0)
    summary = flow.take(0.0)
    assert [(e.sender, e.recipient, e.kind, e.count) for e in summary.edges] == [
        ("orchestrator", "executor-1", "exec.request", 5),
        ("client", "orchestrator", "task.submit", 3),
    ]
    assert not flow.due(0.5)  # nothing new, and not a second later
    flow.counts[("orchestrator", "executor-1", "exec.request")] = 2
    assert not flow.due(0.5) and flow.due(1.0)
    flow.take(1.0)
    recent = flow.recent(10)
    assert [(e.kind, e.count) for e in recent.edges] == [("exec.request", 7), ("task.submit", 3)]
    assert all(e.last_at is not None for e in recent.edges)
    # Many distinct edges: a summary carries the busiest, a minute keeps a bounded number.
    for batch in range(3):
        for n in range(400):
            flow.counts[(f"actor-{batch}-{n}", "orchestrator", "x.y")] = n + 1
        summary = flow.take(2.0 + batch)
        assert len(summary.edges) == MAX_EDGES and summary.other > 0
        assert summary.edges[0].count == 400
    assert max(len(edges) for _, edges in flow._minutes) == MAX_MINUTE_EDGES
