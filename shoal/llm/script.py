"""What a scripted model answers: the script of :mod:`shoal.llm.scripted`.

A script names models and gives each an ordered list of replies; the N-th chat
request for a model gets its N-th reply. Once the list is used up the last
reply repeats (``repeat_last``, the default), or the server answers with a
non-retryable ``script_exhausted`` error so a test that asks more than it
scripted fails at once instead of looping. As JSON::

    {
      "models": {
        "scripted-planner": ["1. read the code\\n2. fix the bug"],
        "scripted-executor": {
          "replies": [
            {"status": 429, "headers": {"Retry-After": "1"}},
            {"tool_calls": [{"name": "read_file", "arguments": {"path": "a.py"}}]},
            {"content": "done", "delay": 0.2}
          ],
          "repeat_last": false
        }
      }
    }

A model's value may be a bare list of replies, and a reply a bare string
(its content).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ToolCallSpec(BaseModel):
    """One tool call the model makes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    """Name of the tool called."""
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    """Arguments as an object, or a raw string sent as is (to script invalid JSON)."""
    id: str | None = None
    """Tool call id; by default ``call_<model>_<request>_<index>``."""


class ErrorSpec(BaseModel):
    """The body of a scripted error, in OpenAI's ``{"error": {...}}`` format."""

    model_config = ConfigDict(extra="forbid")

    message: str
    """Human-readable message, as a provider would send it."""
    type: str = "invalid_request_error"
    """OpenAI error type, e.g. ``invalid_request_error`` or ``server_error``."""
    code: str | None = None
    """OpenAI error code, e.g. ``context_length_exceeded`` or ``rate_limit_exceeded``."""


class UsageSpec(BaseModel):
    """Token counts to report instead of the server's estimate."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = Field(ge=0)
    """Tokens the request is said to have used."""
    completion_tokens: int = Field(ge=0)
    """Tokens the reply is said to have used."""


class Reply(BaseModel):
    """One answer of a scripted model: a completion, or an HTTP error."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = None
    """Assistant text (``None`` with tool calls only)."""
    tool_calls: list[ToolCallSpec] = Field(default_factory=list)
    """Tool calls the assistant makes."""
    finish_reason: str | None = None
    """Reported finish reason; by default ``tool_calls`` if there are any, else ``stop``."""
    delay: float = Field(0.0, ge=0, le=600)
    """Seconds to wait before answering (to simulate a slow model or trigger timeouts)."""
    chunk_delay: float = Field(0.0, ge=0, le=10)
    """Seconds between streamed chunks (to watch a stream arrive)."""
    hang_up_after: int | None = Field(None, ge=0)
    """Hang up after this many streamed chunks; without streaming, before answering."""
    status: int = Field(200, ge=200, le=599)
    """HTTP status; 400 and up answers with an error body instead of a completion."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra response headers, e.g. ``{"Retry-After": "1"}``."""
    error: ErrorSpec | None = None
    """Error body for a status of 400 and up; by default one fitting the status."""
    usage: UsageSpec | None = None
    """Token counts to report; by default estimated at about four characters a token."""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        return {"content": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _error_needs_status(self) -> Reply:
        if self.error is not None and self.status < 400:
            raise ValueError("a reply with an error needs a status of 400 or more")
        return self

    @property
    def is_error(self) -> bool:
        return self.status >= 400


class ModelScript(BaseModel):
    """The replies of one model, in order."""

    model_config = ConfigDict(extra="forbid")

    replies: list[Reply] = Field(default_factory=list)
    """The N-th request gets the N-th reply."""
    repeat_last: bool = True
    """Past the end, repeat the last reply; if false, answer ``script_exhausted`` (400)."""
    routes: dict[str, ModelScript] = Field(default_factory=dict)
    """Conversations by a text their first user message contains, each with its own
    reply counter: agents working in parallel on one model each get their own script.
    A request no route matches gets ``replies``."""

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        return {"replies": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _something_to_say(self) -> ModelScript:
        if not self.replies and not self.routes:
            raise ValueError("a model needs replies or routes")
        return self

    def route_for(self, first_user_text: str) -> str | None:
        """The first route (in script order) whose key the text contains."""
        return next((key for key in self.routes if key in first_user_text), None)


class EmbeddingSpec(BaseModel):
    """The embedding models the server offers (deterministic hashed vectors)."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=lambda: ["scripted-embedder"])
    """Model names ``/v1/embeddings`` accepts."""
    dimensions: int = Field(64, ge=2, le=8192)
    """Vector length, unless the request asks for ``dimensions`` itself."""


class Script(BaseModel):
    """Everything a :class:`~shoal.llm.scripted.ScriptedModelServer` answers."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelScript] = Field(default_factory=dict)
    """Chat models by name (the name litellm sends, without the ``openai/`` prefix)."""
    embeddings: EmbeddingSpec = Field(default_factory=EmbeddingSpec)
    """Embedding models and their vector size."""

    @classmethod
    def load(cls, path: str | Path) -> Script:
        return cls.model_validate(json.loads(Path(path).read_text()))
