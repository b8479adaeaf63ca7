"""The judge's rubric: evaluator skills (SKILL.md with ``kind: evaluator``) and their scoring.

Skills live one per directory, ``<dir>/<skill>/SKILL.md``. Layers are read in
order, bundled < user < project (the ``extra_dirs`` in the order given), and a
later layer's skill replaces an earlier one of the same name. A malformed file
is reported as a :class:`SkillWarning` and skipped, so a broken override leaves
the layer below in place. Skills of other kinds are not rubrics and are passed
over silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shoal.skills.frontmatter import FrontmatterError, split_frontmatter

FALLBACK = "general"
"""The rubric used when no name or category selects another."""

_NAME = r"^[a-z0-9][a-z0-9-]*$"
_DIMENSION = r"^[a-z][a-z0-9_]*$"


class RubricError(Exception):
    """No rubric can be loaded at all (the bundled ones are missing)."""


class SkillWarning(BaseModel):
    """A skill file that was skipped, or a selection that fell back."""

    model_config = ConfigDict(frozen=True)

    path: str | None
    """The SKILL.md concerned; None for a selection problem."""

    reason: str
    """What is wrong, in one line."""

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class Dimension(BaseModel):
    """One thing the judge scores, from 0.0 to 1.0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_DIMENSION)
    """snake_case name the judge's scores are keyed by: "correctness", "code_quality"."""

    weight: float = Field(gt=0, allow_inf_nan=False)
    """Share of the overall score; a rubric's weights are normalised to sum to 1."""

    description: str = ""
    """What a high score on this dimension means, for the judge."""


class Rubric(BaseModel):
    """An evaluator skill, ready for the judge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    """The skill's name, unique across layers: "general", "code-review"."""

    description: str = Field(min_length=1)
    """One line on what the rubric is for."""

    categories: list[str] = Field(default_factory=list)
    """Task categories it is selected for (matched case-insensitively)."""

    dimensions: list[Dimension] = Field(min_length=1)
    """What is scored; weights sum to 1 after validation."""

    instructions: str = Field(min_length=1)
    """The markdown body: how to judge."""

    source: str = ""
    """Where it was loaded from (a path; "bundled:<name>" for the packaged ones)."""

    @field_validator("dimensions")
    @classmethod
    def _normalise(cls, dimensions: list[Dimension]) -> list[Dimension]:
        names = [_key(d.name) for d in dimensions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"dimension {duplicates[0]!r} is listed more than once")
        total = sum(d.weight for d in dimensions)
        return [d.model_copy(update={"weight": d.weight / total}) for d in dimensions]

    def weighted(self, dimension_scores: Mapping[str, float]) -> float:
        """The overall score: the weighted mean over the dimensions that have a score.

        Names match loosely ("Code Quality" scores ``code_quality``); unknown
        dimensions and non-finite values are ignored, and the weights of the
        dimensions present are renormalised. ValueError if none is present.
        """
        weights = {_key(d.name): d.weight for d in self.dimensions}
        present: dict[str, float] = {}
        for name, value in dimension_scores.items():
            key = _key(name)
            if key in weights and isinstance(value, int | float) and math.isfinite(value):
                present[key] = float(value)
        if not present:
            expected = ", ".join(weights)
            raise ValueError(f"no score for any dimension of rubric {self.name!r} ({expected})")
        total = sum(weights[k] for k in present)
        return sum(weights[k] * v for k, v in present.items()) / total

    def as_prompt(self) -> str:
        """The rubric as the judge reads it: dimensions with weights, then the instructions."""
        lines = [f"Rubric: {self.name} ({self.description})", "", "Dimensions (score 0.0 to 1.0):"]
        for d in self.dimensions:
            detail = f": {d.description}" if d.description else ""
            lines.append(f"- {d.name} (weight {d.weight:.2f}){detail}")
        return "\n".join([*lines, "", self.instructions])


class _Frontmatter(BaseModel):
    # Keys other skill tools add (license, allowed-tools, ...) are not ours to refuse.
    model_config = ConfigDict(extra="ignore")

    name: str
    description: str
    kind: Literal["evaluator"]
    categories: list[str] = Field(default_factory=list)
    dimensions: list[Dimension]


