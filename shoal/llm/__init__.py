"""Models: the one client shoal calls them through, and a scripted stand-in server.

Importing this package is cheap: litellm is imported by :func:`complete` on
first use, never here.
"""

from shoal.llm.client import Completion, Embeddings, ModelConfig, ToolCall, Usage, complete, embed
from shoal.llm.errors import ContextOverflow, ModelError
from shoal.llm.overflow import prune_messages

__all__ = [
    "Completion",
    "ContextOverflow",
    "Embeddings",
    "ModelConfig",
    "ModelError",
    "ToolCall",
    "Usage",
    "complete",
    "embed",
    "prune_messages",
]
