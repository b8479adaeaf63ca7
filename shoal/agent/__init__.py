"""The one agent core: a tool loop (:class:`Agent`) that every kind of agent in shoal runs.

    agent = Agent(host, toolbox, model_config, max_turns=50)
    try:
        agent.run(messages)
    except Finished: ...
    except (Cancelled, BudgetReached, ModelError): ...

``Host`` is all it asks of its runner; ``QuietHost`` is a host with nothing to say.
"""

from shoal.agent.errors import (
    AgentStop,
    BudgetReached,
    Cancelled,
    ContextOverflow,
    Finished,
    ModelError,
)
from shoal.agent.host import Host, QuietHost
from shoal.agent.loop import Agent

__all__ = [
    "Agent",
    "AgentStop",
    "BudgetReached",
    "Cancelled",
    "ContextOverflow",
    "Finished",
    "Host",
    "ModelError",
    "QuietHost",
]
