"""The orchestrator's services: one job each, each answering the message kinds it lists.

:class:`~shoal.orchestrator.router.Router` sends each message addressed to
``orchestrator`` to the service that lists its kind. Besides the ones here, the
scheduler (``task.submit``, ``task.cancel`` and the replies to a task's steps) and
the team members (``team.up``, ``team.down``, ``team.status``) are services too.

- :mod:`.admin`: the orchestrator itself (status, stop), its actors, the HTTP API.
- :mod:`.memory`: learnings (remember, recall into a task's context, search, forget,
  import) and the skills chosen for a task.
- :mod:`.patterns`: what the pattern-miner found.
- :mod:`.team_tasks`: team task lists and their claims.
- :mod:`.records`: reading the records (named queries, a user's SQL, exports).
- :mod:`.sessions`: chat sessions and their transcripts.
- :mod:`.batches`: a batch refactor's records.
- :mod:`.workers`: the threads slow requests run on.
"""
