"""shoal.llm.complete against the scripted server: real HTTP, real litellm, nothing mocked."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from shoal.llm import (
    Completion,
    ContextOverflow,
    ModelConfig,
    ModelError,
    complete,
    embed,
    prune_messages,
)
from shoal.llm.overflow import is_overflow_text
from shoal.llm.retry import backoff, retry_after
from shoal.llm.scripted import ScriptedModelServer

pytestmark = pytest.mark.timeout(60)

SECRET = "sk-live-DO-NOT-LEAK-4f9a8b7c"
HELLO = [{"role": "user", "content": "hello"}]
READ_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
}
OVERFLOW = {
    "status": 400,
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your "
        "messages resulted in 9100 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "code": "context_length_exceeded",
    },
}


class Sleeps:
    """Records the waits complete() asks for, without waiting (keeps retry tests fast)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def config(server: ScriptedModelServer, model: str, **overrides: Any) -> ModelConfig:
    values: dict[str, Any] = {
        "model": f"openai/{model}",
        "base_url": server.base_url,
        "api_key": SECRET,
        "timeout": 10,
        "max_retries": 3,
        "backoff_base": 0.01,
    }
    return ModelConfig(**(values | overrides))


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ScriptedModelServer] = []

    def start(models: dict[str, Any], **kwargs: Any) -> ScriptedModelServer:
        server = ScriptedModelServer({"models": models}, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def conversation(tool_results: int, size: int = 2000) -> list[dict[str, Any]]:
    """A system prompt, a request, then ``tool_results`` read_file calls with big results."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are the executor. " * 50},
        {"role": "user", "content": "Fix the failing test in tests/test_x.py"},
    ]
    for i in range(tool_results):
        call_id = f"call_{i}"
        messages.append(
            {
                # No "content": None here: litellm drops that key before sending.
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "read_file", "arguments": json.dumps({"path": i})},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": f"{i}" * size})
    return messages


# --- completions ----------------------------------------------------------------


def test_text_completion(serve) -> None:
    server = serve({"scripted-planner": ["1. read the test\n2. fix the bug"]})
    result = complete(config(server, "scripted-planner"), HELLO)
    assert isinstance(result, Completion)
    assert result.content == "1. read the test\n2. fix the bug"
    assert result.tool_calls == []
    assert result.finish_reason == "stop"
    assert result.model == "openai/scripted-planner"
    assert result.attempts == 1 and result.pruned == 0 and result.messages is None
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert result.usage.cost_usd == 0.0  # litellm has no price for a scripted model
    assert result.latency_s > 0
    assert server.requests[0]["messages"] == HELLO


def test_tool_calls_arrive_parsed(serve) -> None:
    server = serve(
        {
            "scripted-executor": [
                {
                    "content": "Reading it first.",
                    "tool_calls": [
                        {"name": "read_file", "arguments": {"path": "tests/test_x.py"}},
                        {"name": "list_files", "arguments": {}},
                    ],
                }
            ]
        }
    )
    result = complete(config(server, "scripted-executor"), HELLO, tools=[READ_TOOL])
    assert result.content == "Reading it first."
    assert result.finish_reason == "tool_calls"
    assert [(c.name, c.arguments, c.error) for c in result.tool_calls] == [
        ("read_file", {"path": "tests/test_x.py"}, None),
        ("list_files", {}, None),
    ]
    assert all(c.id for c in result.tool_calls)
    assert server.requests[0]["tools"] == [READ_TOOL]
    # The assistant message goes back into the conversation as OpenAI expects it.
    message = result.to_message()
    assert message["tool_calls"][0]["function"] == {
        "name": "read_file",
        "arguments": json.dumps({"path": "tests/test_x.py"}),
    }


def test_invalid_tool_arguments_are_reported_not_raised(serve) -> None:
    server = serve(
        {
            "m": [
                {
                    "tool_calls": [
                        {"name": "read_file", "arguments": '{"path": "a.py"'},
                        {"name": "grep", "arguments": '["not", "an", "object"]'},
                    ]
                }
            ]
        }
    )
    for stream in (False, True):
        result = complete(config(server, "m"), HELLO, stream=stream)
        broken, listed = result.tool_calls
        assert broken.arguments == {} and broken.raw_arguments == '{"path": "a.py"'
        assert "read_file" in broken.error and "not valid JSON" in broken.error
        assert "not a JSON object" in listed.error


def test_streaming_text_calls_on_delta(serve) -> None:
    text = "First I will read the failing test, then the module it covers, then fix it."
    server = serve({"m": [text]})
    deltas: list[str] = []
    result = complete(config(server, "m"), HELLO, stream=True, on_delta=deltas.append)
    assert result.content == text
    assert "".join(deltas) == text and len(deltas) > 5
    assert result.finish_reason == "stop"
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["stream_options"] == {"include_usage": True}


def test_streaming_tool_calls(serve) -> None:
    args = {"path": "src/pkg/module.py", "old": "return a - b", "new": "return a + b"}
    server = serve({"m": [{"tool_calls": [{"name": "edit_file", "arguments": args}]}]})
    deltas: list[str] = []
    result = complete(
        config(server, "m"), HELLO, tools=[READ_TOOL], stream=True, on_delta=deltas.append
    )
    assert deltas == []
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("edit_file", args)]
    assert result.finish_reason == "tool_calls"
    assert result.usage.completion_tokens > 0


def test_cost_is_counted_for_a_model_litellm_knows(serve) -> None:
    server = serve(
        {"gpt-4o": [{"content": "hi", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}]}
    )
    result = complete(config(server, "gpt-4o"), HELLO)
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (1000, 100)
    assert result.usage.cost_usd > 0


def test_no_api_key_works_against_a_local_server(serve, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = serve({"m": ["no key needed"]})
    result = complete(config(server, "m", api_key=None), HELLO)
    assert result.content == "no key needed"


def test_embed(serve) -> None:
    server = serve({})
    cfg = config(server, "scripted-embedder")
    result = embed(cfg, ["fix the flaky test", "fix the flaky test", "bake bread"])
    assert len(result.vectors) == 3 and len(result.vectors[0]) == 64
    assert result.vectors[0] == result.vectors[1] != result.vectors[2]
    assert result.usage.prompt_tokens > 0 and result.attempts == 1
    assert embed(cfg, []).vectors == []
    with pytest.raises(ModelError, match="HTTP 404 after 1 attempt"):
        embed(config(server, "nope"), ["x"], sleep=Sleeps())


# --- retries --------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_429_with_retry_after_is_honoured(serve) -> None:
    server = serve({"m": [{"status": 429, "headers": {"Retry-After": "1"}}, "ok"]})
    started = time.monotonic()
    result = complete(config(server, "m"), HELLO)  # the real sleep
    elapsed = time.monotonic() - started
    assert result.content == "ok"
    assert result.attempts == 2
    assert elapsed >= 0.9
    assert result.latency_s >= 0.9
    assert len(server.requests) == 2


def test_retry_after_http_date_and_503(serve) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server = serve(
        {"m": [{"status": 503, "headers": {"Retry-After": when}}, {"status": 502}, "ok"]}
    )
    sleeps = Sleeps()
    result = complete(config(server, "m"), HELLO, sleep=sleeps)
    assert result.content == "ok" and result.attempts == 3
    assert 25 <= sleeps.delays[0] <= 31  # what the server asked for
    assert sleeps.delays[1] <= 0.02  # plain jittered backoff: base 0.01, second retry


def test_500_forever_gives_up_after_max_retries(serve) -> None:
    server = serve({"m": [{"status": 500}]})
    sleeps = Sleeps()
    with pytest.raises(ModelError) as caught:
        complete(config(server, "m", max_retries=3), HELLO, sleep=sleeps)
    error = caught.value
    assert len(server.requests) == 4
    assert error.attempts == 4 and error.status == 500 and error.retryable
    text = str(error)
    assert "\n" not in text
    assert text.startswith("model openai/m: HTTP 500 after 4 attempts: ")
    assert "The server had an error" in text
    assert len(sleeps.delays) == 3
    # Full jitter under a doubling ceiling.
    assert all(0 <= d <= 0.01 * 2**i for i, d in enumerate(sleeps.delays))


def test_streaming_request_is_retried_too(serve) -> None:
    server = serve({"m": [{"status": 500}, "streamed after a retry"]})
    deltas: list[str] = []
    result = complete(
        config(server, "m"), HELLO, stream=True, on_delta=deltas.append, sleep=Sleeps()
    )
    assert result.content == "streamed after a retry" and result.attempts == 2
    assert "".join(deltas) == "streamed after a retry"


def test_stream_cut_short_is_retried(serve) -> None:
    text = "one two three four five six"
    server = serve({"m": [{"content": text, "hang_up_after": 3}, text]})
    deltas: list[str] = []
    sleeps = Sleeps()
    result = complete(config(server, "m"), HELLO, stream=True, on_delta=deltas.append, sleep=sleeps)
    assert result.content == text and result.attempts == 2 and len(sleeps.delays) == 1
    assert "".join(deltas) == "one two " + text  # the stream started over


def test_dropped_connection_is_retried(serve) -> None:
    server = serve({"m": [{"hang_up_after": 0}, "answered"]})
    result = complete(config(server, "m"), HELLO, sleep=Sleeps())
    assert result.content == "answered" and result.attempts == 2


def test_timeout_is_retried(serve) -> None:
    server = serve({"m": [{"content": "too late", "delay": 5}, "in time"]})
    result = complete(config(server, "m", timeout=0.5), HELLO, sleep=Sleeps())
    assert result.content == "in time" and result.attempts == 2


def test_connection_refused_is_retried_then_reported(serve) -> None:
    server = serve({"m": ["x"]})
    server.close()  # nothing listens on its port any more
    sleeps = Sleeps()
    with pytest.raises(ModelError) as caught:
        complete(config(server, "m", max_retries=2), HELLO, sleep=sleeps)
    assert caught.value.attempts == 3 and len(sleeps.delays) == 2
    assert str(caught.value).startswith("model openai/m: connection error after 3 attempts: ")
    assert "Connection refused" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_timeout_forever_is_reported(serve) -> None:
    server = serve({"m": [{"content": "too late", "delay": 5}]})
    with pytest.raises(ModelError) as caught:
        complete(config(server, "m", timeout=0.3, max_retries=1), HELLO, sleep=Sleeps())
    assert str(caught.value) == "model openai/m: timeout after 2 attempts: no answer within 0.3s"


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ({"status": 401}, 401),
        ({"status": 400, "error": {"message": "Invalid value for 'temperature'"}}, 400),
        ({"status": 403}, 403),
    ],
)
def test_non_retryable_errors_fail_at_once(serve, reply: dict[str, Any], status: int) -> None:
    server = serve({"m": [reply]})
    sleeps = Sleeps()
    with pytest.raises(ModelError) as caught:
        complete(config(server, "m"), HELLO, sleep=sleeps)
    assert caught.value.status == status and caught.value.attempts == 1
    assert not caught.value.retryable
    assert len(server.requests) == 1 and sleeps.delays == []
    assert f"HTTP {status} after 1 attempt: " in str(caught.value)


def test_unknown_model_fails_at_once(serve) -> None:
    server = serve({"m": ["x"]})
    with pytest.raises(ModelError, match=r"HTTP 404 after 1 attempt: .*nope"):
        complete(config(server, "nope"), HELLO, sleep=Sleeps())
    assert len(server.requests) == 1


def test_retry_after_beyond_the_bound_fails_at_once(serve) -> None:
    server = serve({"m": [{"status": 429, "headers": {"Retry-After": "3600"}}, "ok"]})
    with pytest.raises(ModelError, match="retry after 3600s"):
        complete(config(server, "m", max_retry_after=60), HELLO, sleep=Sleeps())
    assert len(server.requests) == 1


# --- context overflow -----------------------------------------------------------------


def test_overflow_prunes_old_tool_results_and_retries(serve) -> None:
    server = serve({"m": [OVERFLOW, "fits now"]})
    messages = conversation(tool_results=6)  # 2 + 12 messages
    original = json.loads(json.dumps(messages))
    result = complete(config(server, "m", prune_keep_last=4), messages, sleep=Sleeps())
    assert result.content == "fits now"
    assert result.pruned == 1 and result.attempts == 2
    assert messages == original  # the caller's list is not touched

    first, second = (r["messages"] for r in server.requests)
    assert first == original
    assert len(second) == len(first)
    assert second[0] == first[0]  # the system prompt, never pruned
    assert second[-4:] == first[-4:]  # the last keep_last messages, untouched
    for before, after in zip(first[:-4], second[:-4], strict=True):
        if before["role"] == "tool":
            assert after["content"] == "[pruned: 2000 chars]"
            assert after["tool_call_id"] == before["tool_call_id"]
        else:
            assert after == before  # tool calls stay, so every result keeps its call
    assert result.messages == second


def test_overflow_is_recognised_by_anthropic_wording(serve) -> None:
    too_long = {
        "status": 400,
        "error": {"message": "prompt is too long: 210000 tokens > 200000 maximum"},
    }
    server = serve({"m": [too_long, "ok"]})
    result = complete(config(server, "m"), conversation(tool_results=8), sleep=Sleeps())
    assert result.pruned == 1 and result.content == "ok"


def test_overflow_prunes_closer_each_time_then_gives_up(serve) -> None:
    server = serve({"m": [OVERFLOW]})
    sleeps = Sleeps()
    with pytest.raises(ContextOverflow) as caught:
        complete(
            config(server, "m", prune_keep_last=8, max_prunes=10),
            conversation(tool_results=6),
            sleep=sleeps,
        )
    error = caught.value
    assert isinstance(error, ModelError)
    # keep_last 8, then 4, then 2 (1 finds nothing): each round reaches nearer the end.
    assert error.pruned == 3 and error.attempts == 4
    last = server.requests[-1]["messages"]
    assert last[-1]["content"] == "5" * 2000  # the latest result is never pruned
    assert sum(m["content"].startswith("[pruned:") for m in last if m["role"] == "tool") == 5
    assert "context window exceeded (pruned 3 times)" in str(error)
    assert "maximum context length is 8192" in str(error)
    assert sleeps.delays == []


def test_overflow_with_nothing_to_prune_fails(serve) -> None:
    server = serve({"m": [OVERFLOW]})
    with pytest.raises(ContextOverflow) as caught:
        complete(config(server, "m"), HELLO, sleep=Sleeps())
    assert caught.value.pruned == 0 and len(server.requests) == 1


def test_prune_messages() -> None:
    messages = conversation(tool_results=3, size=50)
    messages.append({"role": "tool", "tool_call_id": "x", "content": "short"})
    pruned = prune_messages(messages, keep_last=3)
    assert [m["content"] for m in pruned if m["role"] == "tool"] == [
        "[pruned: 50 chars]",
        "[pruned: 50 chars]",
        "2" * 50,  # inside the last three
        "short",
    ]
    assert prune_messages(pruned, keep_last=3) == pruned  # already pruned stays as is
    assert prune_messages(messages, keep_last=len(messages)) == messages
    parts = [{"role": "tool", "tool_call_id": "p", "content": [{"type": "text", "text": "y" * 99}]}]
    assert prune_messages(parts, keep_last=0)[0]["content"] == "[pruned: 99 chars]"


def test_overflow_phrases() -> None:
    assert is_overflow_text("whatever", code="context_length_exceeded", status=400)
    assert is_overflow_text("Input is too long for requested model.", status=400)
    assert is_overflow_text("the request exceeds the available context size", status=400)
    # A rate limit that talks about tokens is not an overflow.
    assert not is_overflow_text("Request too large: maximum context length", status=429)
    assert not is_overflow_text("Invalid value for 'temperature'", status=400)


# --- secrets ----------------------------------------------------------------------


def test_api_key_never_shown(serve, caplog: pytest.LogCaptureFixture, capfd) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = config(serve({}), "m")
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)
    assert SECRET not in cfg.model_dump_json()
    echoing = {"status": 401, "error": {"message": f"Incorrect API key provided: {SECRET}."}}
    server = serve({"m": [{"status": 500}, echoing]})
    with pytest.raises(ModelError) as caught:
        complete(config(server, "m"), HELLO, sleep=Sleeps())
    assert "Incorrect API key provided: ***" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert "retrying" in caplog.text  # the retry was logged...
    assert SECRET not in caplog.text  # ...without the key
    out, err = capfd.readouterr()
    assert SECRET not in out + err


# --- helpers ----------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    assert retry_after({"Retry-After": "2"}) == 2
    assert retry_after({"retry-after": "0.5"}) == 0.5
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8 <= retry_after({"Retry-After": when}) <= 10
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=10), usegmt=True)
    assert retry_after({"Retry-After": past}) == 0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({"Retry-After": "-1"}) is None
    assert retry_after({}) is None and retry_after(None) is None


def test_backoff_is_full_jitter_under_a_capped_doubling_ceiling() -> None:
    rng = random.Random(7)
    for retry in range(1, 12):
        ceiling = min(20.0, 0.5 * 2 ** (retry - 1))
        delays = [backoff(retry, base=0.5, cap=20.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range
        assert min(delays) < ceiling * 0.2


def test_importing_shoal_llm_does_not_import_litellm() -> None:
    code = "import sys, shoal.llm, shoal.llm.scripted; print('litellm' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_call_with_tools_does_not_import_litellms_mcp_gateway(serve) -> None:
    # Checked: without _skip_mcp_handler in llm/client.py this prints True (litellm imports
    # its MCP handler, ~0.5 s, on every process's first call with tools).
    server = serve({"scripted-executor": [{"content": "ok"}]})
    code = (
        "import json, sys\n"
        "from shoal.llm import ModelConfig, complete\n"
        "config = ModelConfig.model_validate_json(sys.argv[1])\n"
        "tool = json.loads(sys.argv[2])\n"
        "assert complete(config, [{'role': 'user', 'content': 'hi'}], tools=[tool]).content\n"
        "print('litellm.responses.mcp.chat_completions_handler' in sys.modules)\n"
    )
    settings = config(server, "scripted-executor").model_dump_json()
    args = [sys.executable, "-c", code, settings, json.dumps(READ_TOOL)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


def test_litellm_loads_no_dotenv_from_the_project(tmp_path) -> None:
    # The actors' forkserver is a `python -c` process in the directory the orchestrator
    # was started from (the user's project): litellm's default mode would load the .env
    # found walking up from there, the project's secrets or an OPENAI_BASE_URL with them
    # (checked: with LITELLM_MODE left out of shoal/llm/env.py this prints the probe).
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / ".env").write_text("SHOAL_DOTENV_PROBE=from-the-project\n")
    code = "import os, shoal.llm.warm; print(os.environ.get('SHOAL_DOTENV_PROBE'))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=project / "src",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "None"
