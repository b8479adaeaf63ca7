"""The one place shoal calls a model (DESIGN.md §5).

:func:`complete` sends one chat request through litellm and returns a
:class:`Completion`. Around the call it owns what every caller would otherwise
get wrong: retries of transient failures (429, 5xx, timeouts, dropped
connections) with full-jitter exponential backoff that honours ``Retry-After``;
context overflow, handled by pruning old tool results and trying again; token
and cost accounting; and keeping the API key out of every log and error.

litellm is imported on first use, never at module import (it costs seconds and
``shoal --help`` must stay fast), and its own retries, banners and debug logging
are switched off so that this module is the only retry loop and the only voice.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shoal.llm import overflow, retry
from shoal.llm.env import set_litellm_env
from shoal.llm.errors import ContextOverflow, ModelError

log = logging.getLogger(__name__)

# Longest provider message quoted in a ModelError, in characters.
_MAX_MESSAGE = 400
# litellm's loggers: quietened to WARNING unless the user asked for more with LITELLM_LOG.
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
# Placeholder key for OpenAI-compatible local servers: the OpenAI client refuses to
# send a request without a key, and servers such as the scripted one ignore it.
_NO_KEY = "no-key"


class ModelConfig(BaseModel):
    """Which model to call and how: one per role (planner, executor, evaluator, …)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    """litellm model string, e.g. ``openai/gpt-4o`` or ``openai/scripted-executor``."""
    api_key: SecretStr | None = None
    """Provider key; never shown in reprs, logs or errors. None: litellm's env lookup."""
    base_url: str | None = None
    """API base URL (``api_base``), e.g. a local OpenAI-compatible server's ``…/v1``."""
    timeout: float = Field(120.0, gt=0)
    """Seconds one request may take before it counts as a (retryable) timeout."""
    max_retries: int = Field(4, ge=0, le=50)
    """Retries of transient failures after the first attempt."""
    temperature: float | None = Field(None, ge=0, le=2)
    """Sampling temperature; None: the provider's default."""
    max_tokens: int | None = Field(None, ge=1)
    """Cap on completion tokens; None: the provider's default."""
    backoff_base: float = Field(0.5, ge=0)
    """Seconds of the first backoff ceiling; it doubles per retry (full jitter below it)."""
    backoff_cap: float = Field(20.0, ge=0)
    """Largest backoff ceiling, in seconds."""
    max_retry_after: float = Field(120.0, ge=0)
    """Longest ``Retry-After`` honoured; a provider asking for more fails the call at once."""
    max_prunes: int = Field(3, ge=0)
    """How many times one call may prune the prompt after a context overflow."""
    prune_keep_last: int = Field(6, ge=1)
    """Messages at the end that the first pruning leaves alone (later ones halve it)."""


class ToolCall(BaseModel):
    """One tool call the model made."""

    id: str
    """The call's id; the tool result message answers it with ``tool_call_id``."""
    name: str
    """Name of the tool called."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """Arguments parsed from the model's JSON (empty if they did not parse)."""
    error: str | None = None
    """Why the arguments did not parse, to tell the model; None if they did."""
    raw_arguments: str | None = None
    """The arguments exactly as sent, kept only when they did not parse."""


