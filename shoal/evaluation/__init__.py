"""The evaluator's measurements: the project's own tests and linters, run and scored.

- ``shoal.evaluation.process``: one command in its own process group, with a deadline.
- ``shoal.evaluation.checks``: detect a repository's checks, run them, score the results.
"""

from shoal.evaluation.checks import Check, CheckResult, Counts, detect, run, score

__all__ = ["Check", "CheckResult", "Counts", "detect", "run", "score"]
