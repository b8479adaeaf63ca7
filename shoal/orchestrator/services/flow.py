"""The message flow of the last minutes (``flow.recent``), from the broker's counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.messages.actors import FlowRecent, FlowRecentResult

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.flow import Flow


class Flows:
    handles = (FlowRecent,)

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def on_flow_recent(self, env: Envelope, payload: FlowRecent) -> FlowRecentResult:
        return self.flow.recent(payload.minutes)  # on the broker's thread, like the counting