class Usage(BaseModel):
    """What a call consumed."""

    prompt_tokens: int = 0
    """Tokens of the prompt, as the provider counted them."""
    completion_tokens: int = 0
    """Tokens of the answer, as the provider counted them."""
    cost_usd: float = 0.0
    """litellm's price of the call; 0.0 for models it has no price for."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Completion(BaseModel):
    """A model's answer to one :func:`complete` call."""

    content: str = ""
    """The assistant's text ("" if it only called tools)."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """The tool calls it made, in order."""
    finish_reason: str | None = None
    """Why it stopped: ``stop``, ``tool_calls``, ``length``, …"""
    usage: Usage = Field(default_factory=Usage)
    """Tokens and cost of the successful request."""
    model: str
    """The model string the call was made with."""
    attempts: int = 1
    """Requests sent, the successful one included."""
    latency_s: float = 0.0
    """Wall time of the whole call, retries and waits included."""
    pruned: int = 0
    """How many times the prompt was pruned to fit the context window."""
    messages: list[dict[str, Any]] | None = None
    """When ``pruned`` > 0, the pruned messages that fitted: continue the conversation from them."""

    def to_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": c.raw_arguments
                        if c.raw_arguments is not None
                        else json.dumps(c.arguments),
                    },
                }
                for c in self.tool_calls
            ]
        return message


class Embeddings(BaseModel):
    """The vectors of one :func:`embed` call."""

    vectors: list[list[float]] = Field(default_factory=list)
    """One vector per input text, in input order."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens of the input and the price of the call."""
    model: str
    """The model string the call was made with."""
    attempts: int = 1
    """Requests sent, the successful one included (0 for no texts)."""
    latency_s: float = 0.0
    """Wall time of the whole call, retries and waits included."""


# --- litellm, lazily ----------------------------------------------------------

_setup_lock = threading.Lock()
_configured = False


def _litellm() -> ModuleType:
    """litellm, imported and configured on first use."""
    global _configured
    set_litellm_env()
    with _setup_lock:
        if not _configured and "LITELLM_LOG" not in os.environ:
            # Before the import, which already logs at DEBUG; the OpenAI SDK logs
            # whole prompts at DEBUG. LITELLM_LOG / OPENAI_LOG turn them back on.
            for name in _LITELLM_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        if not _configured and "OPENAI_LOG" not in os.environ:
            logging.getLogger("openai").setLevel(logging.WARNING)
    import litellm

    with _setup_lock:
        if not _configured:
            # No "Give Feedback / Get Help" banner on stderr for every error.
            litellm.suppress_debug_info = True
            # Prompts and answers stay out of anything litellm logs.
            litellm.turn_off_message_logging = True
            # This module is the only retry loop (litellm's and the OpenAI SDK's
            # are also switched off per call).
            litellm.num_retries = 0
            # litellm's types trip pydantic warnings that are of no use to a user.
            warnings.filterwarnings("ignore", message=r".*is using the `ReadOnly` qualifier")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"litellm\.")
            _configured = True
    return litellm


# --- failures -----------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """What went wrong with one attempt, as far as retrying is concerned."""

    label: str  # "HTTP 500", "timeout", "connection error"
    message: str  # the provider's message: one line, no secrets
    status: int | None
    retryable: bool
    overflow: bool
    retry_after: float | None


