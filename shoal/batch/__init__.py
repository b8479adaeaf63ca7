"""Batch refactors: one instruction applied to many files, directories or repositories.

- :mod:`.units`: what a unit is, how a batch is split into units, what travels to a worker.
- :mod:`.work`: one unit's work in a worker: an isolated clone, the executor's tool
  loop, the evaluator where configured, the verify command, the diff.
- :mod:`.backends`: where units run: Ray tasks or a local process pool, with
  bounded concurrency and retries of units whose worker died.
- :mod:`.apply`: accepted patches committed to one branch per repository.
- :mod:`.driver`: the batch as a whole: records (through the orchestrator),
  progress, interruption and resume, the summary.
"""
