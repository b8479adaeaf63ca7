"""Chat sessions: opening one (and the chat actor it needs), appending a turn's
messages, clearing it. The rows are written on worker threads' cursors; see
store/sessions.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.messages.base import Payload
from shoal.messages.chat import SessionAppend, SessionClear, SessionOpen
from shoal.messages.tasks import UsageRecorded
from shoal.store import sessions as records

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.services.workers import Workers
    from shoal.orchestrator.supervisor import Supervisor


class Sessions:
    handles = (SessionOpen, SessionAppend, SessionClear)

    def __init__(
        self, supervisor: Supervisor, workers: Workers, publish: Callable[[Payload], None]
    ) -> None:
        self.supervisor = supervisor
        self.workers = workers
        self.publish = publish
        """Puts a ``usage.recorded`` on the event bus once a turn's cost is written."""

    def on_session_open(self, env: Envelope, payload: SessionOpen) -> None:
        if not self.supervisor.names_of("chat"):
            self.supervisor.spawn("chat")  # a chat needs its actor; one serves many sessions
        self.workers.run(env, lambda cur: records.open_session(cur, payload))

    def on_session_append(self, env: Envelope, payload: SessionAppend) -> None:
        def append(cur: Any) -> Payload:
            done = records.append(cur, payload)
            used = payload.usage
            if used.calls:  # a usage_events row was written with the turn
                self.publish(
                    UsageRecorded(
                        at=time.time(),
                        role="chat",
                        model=payload.model,
                        calls=used.calls,
                        prompt_tokens=used.prompt_tokens,
                        completion_tokens=used.completion_tokens,
                        cost_usd=used.cost_usd,
                    )
                )
            return done

        self.workers.run(env, append)

    def on_session_clear(self, env: Envelope, payload: SessionClear) -> None:
        self.workers.run(env, lambda cur: records.clear(cur, payload))