def _clean(text: str, secret: str | None) -> str:
    """One line, at most _MAX_MESSAGE characters, with the API key blanked out."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


# "litellm.BadRequestError: ContextWindowExceededError: OpenAIException - " and the like.
_PREFIXES = re.compile(r"^(?:(?:litellm\.)?\w+(?:Error|Exception)\s*(?::|-)\s*)+")


def _provider_message(exc: BaseException) -> tuple[str, str | None]:
    """The provider's own message and error code, without litellm's class-name prefixes."""
    body = getattr(exc, "body", None)
    message, code = None, None
    if isinstance(body, Mapping):
        inner = body.get("error") if isinstance(body.get("error"), Mapping) else body
        message = inner.get("message") if isinstance(inner.get("message"), str) else None
        code = str(inner["code"]) if inner.get("code") is not None else None
    if not message:
        # litellm's own text: its first line (later ones can be a whole traceback).
        text = _PREFIXES.sub("", str(getattr(exc, "message", None) or exc).strip())
        message = text.splitlines()[0] if text else type(exc).__name__
    return message, code


def _response_headers(exc: BaseException) -> Mapping[str, str] | None:
    # litellm copies the provider's headers to `litellm_response_headers`; the
    # `response` it attaches to its mapped exceptions is rebuilt and has none.
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
    ):
        if headers:
            return headers
    return None


def _is_model_error(litellm: ModuleType, exc: BaseException) -> bool:
    """Whether ``exc`` came from the model call (and not from a bug on this side)."""
    import httpx
    import openai

    return isinstance(exc, (openai.OpenAIError, httpx.HTTPError, *litellm.LITELLM_EXCEPTION_TYPES))


def _transport_failure(exc: BaseException) -> tuple[str, str] | None:
    """(``timeout`` or ``connection error``, root cause) if no HTTP answer came back.

    litellm reports a refused or dropped connection as an ``InternalServerError``
    with status 500, so the cause chain is what tells it from a real HTTP 500.
    """
    import httpx
    import openai

    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    root = f"{type(chain[-1]).__name__}: {chain[-1]}"
    for link in chain:
        if isinstance(link, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
            return "timeout", root
    for link in chain:
        if isinstance(link, openai.APIConnectionError | httpx.TransportError | ConnectionError):
            return "connection error", root
    return None


def _classify(litellm: ModuleType, exc: BaseException, config: ModelConfig) -> _Failure:
    secret = config.api_key.get_secret_value() if config.api_key is not None else None
    message, code = _provider_message(exc)
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    wait = retry.retry_after(_response_headers(exc))
    if isinstance(exc, litellm.ContextWindowExceededError) or overflow.is_overflow_text(
        message, code=code, status=status
    ):
        return _Failure("context overflow", _clean(message, secret), status, False, True, None)
    transport = _transport_failure(exc) if status is None or status in (408, 500) else None
    if transport is not None:
        label, root = transport
        if label == "timeout":
            message = f"no answer within {config.timeout:g}s"
        else:
            message = f"{config.base_url or 'provider'} unreachable ({root})"
        return _Failure(label, _clean(message, secret), None, True, False, wait)
    message = _clean(message, secret)
    if status is None:
        return _Failure(type(exc).__name__, message, None, False, False, None)
    retryable = status in (408, 409, 429) or status >= 500
    return _Failure(f"HTTP {status}", message, status, retryable, False, wait)


# --- the call -----------------------------------------------------------------


def _parse_tool_call(raw: Any) -> ToolCall:
    function = raw.function
    text = function.arguments or ""
    call = ToolCall(id=raw.id or "", name=function.name or "")
    if not text.strip():
        return call  # some providers send "" for a call without arguments
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        call.error = f"arguments of {call.name!r} are not valid JSON ({exc}): {text[:200]!r}"
        call.raw_arguments = text
        return call
    if not isinstance(parsed, dict):
        call.error = f"arguments of {call.name!r} are not a JSON object: {text[:200]!r}"
        call.raw_arguments = text
        return call
    call.arguments = parsed
    return call


def _cost(litellm: ModuleType, response: Any) -> float:
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # unknown model, no price: not worth failing a call over
        return 0.0
    return float(cost) if isinstance(cost, int | float) and cost > 0 else 0.0


def _common_kwargs(config: ModelConfig) -> dict[str, Any]:
    """litellm arguments every call of ``config`` shares."""
    kwargs: dict[str, Any] = {
        "model": config.model,
        "timeout": config.timeout,
        # litellm's own retry loop, and the OpenAI SDK's (2 retries by default).
        "num_retries": 0,
        "max_retries": 0,
    }
    if config.base_url:
        kwargs["api_base"] = config.base_url
    if config.api_key is not None:
        kwargs["api_key"] = config.api_key.get_secret_value()
    elif (
        config.base_url
        and config.model.startswith("openai/")
        and not os.environ.get("OPENAI_API_KEY")
    ):
        kwargs["api_key"] = _NO_KEY
    return kwargs


def _send_chat(
    litellm: ModuleType,
    config: ModelConfig,
    messages: list[dict[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    stream: bool,
    on_delta: Callable[[str], None] | None,
) -> Any:
    """One chat request; returns a full (non-streaming shaped) litellm ModelResponse."""
    kwargs = _common_kwargs(config)
    # A parameter a model does not take (temperature on reasoning models) is
    # dropped instead of failing the call.
    kwargs.update(messages=messages, drop_params=True)
    if config.temperature is not None:
        kwargs["temperature"] = config.temperature
    if config.max_tokens is not None:
        kwargs["max_tokens"] = config.max_tokens
    if tools:
        kwargs["tools"] = list(tools)
        # Our tools are never litellm's MCP gateway's (shoal runs MCP itself): without
        # this flag every call with tools imports that handler first (~0.5 s, the MCP
        # SDK with it). A private argument of litellm, which is pinned (pyproject.toml).
        kwargs["_skip_mcp_handler"] = True
    if not stream:
        return litellm.completion(**kwargs)
    chunks = []
    stream_ = litellm.completion(**kwargs, stream=True, stream_options={"include_usage": True})
    for chunk in stream_:
        chunks.append(chunk)
        if on_delta is not None and chunk.choices:
            text = getattr(chunk.choices[0].delta, "content", None)
            if text:
                on_delta(text)
    # A stream whose connection drops ends quietly in litellm, with a made-up
    # finish_reason "stop"; only its wrapper knows the provider never sent one.
    if (
        getattr(stream_, "received_finish_reason", "") is None
        and getattr(stream_, "intermittent_finish_reason", "") is None
    ):
        raise _StreamCutShort("the stream ended before the model finished")
    response = litellm.stream_chunk_builder(chunks, messages=messages)
    if response is None:
        raise _StreamCutShort("the stream ended without a single chunk")
    return response


class _StreamCutShort(Exception):
    pass


def _give_up_unless_retryable(
    config: ModelConfig, failure: _Failure, attempts: int, retries: int
) -> None:
    """Raise ModelError unless ``failure`` is worth another attempt now."""
    if not failure.retryable or retries >= config.max_retries:
        raise ModelError(
            config.model,
            failure.label,
            failure.message,
            attempts=attempts,
            status=failure.status,
            retryable=failure.retryable,
        ) from None
    if failure.retry_after is not None and failure.retry_after > config.max_retry_after:
        raise ModelError(
            config.model,
            failure.label,
            f"provider asks to retry after {failure.retry_after:.0f}s "
            f"(more than max_retry_after={config.max_retry_after:.0f}s): {failure.message}",
            attempts=attempts,
            status=failure.status,
            retryable=True,
        ) from None


def _retrying(
    litellm: ModuleType,
    config: ModelConfig,
    send: Callable[[], Any],
    *,
    sleep: Callable[[float], None],
    rng: random.Random | None,
    on_overflow: Callable[[_Failure, int], None] | None = None,
) -> tuple[Any, int]:
    """``send()``'s result and the attempts it took, retrying transient failures.

    ``on_overflow(failure, attempts)`` makes the prompt smaller before the next
    attempt, or raises :class:`ContextOverflow`; without it an overflow raises.
    """
    attempts = retries = 0
    while True:
        attempts += 1
        try:
            return send(), attempts
        except _StreamCutShort as exc:
            failure = _Failure("stream cut short", str(exc), None, True, False, None)
        except Exception as exc:
            if not _is_model_error(litellm, exc):
                raise  # a bug on this side, not a failed call: let it show as one
            failure = _classify(litellm, exc, config)
        if failure.overflow:
            if on_overflow is None:
                raise ContextOverflow(
                    config.model, failure.message, attempts=attempts, pruned=0
                ) from None
            on_overflow(failure, attempts)
            continue
        _give_up_unless_retryable(config, failure, attempts, retries)
        retries += 1
        delay = retry.backoff(retries, base=config.backoff_base, cap=config.backoff_cap, rng=rng)
        if failure.retry_after is not None:
            delay = max(delay, failure.retry_after)
        log.warning(
            "model %s: %s (attempt %d of %d); retrying in %.2fs: %s",
            config.model,
            failure.label,
            attempts,
            config.max_retries + 1,
            delay,
            failure.message,
        )
        sleep(delay)


def complete(
    config: ModelConfig,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    stream: bool = False,
    on_delta: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Completion:
    """Ask ``config``'s model to answer ``messages`` (OpenAI chat format), maybe with ``tools``.

    With ``stream=True``, ``on_delta`` gets each piece of text as it arrives; if
    the stream fails and is retried, the pieces start over. Transient failures
    are retried up to ``config.max_retries`` times, sleeping with ``sleep``
    (injectable for tests); a context overflow prunes old tool results and tries
    again up to ``config.max_prunes`` times. Raises :class:`ModelError` (one line,
    no secrets) when the call cannot succeed, :class:`ContextOverflow` when the
    prompt cannot be made to fit.
    """
    litellm = _litellm()
    started = time.monotonic()
    current = [dict(m) for m in messages]
    pruned = 0

    def shrink(failure: _Failure, attempts: int) -> None:
        nonlocal current, pruned
        kept = _prune_further(current, config, pruned)
        if kept is None:
            raise ContextOverflow(
                config.model, failure.message, attempts=attempts, pruned=pruned
            ) from None
        current, pruned = kept, pruned + 1
        log.warning(
            "model %s: context window exceeded; pruned old tool results (%d of at most %d)",
            config.model,
            pruned,
            config.max_prunes,
        )

    response, attempts = _retrying(
        litellm,
        config,
        lambda: _send_chat(litellm, config, current, tools, stream, on_delta),
        sleep=sleep,
        rng=rng,
        on_overflow=shrink,
    )
    completion = _completion(litellm, response, config.model)
    completion.attempts, completion.latency_s = attempts, time.monotonic() - started
    completion.pruned, completion.messages = pruned, current if pruned else None
    return completion


def _completion(litellm: ModuleType, response: Any, model: str) -> Completion:
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    return Completion(
        content=choice.message.content or "",
        tool_calls=[_parse_tool_call(c) for c in choice.message.tool_calls or []],
        finish_reason=choice.finish_reason,
        usage=Usage(
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cost_usd=_cost(litellm, response),
        ),
        model=model,
    )


def embed(
    config: ModelConfig,
    texts: Sequence[str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Embeddings:
    """Embed ``texts`` with ``config``'s (embedding) model, with the retries of :func:`complete`."""
    litellm = _litellm()
    started = time.monotonic()
    if not texts:
        return Embeddings(model=config.model, attempts=0)
    kwargs = _common_kwargs(config) | {"input": list(texts)}
    response, attempts = _retrying(
        litellm, config, lambda: litellm.embedding(**kwargs), sleep=sleep, rng=rng
    )
    rows = sorted(response.data, key=lambda d: d["index"])
    usage = getattr(response, "usage", None)
    return Embeddings(
        vectors=[list(row["embedding"]) for row in rows],
        usage=Usage(
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            cost_usd=_cost(litellm, response),
        ),
        model=config.model,
        attempts=attempts,
        latency_s=time.monotonic() - started,
    )


def _prune_further(
    messages: list[dict[str, Any]], config: ModelConfig, pruned: int
) -> list[dict[str, Any]] | None:
    """The messages pruned once more, or None if the bound is reached or nothing is left to prune.

    Tries ``prune_keep_last`` first and halves it until something can be pruned,
    so each round reaches a little closer to the end of the conversation.
    """
    if pruned >= config.max_prunes:
        return None
    keep = config.prune_keep_last
    while keep >= 1:
        out, count = overflow.prune(messages, keep_last=keep)
        if count:
            return out
        keep //= 2
    return None
