"""The evaluator's scoring rules: composite weights, the blocker cap, rubric by category."""

from __future__ import annotations

import pytest

from shoal.actors.evaluator import category_of, composite
from shoal.messages.tasks import Finding
from shoal.skills.rubrics import load_rubric


def test_composite_weighs_the_parts_that_exist() -> None:
    assert composite({"test": 1.0, "lint": 1.0, "judge": 0.5}, []) == pytest.approx(0.75)
    assert composite({"test": None, "lint": None, "judge": 0.9}, []) == pytest.approx(0.9)
    assert composite({"test": 0.0, "lint": None, "judge": 1.0}, []) == pytest.approx(
        5 / 9, abs=1e-4
    )


def test_an_open_blocker_caps_the_score() -> None:
    blocker = Finding(severity="blocker", title="not done")
    assert composite({"test": 1.0, "lint": 1.0, "judge": 1.0}, [blocker]) == 0.5


def test_the_rubric_follows_the_task_category() -> None:
    assert category_of("Fix the failing test in calc.py") == "bugfix"
    assert load_rubric(None, category_of("Fix the failing test")).name == "code-review"
    assert category_of("Write the installation guide") is None
    assert load_rubric(None, category_of("Write the installation guide")).name == "general"
