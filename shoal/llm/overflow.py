"""Context overflow: recognising it across providers, and pruning a prompt to fit.

Providers say "your prompt is too big" in many ways and litellm maps only
some of them to ``ContextWindowExceededError`` (an Anthropic phrasing through
an OpenAI-compatible endpoint, for one, stays a plain ``BadRequestError``), so
the phrasings are collected here and checked as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Error codes that mean overflow, whatever the message says.
OVERFLOW_CODES: frozenset[str] = frozenset(
    {"context_length_exceeded", "context_window_exceeded", "string_too_long_for_context"}
)

# Lower-case substrings of overflow messages, with who says them.
OVERFLOW_PHRASES: tuple[str, ...] = (
    "context_length_exceeded",  # OpenAI error code, often echoed in the message
    "maximum context length",  # OpenAI, Azure, vLLM: "This model's maximum context length is"
    "context length exceeded",  # OpenAI-compatible servers
    "exceeds the context window",  # OpenAI Responses API
    "exceed context limit",  # litellm's own list
    "model's maximum context limit",  # litellm's own list
    "is longer than the model's context length",  # Hugging Face TGI, Mistral
    "prompt is too long",  # Anthropic: "prompt is too long: 210000 tokens > 200000 maximum"
    "input is too long",  # Bedrock: "Input is too long for requested model"
    "input tokens exceed the configured limit",  # Bedrock
    "exceeds the maximum number of tokens allowed",  # Gemini
    "exceeds the available context size",  # llama.cpp server
    "`inputs` tokens + `max_new_tokens` must be",  # TGI
    "please reduce the length of the messages",  # OpenAI (older wording)
    "too many input tokens",  # various OpenAI-compatible servers
    "context window exceeded",
    "context_window_exceeded",
)

# Statuses an overflow may come with. A 429 never does ("Request too large ... tokens
# per min" is a rate limit), nor a 5xx.
OVERFLOW_STATUSES: frozenset[int | None] = frozenset({None, 400, 403, 413, 422})

PRUNED_PREFIX = "[pruned: "
# Roles whose content is a tool's output: the only content pruning replaces.
_TOOL_RESULT_ROLES = frozenset({"tool", "function"})


def is_overflow_text(message: str, *, code: str | None = None, status: int | None = None) -> bool:
    """Whether an error with this message, code and status means the prompt is too long."""
    if status not in OVERFLOW_STATUSES:
        return False
    if code and code.lower() in OVERFLOW_CODES:
        return True
    lowered = message.lower()
    return any(phrase in lowered for phrase in OVERFLOW_PHRASES)


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts
        return sum(len(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return 0


def _is_pruned(content: Any) -> bool:
    return isinstance(content, str) and content.startswith(PRUNED_PREFIX)


def prune(
    messages: Sequence[Mapping[str, Any]], *, keep_last: int = 6
) -> tuple[list[dict[str, Any]], int]:
    """:func:`prune_messages`, also returning how many messages it pruned."""
    keep_last = max(keep_last, 0)
    cutoff = len(messages) - keep_last
    out: list[dict[str, Any]] = []
    count = 0
    for i, message in enumerate(messages):
        content = message.get("content")
        note = f"{PRUNED_PREFIX}{_content_chars(content)} chars]"
        if (
            i < cutoff
            and message.get("role") in _TOOL_RESULT_ROLES
            and not _is_pruned(content)
            # Only where it saves something: a short result stays as it is.
            and _content_chars(content) > len(note)
        ):
            # Only the content changes: the message, its tool_call_id and the
            # assistant's tool call stay, so every call still has its result.
            out.append({**message, "content": note})
            count += 1
        else:
            out.append(dict(message))
    return out, count


def prune_messages(
    messages: Sequence[Mapping[str, Any]], *, keep_last: int = 6
) -> list[dict[str, Any]]:
    """A copy of ``messages`` with old tool results replaced by ``[pruned: N chars]``.

    Never touches the last ``keep_last`` messages, nor any message that is not a
    tool result (so never the system prompt or the user's request). Messages are
    never removed, so tool calls and their results stay paired.
    """
    return prune(messages, keep_last=keep_last)[0]
