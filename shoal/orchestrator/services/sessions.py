"""Chat sessions: opening one (and the chat actor it needs), appending a turn's
messages, clearing it. The rows are written on worker threads' cursors; see
store/sessions.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.messages.chat import SessionAppend, SessionClear, SessionOpen
from shoal.store import sessions as records

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.services.workers import Workers
    from shoal.orchestrator.supervisor import Supervisor


class Sessions:
    handles = (SessionOpen, SessionAppend, SessionClear)

    def __init__(self, supervisor: Supervisor, workers: Workers) -> None:
        self.supervisor = supervisor
        self.workers = workers

    def on_session_open(self, env: Envelope, payload: SessionOpen) -> None:
        if not self.supervisor.names_of("chat"):
            self.supervisor.spawn("chat")  # a chat needs its actor; one serves many sessions
        self.workers.run(env, lambda cur: records.open_session(cur, payload))

    def on_session_append(self, env: Envelope, payload: SessionAppend) -> None:
        self.workers.run(env, lambda cur: records.append(cur, payload))

    def on_session_clear(self, env: Envelope, payload: SessionClear) -> None:
        self.workers.run(env, lambda cur: records.clear(cur, payload))
