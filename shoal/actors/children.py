"""Submitting child tasks from an actor: the lead's subtasks, an executor's subagents.

A child is submitted from the actor's own address, so its ``task.done`` comes
back to the actor's mailbox. The ``task.submit.result`` reply arrives on the mailbox
loop while the submitting handler thread waits for it here.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

from shoal.actors.base import inline
from shoal.mailbox.envelope import ORCHESTRATOR, Envelope
from shoal.messages.actors import ErrorReply
from shoal.messages.tasks import TaskSubmit, TaskSubmitResult

if TYPE_CHECKING:
    from shoal.actors.base import ActorContext
    from shoal.messages.base import Payload

SUBMIT_TIMEOUT = 30.0


class ChildSubmitter:
    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._replies: dict[str, Future[Payload]] = {}

    def submit(self, submit: TaskSubmit, task_id: str | None) -> str:
        """The child's task id; RuntimeError if the orchestrator refused it."""
        outcome = self.submit_all([submit], task_id)[0]
        if isinstance(outcome, RuntimeError):
            raise outcome
        return outcome

    def submit_all(
        self, submits: list[TaskSubmit], task_id: str | None
    ) -> list[str | RuntimeError]:
        """Submit children together: each one's task id, or why it was refused.

        All are sent before any reply is awaited: a team's wave of four, one round
        trip after another, started its last child ~20 ms after its first."""
        posted = [self._post(submit, task_id) for submit in submits]
        return [self._accepted(env, future) for env, future in posted]

    def _post(self, submit: TaskSubmit, task_id: str | None) -> tuple[Envelope, Future[Payload]]:
        future: Future[Payload] = Future()
        env = Envelope.of(submit, sender=self.ctx.name, recipient=ORCHESTRATOR, task_id=task_id)
        with self._lock:
            self._replies[env.id] = future
        self.ctx.post(env)
        return env, future

    def _accepted(self, env: Envelope, future: Future[Payload]) -> str | RuntimeError:
        try:
            reply = future.result(timeout=SUBMIT_TIMEOUT)
        except TimeoutError:
            return RuntimeError("the orchestrator did not accept the task in time")
        finally:
            with self._lock:
                self._replies.pop(env.id, None)
        if isinstance(reply, ErrorReply):
            return RuntimeError(reply.message)
        assert isinstance(reply, TaskSubmitResult)
        return reply.task_id

    def resolve(self, msg: Envelope, payload: Payload) -> bool:
        """Hand a reply to the thread waiting for it; False if nobody waits for it."""
        with self._lock:
            future = self._replies.get(msg.reply_to or "")
        if future is None:
            return False
        future.set_result(payload)
        return True


class SubmitsChildren:
    """Mixin for an actor with ``self.children``: hands the acceptance replies to it."""

    children: ChildSubmitter

    @inline
    def on_task_submit_result(self, msg: Envelope, payload: TaskSubmitResult) -> None:
        self.children.resolve(msg, payload)

    @inline
    def on_mailbox_error(self, msg: Envelope, payload: ErrorReply) -> None:
        if not self.children.resolve(msg, payload):
            self.children.ctx.log.warning("error from %s: %s", msg.sender, payload.message)
