"""Errors a model call raises: one line each, naming the model, never a secret."""

from __future__ import annotations


class ModelError(Exception):
    """A model call failed for good: retries used up, or an error retrying cannot fix.

    ``str()`` is one line: the model, what failed (``HTTP 500``, ``timeout``,
    ``connection error``), after how many attempts, and the provider's message.
    """

    def __init__(
        self,
        model: str,
        failure: str,
        message: str,
        *,
        attempts: int,
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        # One line whatever the provider sent: log lines and status panes stay intact.
        message = " ".join(message.split())
        self.model = model
        self.failure = failure
        self.message = message
        self.attempts = attempts
        self.status = status
        self.retryable = retryable
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        super().__init__(f"model {model}: {failure} after {tries}: {message}")


class ContextOverflow(ModelError):
    """The prompt does not fit the model's context window, and pruning could not make it fit."""

    def __init__(self, model: str, message: str, *, attempts: int, pruned: int) -> None:
        self.pruned = pruned
        super().__init__(
            model,
            f"context window exceeded (pruned {pruned} time{'s' if pruned != 1 else ''})",
            message,
            attempts=attempts,
            status=400,
        )
