"""What the model-calling roles share: their model config and their usage bookkeeping."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.messages.memory import ContextResult
from shoal.messages.tasks import ModelChoice, Usage

if TYPE_CHECKING:
    from shoal.llm.client import Completion, ModelConfig


def model_config(choice: ModelChoice, role: str) -> ModelConfig:
    """The task's model for ``role``, with the key this process's environment holds for it."""
    from pydantic import SecretStr

    from shoal.config import api_key
    from shoal.llm.client import ModelConfig

    key = api_key(role)
    return ModelConfig(
        model=choice.model,
        base_url=choice.base_url,
        api_key=SecretStr(key) if key else None,
    )


def usage_of(completion: Completion) -> Usage:
    u = completion.usage
    return Usage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        cost_usd=u.cost_usd,
        calls=1,
    )


def function_tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, keeping the head and the tail."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


def recalled_context(
    ctx: Any, text: str, cwd: str, role: str, task_id: str | None, team: str | None = None
) -> ContextResult:
    """Learnings and skills relevant to ``text`` (empty if none, or the orchestrator is busy)."""
    from shoal.mailbox.errors import MailboxError
    from shoal.messages.memory import ContextRequest, ContextResult

    try:
        reply = ctx.ask(ContextRequest(text=text, cwd=cwd, role=role, team=team), task_id=task_id)
    except MailboxError as exc:
        ctx.log.warning("no recalled context: %s", exc)
        return ContextResult()
    return reply if isinstance(reply, ContextResult) else ContextResult()