@dataclass
class RubricCatalog:
    """Every evaluator skill found, by name, with the warnings met on the way."""

    rubrics: dict[str, Rubric] = field(default_factory=dict)
    layers: dict[str, int] = field(default_factory=dict)
    warnings: list[SkillWarning] = field(default_factory=list)

    def select(self, name: str | None = None, category: str | None = None) -> Rubric:
        """By name, else the best match for category (latest layer, then name), else general."""
        if name is not None and name in self.rubrics:
            return self.rubrics[name]
        chosen = self._by_category(category) or self._fallback()
        if name is not None:
            reason = f"no evaluator skill {name!r}; using {chosen.name!r}"
            self.warnings.append(SkillWarning(path=None, reason=reason))
        return chosen

    def _by_category(self, category: str | None) -> Rubric | None:
        if category is None:
            return None
        wanted = category.strip().lower()
        matches = [r for r in self.rubrics.values() if wanted in {c.lower() for c in r.categories}]
        return min(matches, key=lambda r: (-self.layers[r.name], r.name)) if matches else None

    def _fallback(self) -> Rubric:
        if FALLBACK not in self.rubrics:
            raise RubricError(
                f"no {FALLBACK!r} evaluator skill: the bundled skills are missing from "
                "this installation of shoal"
            )
        return self.rubrics[FALLBACK]


def discover_rubrics(extra_dirs: Iterable[str | Path] = ()) -> RubricCatalog:
    """The bundled evaluator skills, overridden by those in ``extra_dirs``, in order."""
    catalog = RubricCatalog()
    bundled = resources.files("shoal.skills").joinpath("bundled")
    roots: list[tuple[Traversable, bool]] = [(bundled, True)]
    roots += [(Path(d).expanduser(), False) for d in extra_dirs]
    for layer, (root, is_bundled) in enumerate(roots):
        found: dict[str, Rubric] = {}
        for rubric in _read_layer(root, is_bundled, catalog.warnings):
            if rubric.name in found:
                catalog.warnings.append(
                    SkillWarning(
                        path=rubric.source,
                        reason=f"evaluator {rubric.name!r} is already defined by "
                        f"{found[rubric.name].source}; skipped",
                    )
                )
                continue
            found[rubric.name] = rubric
        for rubric in found.values():
            catalog.rubrics[rubric.name] = rubric
            catalog.layers[rubric.name] = layer
    return catalog


def load_rubric(
    name: str | None = None,
    category: str | None = None,
    extra_dirs: Iterable[str | Path] = (),
    warnings: list[SkillWarning] | None = None,
) -> Rubric:
    """The rubric for ``name``, else for ``category``, else ``general``.

    Problems met on the way (malformed files, an unknown name) are appended to
    ``warnings`` when a list is given; they never stop a rubric from loading.
    """
    catalog = discover_rubrics(extra_dirs)
    try:
        return catalog.select(name, category)
    finally:
        if warnings is not None:
            warnings.extend(catalog.warnings)


def parse_rubric(text: str, source: str) -> Rubric | None:
    """The rubric a SKILL.md defines; None for a skill of another kind.

    Raises FrontmatterError (with a one-line reason) when the file is malformed.
    """
    meta, body = split_frontmatter(text)
    if meta.get("kind") != "evaluator":
        return None
    try:
        front = _Frontmatter.model_validate(meta)
        return Rubric(
            name=front.name,
            description=front.description.strip(),
            categories=[str(c) for c in front.categories],
            dimensions=front.dimensions,
            instructions=body.strip(),
            source=source,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "frontmatter"
        if where == "instructions":
            raise FrontmatterError("no judging instructions after the frontmatter") from None
        raise FrontmatterError(f"{where}: {first['msg']}") from None


def _read_layer(root: Traversable, is_bundled: bool, warnings: list[SkillWarning]) -> list[Rubric]:
    if not root.is_dir():
        return []
    rubrics = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        skill = entry.joinpath("SKILL.md")
        if not entry.is_dir() or not skill.is_file():
            continue
        source = f"bundled:{entry.name}" if is_bundled else str(skill)
        try:
            rubric = parse_rubric(skill.read_text(encoding="utf-8"), source)
        except (OSError, UnicodeDecodeError) as exc:
            warnings.append(SkillWarning(path=source, reason=f"cannot read: {exc}"))
            continue
        except FrontmatterError as exc:
            warnings.append(SkillWarning(path=source, reason=str(exc)))
            continue
        if rubric is not None:
            rubrics.append(rubric)
    return rubrics


def _key(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())
