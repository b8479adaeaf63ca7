"""How an agent's run ends other than by a crash: each a named exception, caught by its host."""

from __future__ import annotations

from shoal.llm.errors import ContextOverflow, ModelError

__all__ = ["AgentStop", "BudgetReached", "Cancelled", "ContextOverflow", "Finished", "ModelError"]


class AgentStop(Exception):
    """The run ended on purpose; ``str()`` says why."""


class Finished(AgentStop):
    """The model is done: it answered without tool calls, or called ``finish``."""

    def __init__(self, summary: str) -> None:
        super().__init__("finished")
        self.summary = summary


class Cancelled(AgentStop):
    """Someone stopped the work (Ctrl-C, a time budget, ``chat.cancel``)."""


class BudgetReached(AgentStop):
    """A limit of the run was reached: ``tokens`` (its token budget) or ``turns``."""

    def __init__(self, limit: str) -> None:
        super().__init__(f"{limit} budget reached")
        self.limit = limit
