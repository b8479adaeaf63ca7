"""The scripted OpenAI-compatible model server, over real HTTP and through real litellm."""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shoal.llm.script import Reply, Script
from shoal.llm.scripted import ScriptedModelServer, read_requests_log

pytestmark = pytest.mark.timeout(60)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
HELLO = [{"role": "user", "content": "hello"}]


def litellm_kwargs(server: ScriptedModelServer) -> dict[str, Any]:
    return {"api_base": server.base_url, "api_key": "sk-test", "max_retries": 0, "num_retries": 0}


@pytest.fixture(scope="module")
def litellm():
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def http_request(
    server: ScriptedModelServer, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def sse_events(raw: bytes) -> list[str]:
    assert raw.endswith(b"\n\n")
    events = raw.decode().split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events), events
    return [e.removeprefix("data: ") for e in events]


# --- the script -------------------------------------------------------------


def test_script_shorthands_and_validation() -> None:
    script = Script.model_validate(
        {"models": {"a": ["hi", {"content": "there", "delay": 0.1}], "b": {"replies": ["x"]}}}
    )
    assert script.models["a"].replies[0] == Reply(content="hi")
    assert script.models["a"].replies[1].delay == 0.1
    assert script.models["b"].repeat_last is True
    with pytest.raises(ValidationError, match="status of 400"):
        Reply.model_validate({"error": {"message": "boom"}})
    with pytest.raises(ValidationError):
        Script.model_validate({"models": {"a": []}})
    with pytest.raises(ValidationError):
        Reply.model_validate({"contnet": "typo"})


# --- chat completions through litellm ---------------------------------------------


def test_text_completion_and_usage(litellm) -> None:
    with ScriptedModelServer({"models": {"scripted-planner": ["1. read\n2. fix"]}}) as server:
        response = litellm.completion(
            model="openai/scripted-planner", messages=HELLO, **litellm_kwargs(server)
        )
    assert response.choices[0].message.content == "1. read\n2. fix"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens == math.ceil(len("1. read\n2. fix") / 4)
    [request] = server.requests
    assert request["model"] == "scripted-planner" and request["messages"] == HELLO


def test_tool_calls_non_streaming(litellm) -> None:
    script = {
        "models": {
            "scripted-executor": [
                {
                    "tool_calls": [
                        {"name": "read_file", "arguments": {"path": "a.py"}},
                        {"name": "grep", "arguments": {"pattern": "def ", "glob": "*.py"}},
                    ]
                }
            ]
        }
    }
    with ScriptedModelServer(script) as server:
        response = litellm.completion(
            model="openai/scripted-executor", messages=HELLO, **litellm_kwargs(server)
        )
    message = response.choices[0].message
    assert response.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in message.tool_calls] == ["read_file", "grep"]
    assert json.loads(message.tool_calls[1].function.arguments) == {
        "pattern": "def ",
        "glob": "*.py",
    }
    assert len({c.id for c in message.tool_calls}) == 2


def test_streaming_text_and_tool_calls_with_usage(litellm) -> None:
    text = "Here is the plan, step by step, with enough words to span many chunks."
    args = {"path": "src/some/long/path/module.py", "content": "x = 1\n" * 5}
    script = {
        "models": {
            "scripted-executor": [
                {"content": text, "tool_calls": [{"name": "write_file", "arguments": args}]}
            ]
        }
    }
    with ScriptedModelServer(script) as server:
        chunks = list(
            litellm.completion(
                model="openai/scripted-executor",
                messages=HELLO,
                stream=True,
                stream_options={"include_usage": True},
                **litellm_kwargs(server),
            )
        )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta]
    assert len([p for p in pieces if p]) > 5  # really streamed, not one blob
    built = litellm.stream_chunk_builder(chunks, messages=HELLO)
    assert built.choices[0].message.content == text
    call = built.choices[0].message.tool_calls[0]
    assert call.function.name == "write_file"
    assert json.loads(call.function.arguments) == args
    assert built.choices[0].finish_reason == "tool_calls"
    assert built.usage.completion_tokens > 0 and built.usage.prompt_tokens > 0


