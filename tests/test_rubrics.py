"""Evaluator skills: bundled rubrics, layered overrides, broken files, weighted scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.skills import Rubric, SkillWarning, load_rubric
from shoal.skills.frontmatter import FrontmatterError, split_frontmatter
from shoal.skills.rubrics import discover_rubrics

OVERRIDE = """---
name: general
description: The project's own idea of good.
kind: evaluator
categories: [general]
license: MIT
dimensions:
  - {name: correctness, weight: 3}
  - {name: docs, weight: 1, description: Public functions are documented.}
---
Judge like this project's maintainers.
"""


def skill(root: Path, directory: str, text: str) -> Path:
    path = root / directory / "SKILL.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def evaluator(name: str, categories: str = "[]", weight: str = "1") -> str:
    return (
        f"---\nname: {name}\ndescription: d\nkind: evaluator\ncategories: {categories}\n"
        f"dimensions:\n  - name: correctness\n    weight: {weight}\n---\nJudge.\n"
    )


@pytest.mark.parametrize("name", ["general", "code-review"])
def test_bundled_rubrics_load_with_weights_summing_to_one(name: str) -> None:
    warnings: list[SkillWarning] = []
    rubric = load_rubric(name, warnings=warnings)
    assert warnings == []
    assert rubric.name == name and rubric.source == f"bundled:{name}"
    assert len(rubric.dimensions) >= 4 and rubric.instructions.startswith("#")
    assert sum(d.weight for d in rubric.dimensions) == pytest.approx(1.0)
    assert all(d.description for d in rubric.dimensions)
    assert rubric.name in rubric.as_prompt() and rubric.instructions in rubric.as_prompt()


def test_selection_by_name_category_and_fallback(tmp_path: Path) -> None:
    assert [d.name for d in load_rubric().dimensions] == [
        "correctness",
        "completeness",
        "code_quality",
        "safety",
    ]
    assert load_rubric(category="Bugfix").name == "code-review"
    assert load_rubric(category="poetry").name == "general"
    warnings: list[SkillWarning] = []
    assert load_rubric("no-such", category="refactor", warnings=warnings).name == "code-review"
    assert [str(w) for w in warnings] == ["no evaluator skill 'no-such'; using 'code-review'"]
    # A project skill for the same category wins over the bundled one.
    project = tmp_path / "project"
    skill(project, "bugs", evaluator("bug-hunt", "[bugfix]"))
    assert load_rubric(category="bugfix", extra_dirs=[project]).name == "bug-hunt"


def test_later_layers_override_by_name(tmp_path: Path) -> None:
    user, project = tmp_path / "user", tmp_path / "project"
    skill(user, "general", evaluator("general", weight="2"))
    path = skill(project, "my-general", OVERRIDE)
    warnings: list[SkillWarning] = []
    rubric = load_rubric(extra_dirs=[user, project, tmp_path / "missing"], warnings=warnings)
    assert warnings == []
    assert rubric.source == str(path) and rubric.description == "The project's own idea of good."
    assert [(d.name, d.weight) for d in rubric.dimensions] == [
        ("correctness", 0.75),
        ("docs", 0.25),
    ]
    assert rubric.instructions == "Judge like this project's maintainers."
    # In the other order the user's file is the last word.
    assert load_rubric(extra_dirs=[project, user]).source == str(user / "general" / "SKILL.md")
    assert load_rubric("code-review", extra_dirs=[user, project]).source == "bundled:code-review"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no frontmatter\n", "no YAML frontmatter"),
        ("---\nname: x\n", "no closing '---' line"),
        ("---\nname: [unclosed\n---\nbody\n", "invalid YAML in the frontmatter at line"),
        ("---\n- a list\n---\nbody\n", "not a mapping"),
        (evaluator("broken", weight="0"), "dimensions.0.weight: Input should be greater than 0"),
        (evaluator("Bad Name"), "name: String should match pattern"),
        (evaluator("empty").replace("Judge.\n", "\n"), "no judging instructions"),
        (
            "---\nname: x\ndescription: d\nkind: evaluator\n---\nbody\n",
            "dimensions: Field required",
        ),
    ],
)
def test_a_broken_file_is_reported_and_skipped(tmp_path: Path, text: str, reason: str) -> None:
    project = tmp_path / "project"
    broken = skill(project, "general", text)
    skill(project, "fine", evaluator("fine"))
    catalog = discover_rubrics([project])
    assert len(catalog.warnings) == 1
    assert catalog.warnings[0].path == str(broken)
    assert reason in catalog.warnings[0].reason and "\n" not in catalog.warnings[0].reason
    # The broken override leaves the bundled general in place; the rest still load.
    assert catalog.select().source == "bundled:general"
    assert catalog.select("fine").source == str(project / "fine" / "SKILL.md")
    assert "code-review" in catalog.rubrics


def test_other_skill_kinds_and_stray_files_are_passed_over(tmp_path: Path) -> None:
    skill(tmp_path, "deploy", "---\nname: deploy\ndescription: Ship it.\n---\nSteps.\n")
    (tmp_path / "README.md").write_text("not a skill directory")
    (tmp_path / "empty").mkdir()
    catalog = discover_rubrics([tmp_path])
    assert catalog.warnings == [] and "deploy" not in catalog.rubrics


def test_duplicate_names_in_one_layer_keep_the_first(tmp_path: Path) -> None:
    skill(tmp_path, "a", evaluator("same", weight="1"))
    second = skill(tmp_path, "b", evaluator("same", weight="2"))
    catalog = discover_rubrics([tmp_path])
    assert catalog.rubrics["same"].source.endswith("a/SKILL.md")
    assert [w.path for w in catalog.warnings] == [str(second)]


def test_weighted_score() -> None:
    rubric = Rubric.model_validate(
        {
            "name": "r",
            "description": "d",
            "instructions": "i",
            "dimensions": [
                {"name": "correctness", "weight": 2},
                {"name": "code_quality", "weight": 1},
                {"name": "safety", "weight": 1},
            ],
        }
    )
    assert [d.weight for d in rubric.dimensions] == [0.5, 0.25, 0.25]
    full = {"correctness": 1.0, "code_quality": 0.6, "safety": 0.2}
    assert rubric.weighted(full) == pytest.approx(0.5 + 0.15 + 0.05)
    # Unknown dimensions are ignored; the ones present are renormalised (2:1 here).
    partial = {"Correctness": 0.9, "Code Quality": 0.3, "style": 0.0, "safety": float("nan")}
    assert rubric.weighted(partial) == pytest.approx((2 * 0.9 + 1 * 0.3) / 3)
    with pytest.raises(ValueError, match="no score for any dimension"):
        rubric.weighted({"style": 1.0})
    with pytest.raises(ValueError, match="more than once"):
        Rubric.model_validate(
            {
                "name": "r",
                "description": "d",
                "instructions": "i",
                "dimensions": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}],
            }
        )


def test_frontmatter_split() -> None:
    meta, body = split_frontmatter("\ufeff---\nname: x\nlist: [1, 2]\n...\n# Body\n")
    assert meta == {"name": "x", "list": [1, 2]} and body == "# Body\n"
    with pytest.raises(FrontmatterError):
        split_frontmatter("")
