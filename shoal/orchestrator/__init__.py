"""The orchestrator: one long-lived process per SHOAL_HOME.

- :mod:`.broker`: the ROUTER loop that receives, journals, records and routes.
- :mod:`.outbox`: what the orchestrator's own threads send, for the broker to route.
- :mod:`.delivery`: unacked messages, acks and redelivery; the broker's counts.
- :mod:`.recorder`: the batched DuckDB writer (the only one).
- :mod:`.supervisor`: actor processes, heartbeats, restarts with backoff.
- :mod:`.router`: requests addressed to the orchestrator itself, by kind, to the services
  (:mod:`.services`, :mod:`.scheduler`, :mod:`.members`) that answer them.
- :mod:`.server`: the daemon's main: lock, recovery, threads, signals.
- :mod:`.daemon`: the client side of the lifecycle: start, stop, status.
"""