def test_sse_wire_format() -> None:
    script = {
        "models": {"m": [{"content": "a b", "tool_calls": [{"name": "t", "arguments": {"k": 1}}]}]}
    }
    with ScriptedModelServer(script) as server:
        body = {
            "model": "m",
            "messages": HELLO,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        status, headers, raw = http_request(server, "POST", "/v1/chat/completions", body)
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    head = chunks[3]["choices"][0]["delta"]["tool_calls"][0]
    assert head["index"] == 0 and head["type"] == "function" and head["id"]
    assert head["function"] == {"name": "t", "arguments": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    # Without include_usage there is no usage chunk.
    with ScriptedModelServer(script) as server:
        _, _, raw = http_request(
            server, "POST", "/v1/chat/completions", {"model": "m", "messages": [], "stream": True}
        )
    assert all("usage" not in json.loads(e) for e in sse_events(raw)[:-1])


def test_hang_up_mid_stream_and_before_answering() -> None:
    script = {"models": {"m": [{"content": "a b c d e f", "hang_up_after": 3}]}}
    with ScriptedModelServer(script) as server:
        body = {"model": "m", "messages": HELLO, "stream": True}
        _, _, raw = http_request(server, "POST", "/v1/chat/completions", body)
        events = sse_events(raw)
        assert len(events) == 3 and "[DONE]" not in events
        with pytest.raises(http.client.RemoteDisconnected):
            http_request(server, "POST", "/v1/chat/completions", {"model": "m", "messages": []})


def test_replies_in_order_per_model_then_last_repeats() -> None:
    script = {"models": {"a": ["a1", "a2"], "b": {"replies": ["b1"], "repeat_last": False}}}

    def ask(server: ScriptedModelServer, model: str) -> tuple[int, dict[str, Any]]:
        body = {"model": model, "messages": HELLO}
        status, _, raw = http_request(server, "POST", "/v1/chat/completions", body)
        return status, json.loads(raw)

    with ScriptedModelServer(script) as server:
        answers = [ask(server, m) for m in ("a", "b", "a", "a", "b")]
    content = [a[1]["choices"][0]["message"]["content"] for a in answers[:4]]
    assert content == ["a1", "b1", "a2", "a2"]
    status, body = answers[4]
    assert status == 400 and body["error"]["code"] == "script_exhausted"
    assert [r["model"] for r in server.requests] == ["a", "b", "a", "a", "b"]
    assert len(server.requests_for("a")) == 3


def test_routes_give_parallel_conversations_their_own_replies() -> None:
    script = {
        "models": {
            "m": {
                "replies": ["default"],
                "routes": {"calc.py": ["calc 1", "calc 2"], "util.py": ["util 1"]},
            }
        }
    }

    def ask(server: ScriptedModelServer, text: str) -> str:
        body = {"model": "m", "messages": [{"role": "system", "content": "util.py"}]}
        body["messages"].append({"role": "user", "content": text})
        _, _, raw = http_request(server, "POST", "/v1/chat/completions", body)
        return json.loads(raw)["choices"][0]["message"]["content"]

    with ScriptedModelServer(script) as server:
        got = [ask(server, t) for t in ("fix calc.py", "fix util.py", "fix calc.py", "other")]
    # The system message mentions util.py too: only the first user message routes.
    assert got == ["calc 1", "util 1", "calc 2", "default"]
    with pytest.raises(ValidationError, match="replies or routes"):
        Script.model_validate({"models": {"m": {"replies": []}}})


def test_error_replies_have_status_headers_and_openai_body() -> None:
    script = {
        "models": {
            "m": [
                {"status": 429, "headers": {"Retry-After": "7"}},
                {
                    "status": 400,
                    "error": {
                        "message": "maximum context length exceeded",
                        "code": "context_length_exceeded",
                    },
                },
                {"status": 503},
            ]
        }
    }
    with ScriptedModelServer(script) as server:
        results = [
            http_request(server, "POST", "/v1/chat/completions", {"model": "m", "messages": HELLO})
            for _ in range(3)
        ]
    (s1, h1, b1), (s2, _, b2), (s3, _, b3) = results
    assert s1 == 429 and h1["Retry-After"] == "7"
    assert json.loads(b1)["error"]["code"] == "rate_limit_exceeded"
    assert s2 == 400
    assert json.loads(b2) == {
        "error": {
            "message": "maximum context length exceeded",
            "type": "invalid_request_error",
            "param": None,
            "code": "context_length_exceeded",
        }
    }
    assert s3 == 503 and json.loads(b3)["error"]["type"] == "server_error"


def test_unknown_model_and_endpoint_are_404(litellm) -> None:
    with ScriptedModelServer({"models": {"m": ["x"]}}) as server:
        status, _, raw = http_request(
            server, "POST", "/v1/chat/completions", {"model": "nope", "messages": []}
        )
        assert status == 404
        assert json.loads(raw)["error"]["code"] == "model_not_found"
        assert "nope" in json.loads(raw)["error"]["message"]
        status, _, raw = http_request(server, "POST", "/v1/nothing", {})
        assert status == 404 and "error" in json.loads(raw)
        with pytest.raises(litellm.NotFoundError):
            litellm.completion(model="openai/nope", messages=HELLO, **litellm_kwargs(server))


def test_models_endpoint() -> None:
    with ScriptedModelServer({"models": {"p": ["x"], "e": ["y"]}}) as server:
        status, _, raw = http_request(server, "GET", "/v1/models")
        assert status == 200
        assert [m["id"] for m in json.loads(raw)["data"]] == ["p", "e", "scripted-embedder"]
        assert http_request(server, "GET", "/v1/models/p")[0] == 200
        assert http_request(server, "GET", "/v1/models/q")[0] == 404


def test_embeddings_are_deterministic_unit_vectors(litellm) -> None:
    with ScriptedModelServer({"embeddings": {"dimensions": 32}}) as server:
        texts = ["fix the flaky test", "fix the flaky test in ci", "bake a chocolate cake"]
        response = litellm.embedding(
            model="openai/scripted-embedder", input=texts, **litellm_kwargs(server)
        )
        again = litellm.embedding(
            model="openai/scripted-embedder", input=texts[:1], **litellm_kwargs(server)
        )
        with pytest.raises(litellm.NotFoundError):
            litellm.embedding(model="openai/nope", input=["x"], **litellm_kwargs(server))
    vectors = [d["embedding"] for d in response.data]
    assert [len(v) for v in vectors] == [32, 32, 32]
    assert all(abs(sum(x * x for x in v) - 1) < 1e-6 for v in vectors)
    assert again.data[0]["embedding"] == vectors[0]

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


def test_embeddings_base64_and_dimensions() -> None:
    import base64
    import struct

    with ScriptedModelServer({}) as server:
        body = {
            "model": "scripted-embedder",
            "input": "hello",
            "encoding_format": "base64",
            "dimensions": 8,
        }
        status, _, raw = http_request(server, "POST", "/v1/embeddings", body)
    assert status == 200
    encoded = json.loads(raw)["data"][0]["embedding"]
    vector = struct.unpack("<8f", base64.b64decode(encoded))
    assert abs(sum(x * x for x in vector) - 1) < 1e-5


# --- recording, delays, shutdown ------------------------------------------------


def test_requests_are_recorded_in_memory_and_in_the_log(tmp_path: Path, litellm) -> None:
    log = tmp_path / "requests.jsonl"
    with ScriptedModelServer({"models": {"m": ["one", "two"]}}, requests_log=log) as server:
        for text in ("first prompt", "second prompt"):
            litellm.completion(
                model="openai/m",
                messages=[{"role": "user", "content": text}],
                **litellm_kwargs(server),
            )
        litellm.embedding(model="openai/scripted-embedder", input="x", **litellm_kwargs(server))
    logged = read_requests_log(log)
    assert logged == server.requests
    assert [r["messages"][0]["content"] for r in logged[:2]] == ["first prompt", "second prompt"]
    assert logged[2]["input"] == "x"
    assert len(log.read_text().splitlines()) == 3


def test_concurrent_requests_each_get_one_reply() -> None:
    replies = [f"r{i}" for i in range(20)]
    with ScriptedModelServer({"models": {"m": {"replies": replies}}}) as server:
        got: list[str] = []
        lock = threading.Lock()

        def ask() -> None:
            body = {"model": "m", "messages": HELLO}
            _, _, raw = http_request(server, "POST", "/v1/chat/completions", body)
            with lock:
                got.append(json.loads(raw)["choices"][0]["message"]["content"])

        threads = [threading.Thread(target=ask) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(got) == sorted(replies)
    assert len(server.requests) == 20


def test_delay_and_close_cuts_waiting_requests_short() -> None:
    server = ScriptedModelServer({"models": {"slow": [{"content": "late", "delay": 30}]}})
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            http_request(server, "POST", "/v1/chat/completions", {"model": "slow", "messages": []})
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5  # not the scripted 30 s
    assert errors  # the client saw the connection end without an answer
    server.close()  # idempotent


def test_runs_as_a_process(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"models": {"scripted-planner": ["from a process"]}}))
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shoal.llm.scripted",
            "--script",
            str(script),
            "--requests-log",
            str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        port = int(base_url.split(":")[2].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = {"model": "scripted-planner", "messages": [{"role": "user", "content": "plan it"}]}
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body))
        answer = json.loads(conn.getresponse().read())
        conn.close()
        assert answer["choices"][0]["message"]["content"] == "from a process"
        assert read_requests_log(log)[0]["messages"][0]["content"] == "plan it"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0, stderr


def test_process_refuses_a_bad_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"models": {"m": [{"error": {"message": "x"}}]}}))
    result = subprocess.run(
        [sys.executable, "-m", "shoal.llm.scripted", "--script", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "status of 400" in result.stderr
