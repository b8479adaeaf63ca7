"""``shoal skills list`` and ``shoal skills show NAME``: the skills this directory would use.

Skills come from the bundled set, ``$SHOAL_HOME/skills`` and the current
directory's ``.shoal/skills``, ``.agents/skills`` and ``.claude/skills``, later
ones replacing earlier ones of the same name. Malformed SKILL.md files are
reported on stderr, one line each, and the rest still load.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli.output import console, fail, print_json

if TYPE_CHECKING:
    from shoal.skills.catalog import Skill, SkillCatalog


def _catalog() -> SkillCatalog:
    from pathlib import Path

    from shoal.paths import Home
    from shoal.skills.catalog import discover_skills

    return discover_skills(Home.resolve().root / "skills", Path.cwd())


def _warn(catalog: SkillCatalog, folder: str | None = None) -> None:
    """Warnings to stderr; with ``folder``, only those about a SKILL.md in a folder of that name."""
    from pathlib import Path

    for warning in catalog.warnings:
        if folder is None or (warning.path and Path(warning.path).parent.name == folder):
            sys.stderr.write(f"shoal: warning: {warning}\n")


def _shown_path(source: str) -> str:
    """A source path relative to the current directory when it is under it."""
    from pathlib import Path

    try:
        return str(Path(source).relative_to(Path.cwd()))
    except ValueError:
        return source


def _summary(skill: Skill) -> dict[str, Any]:
    return {
        "name": skill.name,
        "kind": skill.kind,
        "layer": skill.layer,
        "description": skill.description,
        "source": skill.source,
    }


def skills_list(
    json_out: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List the skills available here, and where each comes from."""
    catalog = _catalog()
    _warn(catalog)
    skills = list(catalog)
    if json_out:
        for skill in skills:
            print_json(_summary(skill))
        return
    if not skills:
        console().print("no skills")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "kind", "layer"):
        width = max(len(column), *(len(str(getattr(s, column))) for s in skills))
        table.add_column(column, no_wrap=True, min_width=width)
    table.add_column("description")
    table.add_column("source", overflow="fold")
    for s in skills:
        description = s.description if len(s.description) <= 60 else s.description[:59] + "…"
        table.add_row(s.name, s.kind, s.layer, description, _shown_path(s.source))
    console().print(table)


def skills_show(
    name: str = typer.Argument(..., help="The skill's name."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show one skill: its frontmatter fields and its instructions."""
    catalog = _catalog()
    skill = catalog.get(name)
    _warn(catalog, folder=skill.directory.name if skill else name)
    if skill is None:
        fail(f"no skill {name!r}; `shoal skills list` lists them", code=1)
    if json_out:
        print_json(skill.model_dump(mode="json"))
        return
    out = sys.stdout
    fields: list[tuple[str, str]] = [
        ("name", skill.name),
        ("kind", skill.kind),
        ("layer", skill.layer),
        ("source", skill.source),
        ("description", skill.description),
    ]
    if skill.allowed_tools:
        fields.append(("allowed-tools", ", ".join(skill.allowed_tools)))
    if skill.categories:
        fields.append(("categories", ", ".join(skill.categories)))
    if not skill.model_invocable:
        fields.append(("invocation", "only when mentioned (disable-model-invocation)"))
    requires = skill.requires
    needs = [*requires.bins, *([" | ".join(requires.any_bins)] if requires.any_bins else [])]
    needs += [f"${e}" for e in requires.env]
    if needs or requires.os:
        missing = requires.missing()
        state = "missing: " + "; ".join(missing) if missing else "all present"
        platforms = f" on {', '.join(requires.os)}" if requires.os else ""
        fields.append(("requires", f"{', '.join(needs) or 'nothing'}{platforms} ({state})"))
    if skill.dimensions:
        dims = ", ".join(f"{d.name} {d.weight:.2f}" for d in skill.dimensions)
        fields.append(("dimensions", dims))
    for key, value in fields:
        out.write(f"{key}: {value}\n")
    out.write(f"\n{skill.body}\n" if skill.body else "\n(no instructions)\n")
