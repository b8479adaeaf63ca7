"""The tool loop: a model and its tools, turn after turn, until the model is done.

One class for every agent shoal runs (executor iterations, chat turns, batch
units, subagents). Everything particular to who runs it goes through its
:class:`~shoal.agent.host.Host`; every way a run ends but a crash is an
exception from :mod:`shoal.agent.errors` (``Finished``, ``Cancelled``,
``BudgetReached``, or a ``ModelError`` such as ``ContextOverflow``).
"""

from __future__ import annotations

from typing import Any

from shoal.agent.errors import BudgetReached, Finished
from shoal.agent.host import Host
from shoal.llm.client import Completion, ModelConfig, ToolCall
from shoal.messages.tasks import Usage
from shoal.tools import Toolbox, ToolResult


class Agent:
    """A conversation with ``model`` using ``toolbox``'s tools, for at most ``max_turns``."""

    def __init__(
        self,
        host: Host,
        toolbox: Toolbox,
        model: ModelConfig,
        *,
        max_turns: int,
        token_budget: int | None = None,
        stream: bool = False,
    ) -> None:
        self.host = host
        self.toolbox = toolbox
        self.model = model
        self.max_turns = max_turns
        self.token_budget = token_budget
        self.stream = stream
        self.usage = Usage()
        self.turns = 0
        self.calls = 0
        self.text = ""
        """The model's latest text (or ``finish``'s summary): what the run came to."""

    def run(self, messages: list[dict[str, Any]]) -> None:
        """Go on from ``messages`` (changed in place); always ends with an exception."""
        from shoal.llm.client import complete

        tools = self.toolbox.schemas()
        on_delta = self.host.on_delta if self.stream else None
        for _ in range(self.max_turns):
            self.host.turn_starts(messages)
            completion = complete(
                self.model, messages, tools, stream=self.stream, on_delta=on_delta
            )
            self._account(completion)
            if completion.pruned and completion.messages:
                messages[:] = completion.messages  # what fitted the context window
            message = completion.to_message()
            messages.append(message)
            self.host.on_completion(completion, message)
            if not completion.tool_calls:
                raise Finished(self.text)
            for call in completion.tool_calls:
                self.host.check()
                self._call(call, messages)
            if self.token_budget is not None and self.usage.tokens >= self.token_budget:
                raise BudgetReached("tokens")
        raise BudgetReached("turns")

    def _account(self, completion: Completion) -> None:
        u = completion.usage
        self.turns += 1
        self.usage = self.usage + Usage(
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            cost_usd=u.cost_usd,
            calls=1,
        )
        if completion.content:
            self.text = completion.content

    def _call(self, call: ToolCall, messages: list[dict[str, Any]]) -> None:
        self.calls += 1
        if call.error:
            text = f"arguments were not valid JSON ({call.error}); send them again"
            result = ToolResult(name=call.name, ok=False, output=text)
        else:
            result = self.toolbox.call(call.name, call.arguments)
        message = {"role": "tool", "tool_call_id": call.id, "content": result.output}
        messages.append(message)
        self.host.on_tool(call, result, message)
        if result.final is not None:
            self.text = result.final or self.text
            raise Finished(self.text)
