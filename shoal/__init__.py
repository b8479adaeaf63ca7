"""shoal: a local-first AI coding agent for the terminal, built as a team of actors.

The package is laid out by job (see docs/architecture.md):

- ``shoal.mailbox``: the envelope, wire frames and ZeroMQ clients.
- ``shoal.orchestrator``: broker, recorder, supervisor and daemon lifecycle.
- ``shoal.actors``: the actor base, the runtime loop and one module per role.
- ``shoal.launchers``: how an actor process is started (one interface, one module each).
- ``shoal.store``: the DuckDB schema, journal and read queries.
- ``shoal.cli``: the ``shoal`` command.

Nothing heavy is imported here: ``shoal --help`` must stay fast.
"""

__version__ = "0.1.0"
