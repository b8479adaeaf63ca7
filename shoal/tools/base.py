"""What every tool shares: its argument base model, its output, and its refusal error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict


class ToolError(Exception):
    """A tool refused or failed; the message is shown to the model and says what to do next."""


class ToolArgs(BaseModel):
    """Base of every tool's arguments; field docstrings become the schema's descriptions."""

    # Unknown arguments are errors, not silently dropped: a model that sends
    # ``file_path`` instead of ``path`` must learn the right name.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


@dataclass(frozen=True)
class ToolOutput:
    """What a tool returns before truncation."""

    text: str
    """The main output; cut to the size limits if too long (the full text is saved)."""
    footer: str = ""
    """Always shown after the (possibly cut) text, e.g. an exit code or a paging hint."""
    keep: Literal["head", "ends"] = "head"
    """What to keep when cutting: the beginning, or the beginning and the end (commands)."""
    ok: bool = True
    """False when the tool ran but the action failed (non-zero exit, timeout)."""
    exit_code: int | None = None
    """Exit code of the command run by shell or git."""
    final: str | None = None
    """Set by a tool that ends the agent's run (``finish``): the run's summary."""
