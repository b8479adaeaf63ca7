"""shoal export and shoal import: everything out, memory and skills back in, no secret in it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from shoal import daemon
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.messages.memory import MemoryRemember, NewLearning
from shoal.paths import Home
from tests.conftest import SESSION_PREFIX, shoal
from tests.test_loop import call, make_repo, model_env, plan, verdict

SKILL = "---\nname: tidy-imports\ndescription: Sort and prune imports.\n---\n\nSort them.\n"


@pytest.fixture
def fresh() -> Iterator[Home]:
    """A second, empty SHOAL_HOME (its orchestrator stopped at the end)."""
    other = Home.resolve(tempfile.mkdtemp(prefix=SESSION_PREFIX))
    yield other
    with contextlib.suppress(Exception):
        daemon.stop(other, timeout=15)
    shutil.rmtree(other.root, ignore_errors=True)


def memory(home: Home) -> list[dict]:
    out = shoal("memory", "list", "--json", env={"SHOAL_HOME": str(home.root)}, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return sorted(rows, key=lambda r: r["id"])


def filled(home: Home, tmp_path: Path, keys: dict[str, str]) -> None:
    """A home with a recorded task, learnings (one holding a key) and skills."""
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [call("finish", summary="nothing to do")],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        ran = shoal(
            "run",
            "look around",
            "-C",
            str(repo),
            "--json",
            env={**model_env(server), **keys},
            timeout=120,
        )
    assert json.loads(ran.stdout)["task_id"], ran.stderr
    pasted = f"the deploy key was {keys['OPENAI_API_KEY']}, do not paste it again"
    learnings = [
        NewLearning(kind="convention", content="run ruff format before committing", confidence=0.7),
        NewLearning(
            kind="pitfall", content="tests need the fixture repo checked out", confidence=0.55
        ),
        NewLearning(kind="insight", content=pasted, confidence=0.4),
    ]
    daemon.request(home, MemoryRemember(learnings=learnings))
    (home.root / "skills" / "tidy-imports").mkdir(parents=True)
    (home.root / "skills" / "tidy-imports" / "SKILL.md").write_text(SKILL)
    (home.root / "skills" / "tidy-imports" / "logo.bin").write_bytes(b"\x89PNG\0\xff")
    proposed = home.root / "skills" / "proposed" / "mined-skill"
    proposed.mkdir(parents=True)
    (proposed / "SKILL.md").write_text(SKILL.replace("tidy-imports", "mined-skill"))


def test_export_all_then_import_restores_memory_and_skills_without_secrets(
    home: Home, tmp_path: Path, fresh: Home
) -> None:
    keys = {
        "OPENAI_API_KEY": f"sk-{os.urandom(12).hex()}",
        "SHOAL_API_KEY": f"sk-{os.urandom(12).hex()}",
    }
    filled(home, tmp_path, keys)
    before = memory(home)
    out = tmp_path / "all.json"
    exported = shoal("export", "all", "-o", str(out), env=keys)  # the orchestrator runs
    assert exported.returncode == 0, exported.stderr
    assert "exported 1 tasks, " in exported.stderr  # the task's learner may add learnings
    assert f"{len(before)} learnings" in exported.stderr
    assert "1 value(s) held a secret of your environment: redacted" in exported.stderr
    text = out.read_text()
    assert not any(k in text for k in keys.values())  # scanned: no key anywhere
    assert "the deploy key was [redacted], do not paste" in text
    assert out.stat().st_mode & 0o777 == 0o600
    data = json.loads(text)
    assert data["shoal_export"] == 1 and len(data["data"]["tasks"]) == 1
    assert data["data"]["tasks"][0]["description"] == "look around"
    assert {r["skill"] for r in data["data"]["skill_files"]} == {"tidy-imports", "mined-skill"}
    fresh_env = {"SHOAL_HOME": str(fresh.root)}
    imported = shoal("import", str(out), env=fresh_env)
    assert imported.returncode == 0, imported.stderr
    assert f"learnings: {len(before)} imported, 0 already here" in imported.stdout
    assert "skills: 2 imported" in imported.stdout
    assert (
        "records not imported (they stay in the export): costs, iterations, tasks"
        in imported.stdout
    )
    after = memory(fresh)
    keep = ("id", "kind", "confidence", "uses", "source_task")
    assert [{k: r[k] for k in keep} for r in after] == [{k: r[k] for k in keep} for r in before]
    assert {r["content"] for r in after} >= {"run ruff format before committing"}
    skill = fresh.root / "skills" / "tidy-imports"
    assert (skill / "SKILL.md").read_text() == SKILL
    assert (skill / "logo.bin").read_bytes() == b"\x89PNG\0\xff"
    assert (fresh.root / "skills" / "proposed" / "mined-skill" / "SKILL.md").is_file()
    listed = shoal("skills", "list", "--json", env=fresh_env, cwd=tmp_path, check=True).stdout
    assert "tidy-imports" in listed
    # Recalled in the new home: the vectors were made again by its embedder.
    found = shoal("memory", "search", "ruff format", "--json", env=fresh_env, check=True).stdout
    assert "run ruff format before committing" in found
    again = shoal("import", str(out), env=fresh_env, check=True).stdout
    assert f"learnings: 0 imported, {len(before)} already here" in again
    assert "already here as they are: tidy-imports, mined-skill" in again


def test_every_format_round_trips_and_the_file_is_read_without_an_orchestrator(
    home: Home, tmp_path: Path, fresh: Home
) -> None:
    keys = {"OPENAI_API_KEY": f"sk-{os.urandom(12).hex()}"}
    filled(home, tmp_path, keys)
    before = {r["id"] for r in memory(home)}
    assert shoal("orchestrator", "stop").returncode == 0  # read-only on the file from here
    lines = tmp_path / "memory.jsonl"
    folder = tmp_path / "parquet"
    assert shoal("export", "memory", "-f", "jsonl", "-o", str(lines), env=keys).returncode == 0
    assert shoal("export", "all", "-f", "parquet", "-o", str(folder), env=keys).returncode == 0
    assert daemon.running_pid(home) is None  # the export did not start one
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert rows[0]["shoal_export"] == 1 and rows[0]["tables"] == ["learnings"]
    assert {r["table"] for r in rows[1:]} == {"learnings"} and len(rows) == 1 + len(before)
    con = duckdb.connect()
    for parquet in folder.glob("*.parquet"):
        for row in con.execute("SELECT * FROM read_parquet(?)", [str(parquet)]).fetchall():
            assert not any(keys["OPENAI_API_KEY"] in str(value) for value in row), parquet
    assert {p.stem for p in folder.glob("*.parquet")} >= {"tasks", "learnings", "skill_files"}
    env = {"SHOAL_HOME": str(fresh.root)}
    skills_only = shoal("import", str(folder), "--only", "skills", env=env, check=True).stdout
    assert "learnings: 0 imported" in skills_only and "skills: 2 imported" in skills_only
    assert shoal("import", str(lines), env=env, check=True).returncode == 0
    assert {r["id"] for r in memory(fresh)} == before
    stdout = shoal("export", "skills", "-o", "-", env=env, check=True).stdout
    assert {r["skill"] for r in json.loads(stdout)["data"]["skill_files"]} == {
        "tidy-imports",
        "mined-skill",
    }


def test_bad_input_is_one_line(home: Home, tmp_path: Path) -> None:
    wrong = shoal("export", "everything")
    assert wrong.returncode == 2 and "choose all, tasks, memory, sessions, skills" in wrong.stderr
    assert shoal("export", "-f", "xml").returncode == 2
    notes = tmp_path / "notes.json"
    notes.write_text('{"hello": 1}')
    bad = shoal("import", str(notes))
    assert bad.returncode == 1 and "not a shoal export" in bad.stderr
    assert bad.stderr.count("\n") == 1
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    assert "not a shoal export (not JSON" in shoal("import", str(broken)).stderr
    evil = tmp_path / "evil.json"
    row = {
        "skill": "x",
        "state": "active",
        "path": "../../escape.txt",
        "content": "",
        "encoding": "utf-8",
    }
    evil.write_text(json.dumps({"shoal_export": 1, "data": {"skill_files": [row]}}))
    refused = shoal("import", str(evil))
    assert refused.returncode == 1 and "is not a safe path" in refused.stderr
    assert not (home.root.parent / "escape.txt").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    full = shoal("export", "-f", "parquet", "-o", str(taken))
    assert full.returncode == 1 and "parquet needs a new or empty folder" in full.stderr
