"""The evaluator's measurements: the project's own tests and linters, run (with
:mod:`shoal.process`, the one runner) and scored.

- ``shoal.evaluation.environment``: the project's own toolchain (its venv, uv, npm, ...).
- ``shoal.evaluation.detection``: which checks a repository has, with that toolchain.
- ``shoal.evaluation.settings``: ``[checks]`` and ``--check``.
- ``shoal.evaluation.checks``: a check, running it, its status and score.
"""

from shoal.evaluation.checks import Check, CheckResult, Counts, detect, find, run, score

__all__ = ["Check", "CheckResult", "Counts", "detect", "find", "run", "score"]
