"""OpenAI wire format: the bodies a chat/embeddings endpoint answers with.

Pure functions from a scripted :class:`~shoal.llm.script.Reply` to the JSON an
OpenAI-compatible server sends, so the scripted server stays a thin HTTP shell
and the shapes can be checked without a socket.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import time
from collections.abc import Iterator
from typing import Any

from shoal.llm.script import ErrorSpec, Reply

# Default error bodies by status, close to what OpenAI sends.
_DEFAULT_ERRORS: dict[int, ErrorSpec] = {
    400: ErrorSpec(message="Bad request (scripted).", code=None),
    401: ErrorSpec(message="Incorrect API key provided (scripted).", code="invalid_api_key"),
    403: ErrorSpec(message="Permission denied (scripted).", code="permission_denied"),
    404: ErrorSpec(message="Not found (scripted).", code="not_found"),
    408: ErrorSpec(message="Request timed out (scripted).", type="timeout", code="timeout"),
    429: ErrorSpec(
        message="Rate limit reached (scripted).", type="requests", code="rate_limit_exceeded"
    ),
}
_SERVER_ERROR = ErrorSpec(
    message="The server had an error while processing your request (scripted).",
    type="server_error",
)
# Characters per streamed argument piece: small enough that a tool call spans chunks.
_ARGUMENT_PIECE = 16


def error_body(status: int, error: ErrorSpec | None = None) -> dict[str, Any]:
    """OpenAI's error envelope for ``status``, from ``error`` or a default fitting it."""
    spec = (
        error
        or _DEFAULT_ERRORS.get(status)
        or (_SERVER_ERROR if status >= 500 else ErrorSpec(message=f"HTTP {status} (scripted)."))
    )
    return {"error": {"message": spec.message, "type": spec.type, "param": None, "code": spec.code}}


def estimate_tokens(text: str) -> int:
    """Rough token count: about four characters a token, at least one for any text."""
    return math.ceil(len(text) / 4) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: count the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages") or []
    total = 0
    for m in messages:
        if not isinstance(m, dict):
            continue
        # A few tokens of framing per message, as real tokenizers count.
        total += 4 + estimate_tokens(_text_of(m.get("content")))
        for call in m.get("tool_calls") or []:
            total += estimate_tokens(json.dumps(call))
    if body.get("tools"):
        total += estimate_tokens(json.dumps(body["tools"]))
    return max(total, 1)


def tool_call_dicts(reply: Reply, call_prefix: str) -> list[dict[str, Any]]:
    calls = []
    for i, call in enumerate(reply.tool_calls):
        arguments = (
            call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        )
        calls.append(
            {
                "id": call.id or f"{call_prefix}_{i}",
                "type": "function",
                "function": {"name": call.name, "arguments": arguments},
            }
        )
    return calls


def usage(reply: Reply, body: dict[str, Any], calls: list[dict[str, Any]]) -> dict[str, int]:
    if reply.usage is not None:
        prompt, completion = reply.usage.prompt_tokens, reply.usage.completion_tokens
    else:
        prompt = prompt_tokens(body)
        produced = (reply.content or "") + "".join(
            c["function"]["name"] + c["function"]["arguments"] for c in calls
        )
        completion = max(estimate_tokens(produced), 1)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def finish_reason(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def completion(
    reply: Reply, body: dict[str, Any], *, model: str, response_id: str, call_prefix: str
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` object."""
    calls = tool_call_dicts(reply, call_prefix)
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reply)}],
        "usage": usage(reply, body, calls),
    }


def _pieces(text: str) -> list[str]:
    # Word-sized pieces, whitespace kept, so the joined stream equals the text.
    return re.findall(r"\s*\S+\s*|\s+", text)


def chunks(
    reply: Reply,
    body: dict[str, Any],
    *,
    model: str,
    response_id: str,
    call_prefix: str,
    include_usage: bool,
) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed answer, in order."""
    created = int(time.time())
    calls = tool_call_dicts(reply, call_prefix)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if include_usage:  # OpenAI sends usage: null on every chunk but the last
            out["usage"] = None
        return out

    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(reply.content or ""):
        yield chunk({"content": piece})
    for index, call in enumerate(calls):
        fn = call["function"]
        head = {"index": index, "id": call["id"], "type": "function"}
        yield chunk({"tool_calls": [{**head, "function": {"name": fn["name"], "arguments": ""}}]})
        args = fn["arguments"]
        for start in range(0, len(args), _ARGUMENT_PIECE):
            piece = args[start : start + _ARGUMENT_PIECE]
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, finish_reason(reply))
    if include_usage:
        yield {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage(reply, body, calls),
        }


def embed(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector: hashed bag of words, so shared words mean similar vectors."""
    vector = [0.0] * dimensions
    words = re.findall(r"\w+", text.lower()) or [text]
    for word in words:
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[digest % dimensions] += 1.0 if (digest >> 63) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def embeddings(body: dict[str, Any], *, model: str, dimensions: int) -> dict[str, Any]:
    """An ``embeddings`` list answering ``body``."""
    raw = body.get("input", "")
    # A string, a list of strings, a token list, or a list of token lists.
    if isinstance(raw, str) or (raw and all(isinstance(t, int) for t in raw)):
        raw = [raw]
    texts = [item if isinstance(item, str) else json.dumps(item) for item in raw]
    size = int(body.get("dimensions") or dimensions)
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(texts):
        vector = embed(text, size)
        value: Any = vector
        if as_base64:  # the openai SDK asks for base64 float32 unless told otherwise
            value = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = sum(estimate_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
