"""What an agent needs from whoever runs it: the narrow interface between loop and actor.

An executor, a chat turn and a batch unit each run the same :class:`~shoal.agent.loop.Agent`;
they differ only in their host: where progress is published, whether steering lines arrive,
how cancellation is seen. :class:`QuietHost` does nothing, so a host overrides only what it has.
"""

from __future__ import annotations

from typing import Any, Protocol

from shoal.llm.client import Completion, ToolCall
from shoal.tools import ToolResult


class Host(Protocol):
    def turn_starts(self, messages: list[dict[str, Any]]) -> None:
        """Before each model call: raise Cancelled to stop, or add to ``messages`` (steering
        lines that arrived since the last turn)."""

    def check(self) -> None:
        """Between tool calls: raise Cancelled to stop."""

    def on_delta(self, text: str) -> None:
        """A piece of streamed text (only when the agent streams)."""

    def on_completion(self, completion: Completion, message: dict[str, Any]) -> None:
        """The model answered; ``message`` is what joined the conversation."""

    def on_tool(self, call: ToolCall, result: ToolResult, message: dict[str, Any]) -> None:
        """A tool call ran (or was refused); ``message`` is its answer in the conversation."""


class QuietHost:
    """A host that sees nothing and never cancels."""

    def turn_starts(self, messages: list[dict[str, Any]]) -> None:
        return None

    def check(self) -> None:
        return None

    def on_delta(self, text: str) -> None:
        return None

    def on_completion(self, completion: Completion, message: dict[str, Any]) -> None:
        return None

    def on_tool(self, call: ToolCall, result: ToolResult, message: dict[str, Any]) -> None:
        return None
