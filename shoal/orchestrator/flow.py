"""The message flow: what the broker routed, counted by sender, recipient and kind.

The broker adds every message it routes to :attr:`Flow.counts` (one dict update, so
routing stays as cheap as it was) and, at most once a second while messages flow,
publishes what it counted as a ``flow.summary`` event straight onto the bus. The
summary is not journaled or recorded: the messages it counts are, and recording the
counts would make a flow of its own (a row a second). The summaries of the last ten
minutes are kept as per-minute totals, for a page opened later (``flow.recent``).

Everything here runs on the broker's thread (its turns, its timer, the services it
calls), so nothing is locked. Memory stays bounded: a summary carries at most
``MAX_EDGES`` edges, a minute keeps at most ``MAX_MINUTE_EDGES``, and names made anew
for each command or request (clients, an actor's requests) are counted as who made them.
"""

from __future__ import annotations

import re
import time
from collections import deque

from shoal.messages.actors import FlowEdge, FlowRecentResult, FlowSummary

EVERY = 1.0
"""Seconds between two summaries, at least."""
WINDOW_MINUTES = 10
MAX_EDGES = 200
MAX_MINUTE_EDGES = 500
_CLIENT = re.compile(r"^([A-Za-z]+)-\d+-[0-9a-f]{6}$")  # mailbox.client.client_name
_ASKING = re.compile(r"^(.+)\.ask-[0-9a-f]{6}$")  # actors.base.ActorContext.ask

Edge = tuple[str, str, str]
"""(sender, recipient, kind)."""


def party(name: str) -> str:
    """Who a name stands for: a client as its prefix (``client-123-0a1b2c`` -> ``client``),
    an actor's own request connection as the actor (``planner-1.ask-0a1b2c`` ->
    ``planner-1``); any other name as it is. Both kinds are new names every time."""
    found = _CLIENT.match(name) or _ASKING.match(name)
    return found.group(1) if found else name


class Flow:
    def __init__(self) -> None:
        self.counts: dict[Edge, int] = {}
        """Messages routed since the last summary; the broker adds to it directly."""
        self.started_at = time.time()
        self._next = 0.0
        self._minutes: deque[tuple[int, dict[Edge, list[float]]]] = deque()
        """(minute since the epoch, {edge: [count, last_at]}), oldest first."""

    def due(self, now: float) -> bool:
        """Whether to publish a summary now (``now``: the broker loop's monotonic clock)."""
        return bool(self.counts) and now >= self._next

    def take(self, now: float) -> FlowSummary:
        """The summary of what was counted since the last one; counting starts over."""
        counts, self.counts = self.counts, {}
        self._next = now + EVERY
        at = time.time()
        folded: dict[Edge, int] = {}
        for (sender, recipient, kind), n in counts.items():
            edge = (party(sender), party(recipient), kind)
            folded[edge] = folded.get(edge, 0) + n
        ranked = sorted(folded.items(), key=lambda item: -item[1])
        kept = ranked[:MAX_EDGES]
        self._remember(kept, at)
        return FlowSummary(
            at=at,
            edges=[FlowEdge(sender=s, recipient=r, kind=k, count=n) for (s, r, k), n in kept],
            other=sum(n for _, n in ranked[MAX_EDGES:]),
        )

    def _remember(self, edges: list[tuple[Edge, int]], at: float) -> None:
        minute = int(at // 60)
        if not self._minutes or self._minutes[-1][0] != minute:
            self._minutes.append((minute, {}))
        while self._minutes[0][0] <= minute - WINDOW_MINUTES:
            self._minutes.popleft()
        totals = self._minutes[-1][1]
        for edge, n in edges:
            seen = totals.get(edge)
            if seen is not None:
                seen[0] += n
                seen[1] = at
            elif len(totals) < MAX_MINUTE_EDGES:
                totals[edge] = [n, at]

    def recent(self, minutes: int) -> FlowRecentResult:
        """Totals per edge over the last ``minutes`` (at most ``WINDOW_MINUTES``)."""
        first = int(time.time() // 60) - min(minutes, WINDOW_MINUTES) + 1
        totals: dict[Edge, list[float]] = {}
        for minute, edges in self._minutes:
            if minute < first:
                continue
            for edge, (n, last) in edges.items():
                seen = totals.setdefault(edge, [0, 0.0])
                seen[0] += n
                seen[1] = max(seen[1], last)
        ranked = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
        return FlowRecentResult(
            since=max(self.started_at, first * 60.0),
            edges=[
                FlowEdge(sender=s, recipient=r, kind=k, count=int(n), last_at=last)
                for (s, r, k), (n, last) in ranked
            ],
        )
