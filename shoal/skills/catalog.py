"""Every skill shoal can use: SKILL.md folders from the bundled, user and project layers.

A skill is a folder ``<dir>/<name>/SKILL.md``: YAML frontmatter, then markdown
instructions. The format is the one Claude Code, OpenClaw and Koder write
(the Agent Skills format), and such files load unchanged:

- ``name`` and ``description`` are the required keys. A missing ``name`` falls
  back to the folder's name (as Claude Code does), with a warning; a missing or
  empty ``description`` is a warning and the skill is skipped, since nothing
  could select it.
- ``allowed-tools`` (Claude Code) or ``allowed_tools``: a YAML list, or a string
  separated by commas or spaces as Claude Code writes it
  (``Read, Grep`` or ``Read Bash(git diff *)``; a space inside parentheses
  belongs to the pattern).
- ``categories``, and for evaluator skills ``kind: evaluator`` with
  ``dimensions`` (validated by :func:`shoal.skills.rubrics.parse_rubric`, so a
  rubric the judge would refuse is reported here too).
- ``disable-model-invocation: true`` (Claude Code): the skill is selected only
  when the task mentions it.
- ``metadata.openclaw`` (OpenClaw): ``requires.bins``, ``requires.anyBins``,
  ``requires.env`` and ``os`` gate eligibility; ``requires.config`` refers to
  OpenClaw's own configuration and is ignored.
- Every other key (``license``, ``version``, ``metadata``, ``model``, ...) is ignored.

Layers are read in order, bundled < user (the user's plugins' ``skills/``, then
``$SHOAL_HOME/skills``) < project (the project's approved plugins' ``skills/``, then
``.shoal/skills``, ``.agents/skills``, ``.claude/skills`` under the project root, in
that order). A later directory's skill replaces an earlier one of the
same name. A malformed file is reported as a :class:`SkillWarning` (path and
reason) and skipped, so a broken override leaves the skill below it in place.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shoal.skills.frontmatter import FrontmatterError, split_frontmatter
from shoal.skills.rubrics import Dimension, SkillWarning, parse_rubric

Layer = Literal["bundled", "user", "project"]
Kind = Literal["skill", "evaluator"]

PROJECT_DIRS = (".shoal/skills", ".agents/skills", ".claude/skills")
"""Project skill directories under the project root, lowest precedence first."""

_OPENCLAW_OS = {"darwin": "darwin", "linux": "linux", "win32": "win32", "cygwin": "win32"}


class Requirements(BaseModel):
    """What a skill needs from the machine to be eligible (OpenClaw's ``requires`` and ``os``)."""

    model_config = ConfigDict(frozen=True)

    bins: list[str] = Field(default_factory=list)
    """Programs that must all be on PATH."""

    any_bins: list[str] = Field(default_factory=list)
    """Programs of which at least one must be on PATH."""

    env: list[str] = Field(default_factory=list)
    """Environment variables that must be set and non-empty."""

    os: list[str] = Field(default_factory=list)
    """Platforms it runs on ("darwin", "linux", "win32"); empty means any."""

    def missing(self) -> list[str]:
        """What is missing on this machine, one phrase each; empty when the skill is eligible."""
        gaps = [f"program {b!r} not on PATH" for b in self.bins if shutil.which(b) is None]
        if self.any_bins and not any(shutil.which(b) for b in self.any_bins):
            gaps.append("none of " + ", ".join(self.any_bins) + " on PATH")
        gaps += [f"${name} not set" for name in self.env if not os.environ.get(name)]
        platform = _OPENCLAW_OS.get(sys.platform, sys.platform)
        if self.os and platform not in self.os:
            gaps.append(f"not for {platform} (only {', '.join(self.os)})")
        return gaps


class Skill(BaseModel):
    """One skill from one SKILL.md: what the prompt shows, and the body loaded on demand."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Unique across layers; the folder's name when the frontmatter has none."""

    description: str
    """What it is for and when to use it: all that selection and the prompt see."""

    kind: Kind = "skill"
    """"evaluator" for the judge's rubrics; only "skill" ones are shown to the executor."""

    allowed_tools: list[str] = Field(default_factory=list)
    """Tools the skill expects (Claude Code's ``allowed-tools``), as written: "Bash(git *)"."""

    categories: list[str] = Field(default_factory=list)
    """Task categories the skill is for."""

    body: str = ""
    """The markdown instructions after the frontmatter."""

    source: str
    """The SKILL.md it was loaded from."""

    layer: Layer
    """Which layer it came from: bundled < user < project."""

    model_invocable: bool = True
    """False for Claude Code's ``disable-model-invocation: true``: selected only when mentioned."""

    requires: Requirements = Field(default_factory=Requirements)
    """What the machine must have for the skill to be eligible."""

    dimensions: list[Dimension] = Field(default_factory=list)
    """An evaluator's scored dimensions (weights normalised); empty for other skills."""

    @property
    def directory(self) -> Path:
        """The skill's folder, where relative references in its body (scripts/, ...) start."""
        return Path(self.source).parent


@dataclass
class SkillCatalog:
    """Every skill found, by name (the winning layer's), and the warnings met on the way."""

    skills: dict[str, Skill] = field(default_factory=dict)
    warnings: list[SkillWarning] = field(default_factory=list)

    def get(self, name: str) -> Skill | None:
        """The skill called ``name``: exact, else case-insensitive, ignoring a leading $ or /."""
        wanted = name.strip().lstrip("$/")
        if wanted in self.skills:
            return self.skills[wanted]
        folded = wanted.casefold()
        return next((s for n, s in self.skills.items() if n.casefold() == folded), None)

    def of_kind(self, kind: Kind = "skill") -> list[Skill]:
        """The skills of one kind, by name."""
        return sorted((s for s in self.skills.values() if s.kind == kind), key=lambda s: s.name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[Skill]:
        return iter(sorted(self.skills.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self.skills)


def skill_dirs(
    home_skills_dir: str | Path | None, project_root: str | Path | None
) -> list[tuple[Layer, Path]]:
    """The user and project skill directories to scan, lowest precedence first; each
    layer's plugins (:mod:`shoal.plugins`) come before its own folders."""
    plugins = _plugin_dirs(home_skills_dir, project_root)
    dirs: list[tuple[Layer, Path]] = [(s, d) for s, d in plugins if s == "user"]
    if home_skills_dir is not None:
        dirs.append(("user", Path(home_skills_dir).expanduser()))
    dirs += [(s, d) for s, d in plugins if s == "project"]
    if project_root is not None:
        root = Path(project_root).expanduser()
        dirs += [("project", root / sub) for sub in PROJECT_DIRS]
    return dirs


def _plugin_dirs(
    home_skills_dir: str | Path | None, project_root: str | Path | None
) -> list[tuple[Layer, Path]]:
    """The skill folders of the plugins in use (the home is the skills folder's parent)."""
    if home_skills_dir is None or Path(home_skills_dir).name != "skills":
        return []
    from shoal.paths import Home
    from shoal.plugins.store import skill_dirs as plugin_skill_dirs

    home = Home.resolve(Path(home_skills_dir).expanduser().parent)
    cwd = Path(project_root).expanduser() if project_root is not None else None
    return list(plugin_skill_dirs(home, cwd))


def discover_skills(
    home_skills_dir: str | Path | None,
    project_root: str | Path | None,
    *,
    include_bundled: bool = True,
) -> SkillCatalog:
    """All skills: bundled, then ``home_skills_dir``, then the project's skill directories.

    Directories that do not exist are passed over. Within one directory two
    folders declaring the same name are a conflict: the first (by folder name)
    is kept and the other reported.
    """
    catalog = SkillCatalog()
    roots: list[tuple[Layer, Traversable]] = []
    if include_bundled:
        roots.append(("bundled", resources.files("shoal.skills").joinpath("bundled")))
    roots += skill_dirs(home_skills_dir, project_root)
    for layer, root in roots:
        found: dict[str, Skill] = {}
        for skill in _read_dir(root, layer, catalog.warnings):
            if skill.name in found:
                reason = f"skill {skill.name!r} is already defined by {found[skill.name].source}"
                catalog.warnings.append(
                    SkillWarning(path=skill.source, reason=reason + "; skipped")
                )
                continue
            found[skill.name] = skill
        catalog.skills.update(found)
    return catalog


def parse_skill(text: str, source: str, layer: Layer, folder: str) -> tuple[Skill, list[str]]:
    """The skill a SKILL.md defines, and notes worth a warning (it loaded anyway).

    Raises FrontmatterError (with a one-line reason) when the file cannot be used.
    """
    meta, body = split_frontmatter(text)
    notes: list[str] = []
    name = meta.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        name = folder
        notes.append(f"no 'name' in the frontmatter; using the folder name {folder!r}")
    elif not isinstance(name, str | int | float) or isinstance(name, bool):
        raise FrontmatterError("name: must be a string")
    name = str(name).strip()
    if "\n" in name:
        raise FrontmatterError("name: must be a single line")
    description = meta.get("description")
    if not isinstance(description, str) or not description.strip():
        missing = description is None or isinstance(description, str)
        raise FrontmatterError(
            "no 'description' in the frontmatter" if missing else "description: must be a string"
        )
    kind = meta.get("kind", "skill")
    if kind not in ("skill", "evaluator"):
        raise FrontmatterError(f"kind: must be 'skill' or 'evaluator', not {kind!r}")
    dimensions: list[Dimension] = []
    if kind == "evaluator":
        rubric = parse_rubric(text, source)
        dimensions = rubric.dimensions if rubric is not None else []
    tools = meta.get("allowed-tools", meta.get("allowed_tools"))
    skill = Skill(
        name=name,
        description=" ".join(description.split()),
        kind=kind,
        allowed_tools=_names(tools, "allowed-tools"),
        categories=_names(meta.get("categories"), "categories"),
        body=body.strip(),
        source=source,
        layer=layer,
        model_invocable=meta.get("disable-model-invocation", False) is not True,
        requires=_requirements(meta.get("metadata")),
        dimensions=dimensions,
    )
    return skill, notes


@functools.lru_cache(maxsize=512)
def _parsed(text: str, source: str, layer: Layer, folder: str) -> tuple[Skill, list[str]]:
    """``parse_skill``, remembered: every prompt discovers the skills again, and the YAML
    is most of that time (an edited file is new text, so it is parsed again)."""
    return parse_skill(text, source, layer, folder)


def _read_dir(root: Traversable, layer: Layer, warnings: list[SkillWarning]) -> list[Skill]:
    if not root.is_dir():
        return []
    skills = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        path = entry.joinpath("SKILL.md")
        if entry.name.startswith(".") or not entry.is_dir() or not path.is_file():
            continue
        source = str(path)
        try:
            skill, notes = _parsed(path.read_text(encoding="utf-8"), source, layer, entry.name)
        except (OSError, UnicodeDecodeError) as exc:
            warnings.append(SkillWarning(path=source, reason=f"cannot read: {exc}"))
            continue
        except FrontmatterError as exc:
            warnings.append(SkillWarning(path=source, reason=f"{exc}; skipped"))
            continue
        warnings += [SkillWarning(path=source, reason=note) for note in notes]
        skills.append(skill)
    return skills


def _names(value: Any, key: str) -> list[str]:
    """A list of names from a YAML list or a comma/space separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return _split_names(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [str(v).strip() for v in value if str(v).strip()]
    raise FrontmatterError(f"{key}: must be a list or a comma-separated string")


def _split_names(text: str) -> list[str]:
    """Split on commas and whitespace outside parentheses: "Read, Bash(git diff *)"."""
    names: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                names.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        names.append("".join(current))
    return names


def _requirements(metadata: Any) -> Requirements:
    """OpenClaw's gating from ``metadata.openclaw`` (a mapping, or JSON in a string)."""
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return Requirements()
    claw = metadata.get("openclaw") if isinstance(metadata, dict) else None
    if not isinstance(claw, dict):
        return Requirements()
    requires = claw.get("requires") if isinstance(claw.get("requires"), dict) else {}
    return Requirements(
        bins=_names(requires.get("bins"), "metadata.openclaw.requires.bins"),
        any_bins=_names(requires.get("anyBins"), "metadata.openclaw.requires.anyBins"),
        env=_names(requires.get("env"), "metadata.openclaw.requires.env"),
        os=_names(claw.get("os"), "metadata.openclaw.os"),
    )
