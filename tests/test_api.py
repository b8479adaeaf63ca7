"""The HTTP API and webhooks: served by the orchestrator, driven over real HTTP.

Tasks run end to end with the scripted model (real litellm over HTTP); the
webhook receiver is a real HTTP server in the test.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from shoal import daemon
from shoal.client import query as read
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import places_holding, shoal, wait_for
from tests.test_loop import call, make_repo, plan, verdict

TOKEN = "tok-" + os.urandom(8).hex()


def request(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One HTTP request (http.client: no proxy from the environment gets in the way)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), data, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _answers(url: str) -> bool:
    try:
        return request("GET", url)[0] == 200
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(*args: str, env: dict[str, str] | None = None) -> str:
    """``shoal serve --detach``: with SHOAL_API_TOKEN or --token given, with that token; else
    with --no-token (the tests that use no token)."""
    tokenless = "SHOAL_API_TOKEN" not in (env or {}) and "--token" not in args
    result = shoal("serve", "--detach", *(["--no-token"] * tokenless), *args, env=env, timeout=90)
    assert result.returncode == 0, result.stderr
    found = re.search(r"^serving (http://\S+)$", result.stdout, re.M)
    assert found, result.stdout
    return found.group(1)


def bare_repo(root: Path) -> Path:
    """A repository with the bug and no checks to run: the judge alone scores (faster)."""
    repo = make_repo(root)
    subprocess.run(["git", "-C", str(repo), "rm", "-rq", "tests", "pyproject.toml"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "-"],
        check=True,
    )
    return repo


def used(n: int = 100) -> dict[str, Any]:
    return {"usage": {"prompt_tokens": n, "completion_tokens": 0}}


class Receiver:
    """A webhook receiver: answers 500 to the first POST of each delivery, then 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        seen: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                delivery = self.headers["X-Shoal-Delivery"]
                status = 200 if delivery in seen else 500
                seen.add(delivery)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-path?k=v"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, name: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.posts if h["x-shoal-event"] == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_api_needs_its_token_and_answers_bad_input_in_json(home: Home, tmp_path: Path) -> None:
    from openapi_spec_validator import validate

    refused = shoal("serve", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2 and "needs a bearer token" in refused.stderr
    unsigned = shoal("serve", "--webhook", "http://127.0.0.1:9/x", env={"SHOAL_WEBHOOK_SECRET": ""})
    assert unsigned.returncode == 2 and "needs SHOAL_WEBHOOK_SECRET" in unsigned.stderr
    assert not (home.root / "api.json").exists()
    home.ensure()
    home.config_file.write_text('[[webhooks]]\nurl = "ftp://x"\nsecret = "k"\n')
    bad = shoal("orchestrator", "start")
    assert bad.returncode != 0 and "[[webhooks]] #1: url: Value error, must be an http" in (
        bad.stderr
    )
    home.config_file.unlink()

    port = free_port()
    signed = {"SHOAL_WEBHOOK_SECRET": "k"}
    hook = "http://127.0.0.1:9/x"
    # The token from the environment (the same as --token T).
    url = serve("--port", str(port), "--webhook", hook, env={**signed, "SHOAL_API_TOKEN": TOKEN})
    assert url == f"http://127.0.0.1:{port}/api/v1"
    assert (home.root / "api.token").stat().st_mode & 0o777 == 0o600
    status, health = request("GET", f"{url}/health")  # the one endpoint without the token
    assert status == 200 and health["status"] == "ok"
    for token in (None, "wrong", TOKEN[:-1]):
        status, body = request("GET", f"{url}/tasks", token=token)
        assert status == 401 and body["error"]["code"] == "unauthorized"
    assert request("GET", f"{url}/tasks", token=TOKEN) == (200, {"tasks": []})
    api = request("GET", f"{url}/status", token=TOKEN)[1]["api"]
    assert api == {"url": url, "auth": True, "webhooks": 1}
    status, doc = request("GET", f"{url}/openapi.json", token=TOKEN)
    assert status == 200
    validate(doc)
    assert {"/api/v1/tasks", "/api/v1/tasks/{task_id}/cancel", "/api/v1/cost"} <= set(doc["paths"])
    create = doc["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"] == {"$ref": "#/components/schemas/TaskCreate"}
    assert "budget_tokens" in doc["components"]["schemas"]["TaskCreate"]["properties"]

    repo = make_repo(tmp_path)
    bad = [
        ("POST", "/tasks", {"raw": b"{not json"}, 400, "not valid JSON"),
        ("POST", "/tasks", {"body": {"description": "x"}}, 422, "cwd: Field required"),
        ("POST", "/tasks", {"body": {"description": "x", "cwd": "rel"}}, 422, "absolute"),
        ("POST", "/tasks", {"body": {"description": "x", "cwd": str(tmp_path)}}, 422, "git"),
        ("POST", "/tasks", {"body": {"description": "x", "cwd": str(repo)}}, 422, "no model"),
        ("POST", "/tasks", {"body": {"description": " ", "cwd": str(repo)}}, 422, "empty"),
        (
            "POST",
            "/tasks",
            {"body": {"description": "x", "cwd": str(repo), "colour": "red"}},
            422,
            "colour: Extra inputs are not permitted",
        ),
        (
            "POST",
            "/tasks",
            {"body": {"description": "x", "cwd": str(repo), "iterations": 0}},
            422,
            "iterations",
        ),
        ("GET", "/tasks?limit=abc", {}, 422, "limit"),
        ("GET", "/tasks/0000000000", {}, 404, "no task"),
        ("POST", "/tasks/0000000000/cancel", {}, 404, "no task"),
        ("DELETE", "/tasks", {}, 405, "use POST, GET"),
        ("GET", "/nothing", {}, 404, "no endpoint"),
    ]
    for method, path, kwargs, code, text in bad:
        status, body = request(method, url + path, token=TOKEN, **kwargs)
        assert (status, body["error"]["message"].count(text) > 0) == (code, True), (path, body)

    # The settings come back with the next orchestrator; the token never reached the database.
    assert shoal("orchestrator", "stop").returncode == 0
    import duckdb

    con = duckdb.connect(str(home.database), read_only=True)
    try:
        counts = con.execute(
            "SELECT count(*) FILTER (kind = 'api.serve'), count(*) FILTER (body LIKE ?) "
            "FROM messages",
            [f"%{TOKEN}%"],
        ).fetchall()
    finally:
        con.close()
    assert counts == [(1, 0)]
    assert TOKEN not in (home.logs / "orchestrator.log").read_text()
    assert '"secret": "k"' in (home.root / "api.json").read_text()  # owner-only, read at start
    assert (home.root / "api.json").stat().st_mode & 0o777 == 0o600
    idle = {"SHOAL_IDLE_TIMEOUT": "0.5"}
    assert shoal("orchestrator", "start", env=idle).returncode == 0
    assert request("GET", f"{url}/tasks", token=TOKEN)[0] == 200
    time.sleep(1.5)  # three idle timeouts: a serving orchestrator stays
    assert request("GET", f"{url}/tasks", token=TOKEN)[0] == 200
    assert shoal("serve", "--stop").returncode == 0
    wait_for(lambda: daemon.running_pid(home) is None, 15, what="the idle orchestrator to exit")
    with pytest.raises(ConnectionRefusedError):
        request("GET", f"{url}/health")
    assert not (home.root / "api.json").exists() and not (home.root / "api.token").exists()


def test_answers_leave_out_fields_they_do_not_know_and_requests_refuse_them() -> None:
    from pydantic import ValidationError

    from shoal.api.app import document
    from shoal.api.models import TaskCreate, TaskSummary
    from shoal.api.routes import ROUTES

    # A column a shared query gains later is left out of the answer, not a 500.
    row = {
        "id": "T1",
        "status": "accepted",
        "decision": "quality",
        "score": 0.9,
        "iterations": 1,
        "tokens": 10,
        "cost_usd": 0.0,
        "created_at": "2026-01-01",
        "description": "x",
        "added_later": 42,
    }
    assert "added_later" not in TaskSummary.model_validate(row).model_dump()
    with pytest.raises(ValidationError, match="colour"):
        TaskCreate.model_validate({"description": "x", "cwd": "/x", "colour": "red"})
    # So for every model in the document: only what clients send is closed.
    schemas = document(None)["components"]["schemas"]
    sent = {m.__name__ for r in ROUTES for m in (r.body, r.query) if m is not None}
    closed = {n for n, s in schemas.items() if s.get("additionalProperties") is False}
    assert closed == sent & set(schemas) == {"TaskCreate", "SteerCreate"}


def test_serve_makes_a_token_unless_told_not_to(home: Home) -> None:
    both = shoal("serve", "--no-token", "--port", "0", env={"SHOAL_API_TOKEN": TOKEN})
    assert both.returncode == 2 and "were both given" in both.stderr
    outside = shoal("serve", "--no-token", "--host", "0.0.0.0", "--port", "0")
    assert outside.returncode == 2 and "not a loopback address" in outside.stderr
    result = shoal("serve", "--detach", "--port", "0", timeout=90)
    assert result.returncode == 0, result.stderr
    url = re.search(r"^serving (http://\S+)$", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    assert f"token: in {home.root / 'api.token'}" in result.stdout
    made = (home.root / "api.token").read_text().strip()
    assert len(made) >= 32 and (home.root / "api.token").stat().st_mode & 0o777 == 0o600
    assert request("GET", f"{url}/tasks")[0] == 401
    assert request("GET", f"{url}/tasks", token=made) == (200, {"tasks": []})
    assert made not in (home.logs / "orchestrator.log").read_text()
    assert shoal("serve", "--stop").returncode == 0


def test_serve_in_the_foreground_stops_serving_on_ctrl_c(home: Home) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "serve", "--no-token", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == f"serving http://127.0.0.1:{port}/api/v1\n", proc.stderr
        assert request("GET", f"http://127.0.0.1:{port}/api/v1/tasks")[0] == 200  # no token
        daemon.stop(home)  # lost under a foreground server: it starts one, which serves again
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/api/v1/health"), 30, what="the API")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped serving" in stderr
    with pytest.raises(ConnectionRefusedError):
        request("GET", f"http://127.0.0.1:{port}/api/v1/health")
    assert not (home.root / "api.json").exists()


def test_tasks_over_http_run_with_their_options_cancel_and_send_signed_webhooks(
    home: Home, tmp_path: Path
) -> None:
    repo = bare_repo(tmp_path)
    receiver = Receiver()
    home.root.mkdir(parents=True, exist_ok=True)
    (home.root / "config.toml").write_text(
        f'[[webhooks]]\nurl = "{receiver.url}"\n'
        'events = ["task.complete", "task.failed", "budget.warning"]\n'
        'secret = "s3cret-key"\nbackoff = 0.2\n'
    )
    script = Script.model_validate(
        {
            "models": {
                # One model for every role (the request's "model"), in the order they call it.
                "scripted-any": [
                    {**plan(), **used()},
                    {**call("read_file", path="calc.py"), **used()},
                    {
                        **call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                        **used(),
                    },
                    {**call("finish", summary="fixed"), **used()},
                    {**verdict(0.5), **used()},
                    {**call("finish", summary="polished"), **used()},
                    {**verdict(0.9), **used()},
                ],
                "scripted-slow": [plan(), {**call("read_file", path="calc.py"), "delay": 1.0}],
                "scripted-small": ["nothing to learn"],  # the learner, after each task
            }
        }
    )
    try:
        with ScriptedModelServer(script) as server:
            env = {
                "SHOAL_BASE_URL": server.base_url,
                "SHOAL_SMALL_MODEL": "openai/scripted-small",
                "SHOAL_PRELOAD": "litellm",
            }
            url = serve("--port", "0", env=env)
            # Without a token: no web page (Origin) and no rebound host name gets in.
            page = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
            assert request("POST", f"{url}/tasks", body={}, headers=page)[0] == 403
            assert request("GET", f"{url}/tasks", headers={"Host": "evil.example:9742"})[0] == 403
            status, created = request(
                "POST",
                f"{url}/tasks",
                body={
                    "description": "fix the add function",
                    "cwd": str(repo),
                    "model": "openai/scripted-any",
                    "iterations": 2,  # the default (3) would run a third
                    "quality": 0.99,  # the default (0.8) would accept the second
                    "budget_tokens": 800,  # 700 used: past 80%, a budget.warning
                },
            )
            assert status == 202 and created["url"] == f"/api/v1/tasks/{created['id']}", created
            task_id = created["id"]
            assert request("GET", f"{url}/tasks/{task_id}")[1]["status"] == "running"

            def finished() -> Any:
                task = request("GET", f"{url}/tasks/{task_id}")[1]
                return task if task["status"] != "running" else None

            task = wait_for(finished, timeout=90, what="the task to finish")
            assert isinstance(task, dict)
            assert (task["status"], task["decision"]) == ("unaccepted", "max_iterations"), task
            assert [it["n"] for it in task["iterations_detail"]] == [1, 2]
            assert task["tokens"] == 700 and task["files_changed"] == ["calc.py"]
            assert task["plan"]["steps"][0]["title"] == "fix add in calc.py"
            assert request("GET", f"{url}/tasks")[1]["tasks"][0]["id"] == task_id
            cost = request("GET", f"{url}/cost")[1]
            assert cost["total_tokens"] == 700 and cost["calls"] == 7

            # Cancel mid-run: the scheduler's cancel path, recorded as cancelled. The
            # repository's unapproved config may not widen the run: what it left out is said.
            (repo / ".shoal").mkdir()
            (repo / ".shoal" / "config.toml").write_text('[shoal]\nallow = ["shell"]\n')
            status, slow = request(
                "POST",
                f"{url}/tasks",
                body={"description": "slow", "cwd": str(repo), "model": "openai/scripted-slow"},
            )
            assert status == 202 and slow["ignored"] == ["allow rules"], slow
            wait_for(lambda: len(server.requests_for("scripted-slow")) >= 2, 60, what="executor")
            running = request("GET", f"{url}/status")[1]["running"]
            assert [t["id"] for t in running] == [slow["id"]]
            assert request("POST", f"{url}/tasks/{slow['id']}/cancel") == (
                202,
                {"id": slow["id"], "status": "cancelling"},
            )
            wait_for(
                lambda: request("GET", f"{url}/tasks/{slow['id']}")[1]["status"] == "cancelled",
                timeout=30,
                what="the task to be cancelled",
            )
            status, again = request("POST", f"{url}/tasks/{slow['id']}/cancel")
            assert status == 409 and "not running (status cancelled)" in again["error"]["message"]
            shown = json.loads(shoal("show", slow["id"], "--json", check=True).stdout)
            assert (shown["status"], shown["decision"]) == ("cancelled", "cancelled")
            # The learner's call for each task, before the model server goes away.
            wait_for(lambda: len(server.requests_for("scripted-small")) >= 2, 30, what="learner")

        # The webhook: refused once (500), retried, signed, the same delivery id both times.
        wait_for(lambda: len(receiver.events("task.complete")) >= 2, 30, what="the webhook retry")
        posts = receiver.events("task.complete")
        assert [h["x-shoal-attempt"] for h, _ in posts] == ["1", "2"]
        assert posts[0][1] == posts[1][1]
        assert posts[0][0]["x-shoal-delivery"] == posts[1][0]["x-shoal-delivery"]
        for headers, raw in posts:
            expected = hmac.new(b"s3cret-key", raw, hashlib.sha256).hexdigest()
            assert headers["x-shoal-signature"] == f"sha256={expected}"
        event = json.loads(posts[0][1])
        assert (event["event"], event["task_id"]) == ("task.complete", task_id)
        assert event["data"]["status"] == "unaccepted" and event["data"]["iterations"] == 2
        warning = json.loads(receiver.events("budget.warning")[-1][1])
        assert warning["data"]["budget"] == "tokens" and warning["data"]["fraction"] >= 0.8

        def deliveries() -> list[dict[str, Any]]:
            reply = read(home, "webhooks.deliveries", {"task_id": task_id})
            return [dict(zip(reply.columns, r, strict=True)) for r in reply.rows]

        wait_for(lambda: len(deliveries()) >= 4, 10, what="the delivery rows")
        rows = sorted(deliveries(), key=lambda r: (r["event"], r["attempt"]))
        assert [(r["event"], r["attempt"], r["status_code"], r["ok"]) for r in rows] == [
            ("budget.warning", 1, 500, False),
            ("budget.warning", 2, 200, True),
            ("task.complete", 1, 500, False),
            ("task.complete", 2, 200, True),
        ]
        assert rows[2]["retry_at"] is not None and rows[3]["retry_at"] is None
        host = urlsplit(receiver.url)
        assert {r["target"] for r in rows} == {f"http://127.0.0.1:{host.port}"}
        # A cancelled task is a task.failed event.
        wait_for(lambda: len(receiver.events("task.failed")) >= 2, 30, what="task.failed")
        failed = json.loads(receiver.events("task.failed")[-1][1])
        assert (failed["task_id"], failed["data"]["status"]) == (slow["id"], "cancelled")
        listed = shoal("webhooks", "--json", "--task", task_id, check=True).stdout.splitlines()
        assert sorted(json.loads(line)["status_code"] for line in listed) == [200, 200, 500, 500]
        assert "s3cret-key" not in (home.logs / "orchestrator.log").read_text()
    finally:
        receiver.close()


def task_done(task_id: str, status: str, decision: str, score: float | None = None) -> Any:
    """A finished task's bus message, as the scheduler publishes it."""
    from shoal.messages.tasks import TaskDone

    return TaskDone(
        task_id=task_id,
        status=status,  # type: ignore[arg-type]
        decision=decision,
        score=score,
        iterations=1,
        tokens=0,
        cost_usd=0.0,
        files_changed=[],
        summary="",
    )


class Endpoints:
    """Webhook receivers on one server, by path: ``/ok`` answers 200; ``/busy`` 503 with
    ``Retry-After: <wait>`` (``/busy-once``: only to the first attempt of each delivery);
    ``/broken`` 500; ``/status/N`` N to a first attempt, then 200. Each POST is kept with
    its arrival time."""

    def __init__(self, wait: int = 1) -> None:
        self.posts: list[tuple[float, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.posts.append((time.monotonic(), self.path, headers, body))
                first = headers["x-shoal-attempt"] == "1"
                busy = self.path == "/busy" or (self.path == "/busy-once" and first)
                if self.path.startswith("/status/"):  # that status to a first attempt, then 200
                    self.send_response(int(self.path.split("/")[2]) if first else 200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(503 if busy else 500 if self.path == "/broken" else 200)
                if busy:
                    self.send_header("Retry-After", str(wait))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str) -> list[tuple[float, str, dict[str, str], bytes]]:
        return [p for p in self.posts if p[1] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_retries_wait_in_a_timer_not_in_the_delivery_workers() -> None:
    from shoal.api.settings import WebhookConfig
    from shoal.api.webhooks import Dispatcher
    from shoal.mailbox.envelope import Envelope

    receivers = Endpoints(wait=1)
    rows: list[list[Any]] = []
    dispatcher = Dispatcher("ipc:///nonexistent", lambda _sql, params: rows.append(params))

    def hook(path: str, name: str, **extra: Any) -> WebhookConfig:
        url = receivers.base + path
        return WebhookConfig(url=url, name=name, secret="k", **extra)  # type: ignore[arg-type]

    # More receivers asking to wait than there are delivery workers (4), queued first.
    busy = [hook("/busy", f"busy{n}", max_attempts=2) for n in range(6)]
    impatient = hook("/busy", "impatient", max_retry_after=0.5)
    broken = hook("/broken", "broken", max_attempts=4, backoff=0.05, backoff_cap=0.1)
    dispatcher.configure(served=[*busy, impatient, broken, hook("/ok", "healthy")])
    done = task_done("T1", "failed", "error")
    try:
        sent = time.monotonic()
        assert dispatcher.dispatch(Envelope.of(done, sender="o", recipient="*", task_id="T1")) == 9
        wait_for(lambda: len(receivers.at("/busy")) >= 6 * 2 + 1, 30, what="the busy retries")
        wait_for(lambda: len(rows) == 6 * 2 + 1 + 4 + 1, 10, what="every attempt's row")
    finally:
        dispatcher.close()
        receivers.close()
    healthy = receivers.at("/ok")
    retried = [p for p in receivers.at("/busy") if p[2]["x-shoal-attempt"] == "2"]
    assert len(healthy) == 1 and len(retried) == 6
    # The healthy receiver did not wait behind the busy ones; each retry waited as asked.
    assert healthy[0][0] < min(p[0] for p in retried)
    assert min(p[0] for p in retried) - sent >= 1.0
    by = {(r[4], r[1]): r for r in rows}  # (webhook name, attempt) -> row
    assert [by[("busy0", n)][6] for n in (1, 2)] == [503, 503]
    assert by[("busy0", 1)][11] is not None and by[("busy0", 2)][11] is None  # retry_at
    assert (by[("healthy", 1)][6], by[("healthy", 1)][7]) == (200, True)
    # Asking for longer than max_retry_after ends the delivery, saying why.
    assert ("impatient", 2) not in by
    assert "Retry-After 1s is longer than max_retry_after" in by[("impatient", 1)][8]
    # Without Retry-After: the capped full-jitter backoff, every attempt made.
    waits = [(by[("broken", n)][11] - by[("broken", n)][10]).total_seconds() for n in (1, 2, 3)]
    assert all(0 <= w <= 0.1 + 0.01 for w in waits), waits
    assert by[("broken", 4)][6] == 500 and by[("broken", 4)][11] is None


def test_webhooks_retry_timeouts_refusals_and_busy_answers_but_not_a_bad_request() -> None:
    import socket

    from shoal.api.settings import WebhookConfig
    from shoal.api.webhooks import Dispatcher
    from shoal.mailbox.envelope import Envelope

    receivers = Endpoints(wait=0)
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    rows: list[list[Any]] = []
    dispatcher = Dispatcher("ipc:///nonexistent", lambda _sql, params: rows.append(params))
    codes = (408, 425, 429, 400)
    hooks = [
        WebhookConfig(url=f"{receivers.base}/status/{code}", name=str(code), secret="k",
                      backoff=0.05, backoff_cap=0.1)
        for code in codes
    ]  # fmt: skip
    hooks.append(WebhookConfig(url=closed, name="closed", secret="k", max_attempts=2,
                               backoff=0.05, backoff_cap=0.1))  # fmt: skip
    dispatcher.configure(served=hooks)
    done = task_done("T3", "accepted", "quality", score=0.9)
    try:
        dispatcher.dispatch(Envelope.of(done, sender="o", recipient="*", task_id="T3"))
        wait_for(lambda: len(rows) == 3 * 2 + 1 + 2, 20, what="every attempt's row")
    finally:
        dispatcher.close()
        receivers.close()
    by = {(r[4], r[1]): r for r in rows}  # (webhook name, attempt) -> row
    for code in (408, 425, 429):
        assert by[(str(code), 1)][6] == code and by[(str(code), 2)][7] is True
    assert by[("400", 1)][6] == 400 and ("400", 2) not in by  # a bad request is not retried
    assert by[("closed", 1)][6] is None and by[("closed", 2)][6] is None


def test_a_retry_still_waiting_when_the_orchestrator_stops_is_recorded_as_not_delivered() -> None:
    from shoal.api.settings import WebhookConfig
    from shoal.api.webhooks import Dispatcher
    from shoal.mailbox.envelope import Envelope

    receivers = Endpoints(wait=60)
    rows: list[list[Any]] = []
    dispatcher = Dispatcher("ipc:///nonexistent", lambda _sql, params: rows.append(params))
    hook = WebhookConfig(url=receivers.base + "/busy", name="busy", secret="k")  # type: ignore[arg-type]
    dispatcher.configure(served=[hook])
    done = task_done("T2", "cancelled", "cancelled")
    try:
        dispatcher.dispatch(Envelope.of(done, sender="o", recipient="*", task_id="T2"))
        wait_for(lambda: dispatcher.waiting() == 1, 10, what="a retry waiting 60 s")
    finally:
        dispatcher.close()
        receivers.close()
    assert [(r[1], r[6]) for r in rows] == [(1, 503), (2, None)]
    assert "not delivered: the orchestrator stopped" in rows[1][8]


def test_a_failed_task_is_signed_with_the_secret_from_the_environment_and_retried_as_asked(
    home: Home, tmp_path: Path
) -> None:
    key = "env-k3y-" + os.urandom(6).hex()
    receivers = Endpoints(wait=1)
    home.ensure()
    home.config_file.write_text(
        f'[[webhooks]]\nurl = "{receivers.base}/busy-once"\nname = "flaky"\n'
        'events = ["task.failed"]\nsecret_env = "SHOAL_TEST_HOOK_KEY"\n\n'
        f'[[webhooks]]\nurl = "{receivers.base}/ok"\nname = "steady"\n'
        'events = ["task.failed"]\nsecret_env = "SHOAL_TEST_HOOK_KEY"\n'
    )
    repo = bare_repo(tmp_path)
    # A request the provider refuses (400, not retried): the task fails at once.
    script = Script.model_validate({"models": {"scripted-any": [{"status": 400}]}})
    try:
        with ScriptedModelServer(script) as server:
            env = {
                "SHOAL_BASE_URL": server.base_url,
                "SHOAL_MODEL": "openai/scripted-any",
                "SHOAL_TEST_HOOK_KEY": key,
            }
            unset = shoal("orchestrator", "start", env={"SHOAL_TEST_HOOK_KEY": ""})
            assert unset.returncode != 0 and "SHOAL_TEST_HOOK_KEY is not set" in unset.stderr
            ran = shoal("run", "fix it", "-C", str(repo), "--json", env=env, timeout=120)
            assert ran.returncode == 1, ran.stderr
            task_id = json.loads(ran.stdout)["task_id"]
            assert json.loads(ran.stdout)["status"] == "failed"
            wait_for(lambda: len(receivers.at("/busy-once")) >= 2, 30, what="the retry")
        steady, flaky = receivers.at("/ok"), receivers.at("/busy-once")
        assert len(steady) == 1 and len(flaky) == 2
        # The steady receiver had it at once; the flaky one again after its Retry-After.
        assert steady[0][0] < flaky[1][0] and flaky[1][0] - flaky[0][0] >= 1.0
        for _, _, headers, raw in [*steady, *flaky]:
            expected = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
            assert headers["x-shoal-signature"] == f"sha256={expected}"
            assert headers["x-shoal-event"] == "task.failed"
            event = json.loads(raw)
            assert (event["task_id"], event["data"]["status"]) == (task_id, "failed")

        listed = shoal("webhooks", "--json", "--task", task_id, check=True).stdout
        rows = [json.loads(line) for line in listed.splitlines()]
        seen = sorted((r["webhook"], r["attempt"], r["status_code"]) for r in rows)
        assert seen == [("flaky", 1, 503), ("flaky", 2, 200), ("steady", 1, 200)]
        table = shoal("webhooks", check=True).stdout
        assert "flaky" in table and key not in table and key not in listed
    finally:
        receivers.close()
    assert shoal("orchestrator", "stop").returncode == 0
    assert places_holding(home, key) == []


def test_every_option_of_a_task_posted_over_http_reaches_the_task(
    home: Home, tmp_path: Path
) -> None:
    from shoal.api.models import TaskCreate
    from shoal.submission import task_submit

    repo = bare_repo(tmp_path)
    body = TaskCreate.model_validate(
        {
            "description": "fix it",
            "cwd": str(repo),
            "model": "openai/posted",
            "iterations": 2,
            "quality": 0.7,
            "budget_usd": 1.5,
            "budget_tokens": 900,
            "timeout": 30,
            "permission_mode": "plan",
        }
    )
    # What POST /tasks hands to the code `shoal run` uses (routes.create_task).
    submit = task_submit(home, body.description, Path(body.cwd), body.flags(), no_model="-")
    options = submit.options
    assert (options.iterations, options.quality, options.permission_mode) == (2, 0.7, "plan")
    assert (options.budget_usd, options.budget_tokens, options.timeout) == (1.5, 900, 30)
    assert options.models["executor"].model == "openai/posted"
    unset = TaskCreate.model_validate({"description": "x", "cwd": str(repo), "model": "o/m"})
    defaults = task_submit(home, "x", repo, unset.flags(), no_model="-").options
    assert defaults.timeout == 3600 and defaults.permission_mode == "accept-edits"
