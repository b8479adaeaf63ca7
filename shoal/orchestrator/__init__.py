"""The orchestrator: one long-lived process per SHOAL_HOME.

- :mod:`.broker`: the ROUTER loop that receives, journals, records and routes.
- :mod:`.delivery`: unacked messages, acks and redelivery.
- :mod:`.recorder`: the batched DuckDB writer (the only one).
- :mod:`.supervisor`: actor processes, heartbeats, restarts with backoff.
- :mod:`.control`: requests addressed to the orchestrator itself.
- :mod:`.server`: the daemon's main: lock, recovery, threads, signals.
- :mod:`.daemon`: the client side of the lifecycle: start, stop, status.
"""
