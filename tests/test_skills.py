"""Skills: discovery across layers, foreign formats, broken files, selection, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shoal.cli.skills import skills_list, skills_show
from shoal.skills.catalog import discover_skills
from shoal.skills.selection import (
    get_skill_text,
    prompt_block,
    rank_skills,
    select_skills,
    shrunk_mean,
)

# As Claude Code writes it: hyphenated allowed-tools as a string, keys shoal does not use.
CLAUDE_CODE = """---
name: pdf-forms
description: Fill in PDF forms and extract their fields. Use when the user mentions PDF forms.
allowed-tools: Read, Grep, Bash(python scripts/fill.py *)
license: Apache-2.0
version: 1.2.0
model: sonnet
argument-hint: [file]
metadata:
  author: someone
---

# PDF forms

Run `scripts/fill.py` with the form and the values.
"""


def skill(root: Path, folder: str, text: str) -> Path:
    path = root / folder / "SKILL.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def simple(name: str, description: str, body: str = "Do it well.", extra: str = "") -> str:
    return f"---\nname: {name}\ndescription: {description}\n{extra}---\n{body}\n"


def test_claude_code_skill_loads_unchanged(tmp_path: Path) -> None:
    path = skill(tmp_path / ".claude" / "skills", "pdf-forms", CLAUDE_CODE)
    catalog = discover_skills(tmp_path / "home-skills", tmp_path)
    assert catalog.warnings == []
    s = catalog.skills["pdf-forms"]
    assert s.kind == "skill" and s.layer == "project" and s.source == str(path)
    assert s.description.startswith("Fill in PDF forms")
    assert s.allowed_tools == ["Read", "Grep", "Bash(python scripts/fill.py *)"]
    assert s.body.startswith("# PDF forms") and "scripts/fill.py" in s.body
    assert s.directory == path.parent


def test_allowed_tools_spellings_and_openclaw_gating(tmp_path: Path) -> None:
    skills = tmp_path / ".agents" / "skills"
    skill(skills, "a", simple("a", "as a list", extra="allowed_tools: [read_file, grep]\n"))
    skill(skills, "b", simple("b", "space separated", extra="allowed-tools: Read Grep Glob\n"))
    gated = 'metadata: {"openclaw": {"requires": {"bins": ["surely-not-a-real-binary-xyz"]}}}\n'
    skill(skills, "c", simple("c", "needs a program", extra=gated))
    skill(skills, "d", simple("d", "manual only", extra="disable-model-invocation: true\n"))
    catalog = discover_skills(None, tmp_path)
    assert catalog.warnings == []
    assert catalog.skills["a"].allowed_tools == ["read_file", "grep"]
    assert catalog.skills["b"].allowed_tools == ["Read", "Grep", "Glob"]
    assert catalog.skills["c"].requires.missing() == [
        "program 'surely-not-a-real-binary-xyz' not on PATH"
    ]
    assert not catalog.skills["d"].model_invocable


def test_layers_later_sources_replace_earlier(tmp_path: Path) -> None:
    home_skills = tmp_path / "home" / "skills"
    skill(home_skills, "python-testing", simple("python-testing", "the user's own"))
    skill(home_skills, "mine", simple("mine", "user only"))
    skill(tmp_path / ".shoal" / "skills", "mine", simple("mine", "from .shoal"))
    skill(tmp_path / ".claude" / "skills", "mine", simple("mine", "from .claude"))
    catalog = discover_skills(home_skills, tmp_path)
    assert catalog.warnings == []
    bundled = discover_skills(None, None).skills["python-testing"]
    assert bundled.layer == "bundled" and "pytest" in bundled.body
    overridden = catalog.skills["python-testing"]
    assert (overridden.layer, overridden.description) == ("user", "the user's own")
    assert catalog.skills["mine"].description == "from .claude"

    # A project skill replaces the bundled one of the same name too.
    skill(tmp_path / ".agents" / "skills", "python-testing", simple("python-testing", "project"))
    catalog = discover_skills(home_skills, tmp_path)
    assert catalog.skills["python-testing"].layer == "project"
    assert catalog.skills["python-testing"].description == "project"
    # Evaluators are part of the catalog, with their kind.
    assert catalog.skills["general"].kind == "evaluator"
    assert catalog.skills["general"].dimensions


def test_broken_files_are_reported_and_the_rest_load(tmp_path: Path) -> None:
    skills = tmp_path / ".shoal" / "skills"
    bad_yaml = skill(skills, "bad-yaml", "---\nname: bad-yaml\ndescription: [unclosed\n---\nx\n")
    no_description = skill(skills, "no-desc", "---\nname: no-desc\n---\nBody.\n")
    no_frontmatter = skill(skills, "plain", "# Just markdown\n")
    bad_eval = skill(skills, "bad-eval", simple("bad-eval", "d", extra="kind: evaluator\n"))
    unnamed = skill(skills, "unnamed", "---\ndescription: Has no name.\n---\nBody.\n")
    skill(skills, "good", simple("good", "Still loads."))
    # A broken override leaves the layer below in place.
    broken_override = skill(skills, "git-hygiene", "---\nname: git-hygiene\n")

    catalog = discover_skills(tmp_path / "nowhere", tmp_path)
    reasons = {w.path: w.reason for w in catalog.warnings}
    assert "invalid YAML" in reasons[str(bad_yaml)]
    assert "no 'description'" in reasons[str(no_description)]
    assert "no YAML frontmatter" in reasons[str(no_frontmatter)]
    assert "dimensions" in reasons[str(bad_eval)]
    assert "no closing" in reasons[str(broken_override)]
    assert "folder name 'unnamed'" in reasons[str(unnamed)]
    assert all(str(w).startswith(f"{w.path}: ") for w in catalog.warnings)
    assert {"good", "unnamed", "python-testing"} <= set(catalog.skills)
    assert not {"bad-yaml", "no-desc", "plain", "bad-eval"} & set(catalog.skills)
    assert catalog.skills["git-hygiene"].layer == "bundled"


def test_explicit_mention_always_selects(tmp_path: Path) -> None:
    skills = tmp_path / ".shoal" / "skills"
    skill(skills, "release-notes", simple("release-notes", "Write release notes from a changelog."))
    skill(skills, "deploy", simple("deploy", "Deploy.", extra="disable-model-invocation: true\n"))
    images = "Write and optimise Dockerfiles for container images."
    skill(skills, "container-images", simple("container-images", images))
    catalog = discover_skills(None, tmp_path, include_bundled=False)

    task = "Optimise the Dockerfile image size, then /deploy and follow $release-notes"
    chosen = [s.name for s in select_skills(task, catalog, k=1)]
    # Mentions first, in order of mention, beyond k; then the best ranked one.
    assert chosen == ["deploy", "release-notes", "container-images"]
    # Unmentioned, a manual-only skill is never selected, however similar.
    assert "deploy" not in [s.name for s in select_skills("make the deploys faster", catalog, k=5)]
    # A plain whole-word mention counts; part of another word does not.
    assert [s.name for s in select_skills("use release-notes here", catalog, k=0)] == [
        "release-notes"
    ]
    assert select_skills("a redeploy-script and release-notesy", catalog, k=0) == []


def test_ranking_prefers_similar_then_effective(tmp_path: Path) -> None:
    skills = tmp_path / ".shoal" / "skills"
    same = "Migrate SQL database schemas safely with reversible migrations."
    skill(skills, "migrations-a", simple("migrations-a", same))
    skill(skills, "migrations-b", simple("migrations-b", same))
    skill(skills, "css", simple("css", "Style web pages with CSS grid and flexbox layouts."))
    catalog = discover_skills(None, tmp_path, include_bundled=False)
    task = "add a reversible migration for the orders database schema"

    ranked = rank_skills(task, catalog.of_kind("skill"))
    assert ranked[0].similarity == ranked[1].similarity > ranked[2].similarity
    assert ranked[2].skill.name == "css"
    # Below the similarity floor: not selected at all.
    assert "css" not in [s.name for s in select_skills(task, catalog, k=3)]

    record = {"migrations-b": (0.95, 20), "migrations-a": (0.4, 20), "css": (1.0, 500)}
    chosen = select_skills(task, catalog, effectiveness=record, k=2)
    assert [s.name for s in chosen] == ["migrations-b", "migrations-a"]
    record = {"migrations-a": (0.9, 10), "migrations-b": (0.2, 10)}
    assert select_skills(task, catalog, effectiveness=record, k=1)[0].name == "migrations-a"


def test_embeddings_rank_by_cosine(tmp_path: Path) -> None:
    from shoal.memory.embedder import LocalEmbedder

    skills = tmp_path / ".shoal" / "skills"
    skill(skills, "sql", simple("sql", "Write SQL queries, joins and indexes for a database."))
    skill(skills, "css", simple("css", "Style web pages with CSS grid and flexbox layouts."))
    catalog = discover_skills(None, tmp_path, include_bundled=False)
    embed = LocalEmbedder().embed
    chosen = select_skills("speed up the slow SQL queries with an index", catalog, embed=embed)
    assert [s.name for s in chosen] == ["sql"]


def test_shrunk_mean_formula() -> None:
    assert shrunk_mean(1.0, 0) == 0.5
    assert shrunk_mean(1.0, 1) == pytest.approx((1.0 + 0.5 * 3) / 4)
    assert shrunk_mean(0.0, 997) == pytest.approx(1.5 / 1000)
    assert shrunk_mean(float("nan"), 5) == 0.5


def test_prompt_block_and_get_skill(tmp_path: Path) -> None:
    skill(tmp_path / ".claude" / "skills", "pdf-forms", CLAUDE_CODE)
    catalog = discover_skills(None, tmp_path)
    block = prompt_block([catalog.skills["pdf-forms"], catalog.skills["python-testing"]])
    assert "get_skill(name)" in block
    assert "- pdf-forms: Fill in PDF forms" in block and "- python-testing: " in block
    assert "# PDF forms" not in block
    assert prompt_block([]) == ""

    text = get_skill_text(catalog, "pdf-forms")
    assert "# PDF forms" in text and str(tmp_path / ".claude" / "skills" / "pdf-forms") in text
    assert "# PDF forms" in get_skill_text(catalog, "/PDF-Forms")
    missing = get_skill_text(catalog, "nope")
    assert missing.startswith("no skill named 'nope'")
    assert "pdf-forms" in missing and "python-testing" in missing
    assert "general" not in missing  # evaluators are not the executor's to load


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("SHOAL_HOME", str(tmp_path / "home"))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("list")(skills_list)
    app.command("show")(skills_show)
    return app


def test_cli_list_and_show(cli: CliRunner, tmp_path: Path) -> None:
    skill(tmp_path / "project" / ".claude" / "skills", "pdf-forms", CLAUDE_CODE)
    broken = skill(tmp_path / "home" / "skills", "broken", "---\nname: [\n---\n")
    app = _app()

    result = cli.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["pdf-forms"]["layer"] == "project" and rows["pdf-forms"]["kind"] == "skill"
    assert rows["general"]["kind"] == "evaluator" and rows["python-testing"]["layer"] == "bundled"
    assert result.stderr.count("\n") == 1 and f"warning: {broken}: invalid YAML" in result.stderr

    result = cli.invoke(app, ["list"])
    assert result.exit_code == 0 and "pdf-forms" in result.stdout and "project" in result.stdout

    result = cli.invoke(app, ["show", "pdf-forms"])
    assert result.exit_code == 0, result.output
    assert "allowed-tools: Read, Grep, Bash(python scripts/fill.py *)" in result.stdout
    assert "layer: project" in result.stdout and "# PDF forms" in result.stdout

    result = cli.invoke(app, ["show", "pdf-forms", "--json"])
    data = json.loads(result.stdout)
    assert data["allowed_tools"][0] == "Read" and data["body"].startswith("# PDF forms")

    result = cli.invoke(app, ["show", "nope"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "shoal: error: no skill 'nope'; `shoal skills list` lists them"
    ]
