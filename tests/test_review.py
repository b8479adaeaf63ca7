"""``shoal review``, ``commit-check`` and ``release-notes`` on real git repositories.

A review goes to an evaluator actor through the orchestrator; the scripted
model answers as the judge. What must hold: findings keep their file and line
through the text, JSON and SARIF forms (SARIF valid against the official 2.1.0
schema), exit 1 on a blocker and 0 on a clean diff, and nothing in the work
tree, the index, the refs or the stash changes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shoal.evaluation.sarif import sarif
from shoal.evaluation.secrets import added_lines, scan
from shoal.llm.scripted import ScriptedModelServer
from shoal.messages.tasks import Evaluation, Finding, ReviewResult
from shoal.paths import Home
from tests.conftest import shoal
from tests.test_loop import call, make_repo

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
SQL_FILE = """import sqlite3


def find_user(conn: sqlite3.Connection, name: str):
    return conn.execute(f"SELECT * FROM users WHERE name = '{name}'").fetchall()
"""
SQL_LINE = 5
AWS_KEY = "AKIA" + "Q" * 16


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def state(repo: Path) -> dict[str, Any]:
    """Everything a review must leave alone: files, status, index, refs, HEAD, stash."""
    files = {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return {
        "files": files,
        "status": git(repo, "status", "--porcelain", "--untracked-files=all", "--ignored"),
        "index": (repo / ".git" / "index").read_bytes(),
        "refs": git(repo, "for-each-ref"),
        "head": git(repo, "rev-parse", "HEAD") + git(repo, "symbolic-ref", "-q", "HEAD"),
        "stash": git(repo, "stash", "list"),
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
    }


def judge(score: float, *findings: dict[str, Any]) -> dict[str, Any]:
    dims = {"correctness": score, "tests": score}
    return call("submit_evaluation", score=score, dimensions=dims, findings=list(findings))


def env(server: ScriptedModelServer) -> dict[str, str]:
    return {
        "SHOAL_EVALUATOR_MODEL": "openai/scripted-evaluator",
        "SHOAL_BASE_URL": server.base_url,
        "SHOAL_PRELOAD": "litellm",
    }


SQLI = {
    "severity": "blocker",
    "title": "SQL injection in find_user",
    "detail": "name is formatted into the SQL text",
    "fix": "conn.execute('SELECT * FROM users WHERE name = ?', (name,))",
    "file": "db.py",
    "line": SQL_LINE,
}
BUG = {
    "severity": "important",
    "title": "add subtracts",
    "detail": "add(2, 3) returns -1",
    "fix": "return a + b",
    "file": "calc.py",
    "line": 2,
}


def planted(tmp_path: Path, bug: bool = True) -> Path:
    """A repository with a planted bug (calc.py, tracked) and an SQL injection (db.py, new)."""
    repo = make_repo(tmp_path)
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(repo, "commit", "-qam", "add adds")
    if bug:
        (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "db.py").write_text(SQL_FILE)
    return repo


@pytest.mark.timeout(240)
def test_a_review_reports_the_planted_bugs_with_file_and_line_and_changes_nothing(
    home: Home, tmp_path: Path
) -> None:
    import jsonschema

    repo = planted(tmp_path)
    before = state(repo)
    script = {"models": {"scripted-evaluator": [judge(0.3, SQLI, BUG)] * 2 + [judge(0.2, SQLI)]}}
    with ScriptedModelServer(script) as server:
        ran = shoal("review", "--json", cwd=repo, env=env(server), timeout=120)
        sarif_run = shoal("review", "--format", "sarif", cwd=repo, env=env(server), timeout=60)
        secure = shoal("review", "--security", cwd=repo, env=env(server), timeout=60)
        asked = server.requests_for("scripted-evaluator")
    assert ran.returncode == 1, ran.stderr
    out = json.loads(ran.stdout)
    assert out["reviewed"] == "the uncommitted changes" and out["blockers"] == 1
    assert sorted(out["files"]) == ["calc.py", "db.py"]  # the untracked file is reviewed too
    where = {(f["file"], f["line"], f["severity"]) for f in out["findings"]}
    assert where == {("db.py", SQL_LINE, "blocker"), ("calc.py", 2, "important")}
    assert out["rubric"] == "code-review" and out["tests"] == "failed"  # the bug fails the test
    # The judge saw the actual diff, the checks and a rubric; it was asked for file and line.
    seen = json.dumps(asked[0]["messages"])
    assert "SELECT * FROM users" in seen and "return a - b" in seen and "FAILED" in seen
    assert "Rubric: code-review" in seen and "line (in the changed version)" in seen

    assert sarif_run.returncode == 1, sarif_run.stderr
    log = json.loads(sarif_run.stdout)
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(log)
    results = log["runs"][0]["results"]
    places = {
        (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["level"],
        )
        for r in results
    }
    assert places == {("db.py", SQL_LINE, "error"), ("calc.py", 2, "warning")}

    assert secure.returncode == 1
    assert "rubric security" in secure.stdout and f"db.py:{SQL_LINE}" in secure.stdout
    assert "SQL injection in find_user" in secure.stdout
    assert "Rubric: security" in json.dumps(asked[2]["messages"])
    assert state(repo) == before
    recorded = shoal("messages", "--kind", "review.result", "--json").stdout.splitlines()
    assert len(recorded) == 3 and all(json.loads(m)["sender"] for m in recorded)


@pytest.mark.timeout(240)
def test_a_clean_range_passes_and_its_checks_run_in_a_checkout_that_is_removed(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    git(repo, "branch", "-M", "main")
    git(repo, "checkout", "-qb", "feature")
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(repo, "commit", "-qam", "make add add")
    (repo / "calc.py").write_text("def add(a, b):\n    return a * b  # not reviewed\n")
    # A project's own rubric applies, as in the loop.
    rubric = repo / ".shoal" / "skills" / "code-review" / "SKILL.md"
    rubric.parent.mkdir(parents=True)
    rubric.write_text(
        "---\nname: code-review\ndescription: ours\nkind: evaluator\ncategories: [review]\n"
        "dimensions:\n  - name: house_style\n    weight: 1\n---\nJudge our house style.\n"
    )
    before = state(repo)
    script = {"models": {"scripted-evaluator": [judge(0.95)] * 3}}
    with ScriptedModelServer(script) as server:
        ranged = shoal("review", "HEAD~1..HEAD", "--json", cwd=repo, env=env(server), timeout=120)
        pr = shoal("review", "--pr-base", "main", cwd=repo, env=env(server), timeout=60)
        git(repo, "add", "calc.py")
        staged_before = state(repo)
        staged = shoal("review", "--staged", "--json", cwd=repo, env=env(server), timeout=60)
        asked = server.requests_for("scripted-evaluator")
    assert ranged.returncode == 0, ranged.stderr
    out = json.loads(ranged.stdout)
    assert out["findings"] == [] and out["files"] == ["calc.py"] and out["blockers"] == 0
    # Its checks ran on the commit (the test passes there), not on the work tree (a * b).
    assert out["tests"] == "passed", out["checks"]
    first = json.dumps(asked[0]["messages"])
    assert "return a + b" in first and "a * b" not in first and "make add add" in first
    assert "house_style" in first  # the project's rubric
    assert pr.returncode == 0 and "the changes since main" in pr.stdout
    assert staged.returncode == 0 and json.loads(staged.stdout)["reviewed"] == "the staged changes"
    assert "a * b" in json.dumps(asked[2]["messages"])
    assert not list((home.root / "worktrees").glob("review-*"))
    assert before["worktrees"] == staged_before["worktrees"] == state(repo)["worktrees"]
    assert before["refs"] == state(repo)["refs"] and state(repo) == staged_before


def test_nothing_to_review_asks_no_model(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    ran = shoal("review", cwd=repo, env={"SHOAL_EVALUATOR_MODEL": "openai/none"})
    assert ran.returncode == 0 and "nothing to review" in ran.stdout
    bad = shoal("review", "nosuch..HEAD", cwd=repo, env={"SHOAL_EVALUATOR_MODEL": "openai/x"})
    assert bad.returncode == 2 and "'nosuch' is not a commit" in bad.stderr
    both = shoal("review", "HEAD", "--staged", cwd=repo, env={"SHOAL_EVALUATOR_MODEL": "openai/x"})
    assert both.returncode == 2 and "give one of" in both.stderr


@pytest.mark.timeout(240)
def test_commit_check_finds_a_staged_secret_and_proposes_a_message(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "settings.py").write_text(f'REGION = "eu"\nAWS_KEY = "{AWS_KEY}"\n')
    git(repo, "add", "-A")
    message = "Make add add\n\nadd subtracted; the test caught it."
    script = {
        "models": {
            "scripted-evaluator": [judge(0.9), message, judge(0.9)],
            "scripted-small": ["Add the add function's fix\n\nBy the small model."],
        }
    }
    with ScriptedModelServer(script) as server:
        dirty = shoal("commit-check", "--json", cwd=repo, env=env(server), timeout=120)
        git(repo, "rm", "-q", "--cached", "settings.py")
        small = {**env(server), "SHOAL_SMALL_MODEL": "openai/scripted-small"}
        clean = shoal("commit-check", cwd=repo, env=small, timeout=120)
    assert dirty.returncode == 1, dirty.stderr
    out = json.loads(dirty.stdout)
    assert out["ready"] is False and out["message"] == message
    assert [(s["file"], s["line"], s["kind"]) for s in out["secrets"]] == [
        ("settings.py", 2, "AWS access key id")
    ]
    assert AWS_KEY not in dirty.stdout + dirty.stderr  # the report never spreads the secret
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "ready to commit" in clean.stdout and "By the small model." in clean.stdout
    nothing = shoal("commit-check", cwd=make_repo(tmp_path / "other"), env=env(server))
    assert nothing.returncode == 2 and "nothing is staged" in nothing.stderr


@pytest.mark.timeout(240)
def test_review_fix_hands_the_findings_to_a_task(home: Home, tmp_path: Path) -> None:
    repo = planted(tmp_path, bug=False)
    script = {
        "models": {
            "scripted-evaluator": [judge(0.3, SQLI), judge(0.95)],
            "scripted-planner": [call("submit_plan", steps=[{"title": "parameterise the query"}])],
            "scripted-executor": [call("finish", summary="left as is")],
        }
    }
    with ScriptedModelServer(script) as server:
        ran = shoal(
            "review",
            "--fix",
            "--json",
            cwd=repo,
            env={
                **env(server),
                "SHOAL_PLANNER_MODEL": "openai/scripted-planner",
                "SHOAL_EXECUTOR_MODEL": "openai/scripted-executor",
            },
            timeout=180,
        )
        executor = server.requests_for("scripted-executor")
    assert ran.returncode == 1, ran.stderr  # the review's blocker decides the exit code
    out = json.loads(ran.stdout)
    assert out["fix"]["status"] == "accepted"
    task = json.dumps(executor[0]["messages"])
    assert f"db.py:{SQL_LINE}: SQL injection in find_user" in task


def test_release_notes_group_the_commits(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    start = git(repo, "rev-parse", "HEAD").strip()
    for name, subject in [
        ("a.py", "feat(api): add the export endpoint"),
        ("b.py", "fix: off-by-one in paging"),
        ("README.md", "Describe the install"),
        ("tests/test_b.py", "More cases for paging"),
        ("c.py", "Refactor the loader"),
        ("d.py", "feat!: drop Python 3.10"),
    ]:
        (repo / name).write_text(subject)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", subject)
    ran = shoal("release-notes", f"{start[:8]}..HEAD", "--json", cwd=repo, check=True)
    groups = {g: [c["subject"] for c in cs] for g, cs in json.loads(ran.stdout)["groups"].items()}
    assert groups == {
        "Breaking changes": ["feat!: drop Python 3.10"],
        "Features": ["feat(api): add the export endpoint"],
        "Fixes": ["fix: off-by-one in paging"],
        "Refactoring": ["Refactor the loader"],
        "Documentation": ["Describe the install"],
        "Tests": ["More cases for paging"],
    }
    text = shoal("release-notes", f"{start[:8]}..", cwd=repo, check=True).stdout
    assert text.startswith(f"## Changes from {start[:8]} to HEAD")
    assert "### Fixes\n\n- fix: off-by-one in paging (" in text
    bad = shoal("release-notes", "v9..HEAD", cwd=repo)
    assert bad.returncode == 2 and "'v9' is not a commit" in bad.stderr


def test_secrets_are_found_in_added_lines_only_and_masked() -> None:
    token = "ghp_" + "a1B2" * 9
    diff = (
        "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,4 @@\n"
        f" keep = 1\n-old = '{AWS_KEY}'\n+TOKEN = '{token}'\n+password = 'changeme'\n"
        '+db_password = "s3cr3t-value-9"\n'
    )
    assert added_lines(diff)[0] == ("x.py", 2, f"TOKEN = '{token}'")
    found = scan(diff)
    assert [(s.line, s.kind) for s in found] == [(2, "GitHub token"), (4, "hard-coded secret")]
    assert all(token not in s.preview and s.preview.startswith(s.preview[:4]) for s in found)


def test_sarif_of_findings_without_a_place_is_still_valid(tmp_path: Path) -> None:
    import jsonschema

    result = ReviewResult(
        score=0.4,
        rubric="code-review",
        judge=Evaluation(
            score=0.4,
            findings=[
                Finding(severity="minor", title="no changelog entry"),
                Finding(severity="blocker", title="crash on empty input", file="a b.py"),
            ],
        ),
    )
    log = sarif(result, tmp_path, "HEAD", "0.1.0")
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(log)
    first, second = log["runs"][0]["results"]
    assert "locations" not in first and first["level"] == "note"
    place = second["locations"][0]["physicalLocation"]
    assert place["artifactLocation"]["uri"] == "a%20b.py" and "region" not in place
    assert os.path.isabs(log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"][7:])


def test_ranges_name_the_states_a_review_compares(tmp_path: Path) -> None:
    from shoal.evaluation.review import select

    repo = make_repo(tmp_path)
    root = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "branch", "-M", "main")
    git(repo, "checkout", "-qb", "topic")
    (repo / "t.py").write_text("t = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "topic work")
    topic = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    (repo / "m.py").write_text("m = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "main work")
    three = select(repo, "main...topic")  # topic against where it left main
    assert (three.base, three.head, three.commits) == (root, topic, [f"{topic[:7]} topic work"])
    one = select(repo, topic[:8])  # one commit: against its parent
    assert (one.base, one.head, one.at_work_tree) == (root, topic, False)
    first = select(repo, root)  # the first commit: against the empty tree
    assert first.base == git(repo, "hash-object", "-t", "tree", "/dev/null").strip()
