"""``shoal demo``: the whole loop on a small broken repository, with a scripted model.

No API key is needed: a scripted, OpenAI-compatible model server runs inside
this command and every role talks to it through litellm over HTTP, exactly as
it would talk to a provider. The script is fixed: the first attempt is judged
insufficient (a blocker finding), the second fixes the bug and is accepted.
The repository's own test really runs, fails before and passes after, with
the Python on PATH: it is a unittest test, so it needs no pytest (pytest runs it
too where it is installed).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import typer

from shoal.cli.output import console
from shoal.messages.base import to_dict

BUGGY = '''def average(numbers):
    """The mean of a non-empty list of numbers."""
    return sum(numbers) / (len(numbers) + 1)
'''
TEST = """import unittest

from stats import average


class AverageTest(unittest.TestCase):
    def test_average(self):
        self.assertEqual(average([2, 4, 6]), 4)
"""
FINDING = {
    "severity": "blocker",
    "title": "average([]) now returns None but average([2, 4, 6]) is still 3.0",
    "detail": "The divisor is still len(numbers) + 1, so the test still fails.",
    "fix": "Divide by len(numbers).",
}


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def demo_script() -> dict[str, Any]:
    """What the scripted planner, executor and evaluator answer, in order."""
    return {
        "models": {
            "scripted-planner": [
                _call(
                    "submit_plan",
                    steps=[
                        {
                            "title": "Read stats.py and its test",
                            "detail": "Find why average is wrong.",
                        },
                        {"title": "Fix the divisor", "detail": "The mean divides by the count."},
                    ],
                )
            ],
            "scripted-executor": [
                _call("read_file", path="stats.py"),
                _call(
                    "edit_file",
                    path="stats.py",
                    old_string="    return sum(numbers)",
                    new_string="    if not numbers:\n        return None\n    return sum(numbers)",
                ),
                _call("finish", summary="Guarded against an empty list."),
                _call("read_file", path="stats.py"),
                _call(
                    "edit_file",
                    path="stats.py",
                    old_string="(len(numbers) + 1)",
                    new_string="len(numbers)",
                ),
                _call("finish", summary="average now divides by len(numbers); the test passes."),
            ],
            "scripted-evaluator": [
                _call(
                    "submit_evaluation",
                    score=0.3,
                    findings=[FINDING],
                    dimensions={"correctness": 0.2, "completeness": 0.3},
                ),
                _call(
                    "submit_evaluation",
                    score=0.95,
                    findings=[],
                    dimensions={"correctness": 1.0, "completeness": 0.9},
                ),
            ],
        }
    }


def make_repo(root: Path) -> Path:
    repo = root / "demo-repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "stats.py").write_text(BUGGY)
    (repo / "tests" / "test_stats.py").write_text(TEST)
    git = ["git", "-C", str(repo), "-c", "user.name=shoal demo", "-c", "user.email=demo@shoal"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "a bug to fix"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return repo


def _run_tests(repo: Path) -> tuple[bool, str]:
    """Run the repository's tests as the evaluator does: passed, and a line saying how."""
    from shoal.cli.check_view import check_line
    from shoal.evaluation import checks

    results = [checks.run(c, 120) for c in checks.find(repo) if c.kind == "test"]
    passed = bool(results) and all(r.status == "passed" for r in results)
    line = "; ".join(check_line(r.model_dump()) for r in results) or "no tests found"
    return passed, line


def demo(
    directory: Path | None = typer.Option(
        None,
        "--dir",
        help="Where to make the demo repository (default: a new temporary directory).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fix a bug in a small repository: plan, execute, evaluate, refine (scripted model)."""
    from shoal.cli.output import print_json
    from shoal.cli.run import submit_and_follow
    from shoal.llm.script import Script
    from shoal.llm.scripted import ScriptedModelServer
    from shoal.messages.tasks import ModelChoice, TaskOptions, TaskSubmit
    from shoal.paths import Home

    out = console(stderr=True)
    root = Path(tempfile.mkdtemp(prefix="shoal-demo-")) if directory is None else directory
    repo = make_repo(root.absolute())
    out.print(
        "[bold]shoal demo[/bold]: the model is [bold]scripted[/bold] (no API key, no "
        "network): a local OpenAI-compatible server answers every role from a fixed "
        "script, through litellm, as a real provider would."
    )
    _, before = _run_tests(repo)
    out.print(f"repository: {repo}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"its tests before: {before}", markup=False, highlight=False, soft_wrap=True)
    with ScriptedModelServer(Script.model_validate(demo_script())) as server:
        models = {
            role: ModelChoice(model=f"openai/scripted-{role}", base_url=server.base_url)
            for role in ("planner", "executor", "evaluator")
        }
        submit = TaskSubmit(
            description="Make the failing test in tests/test_stats.py pass.",
            cwd=str(repo),
            options=TaskOptions(models=models),
        )
        done = submit_and_follow(Home.resolve(), submit, quiet=json_out)
    passing, after = _run_tests(repo)
    if json_out:
        print_json(
            {
                **to_dict(done),
                "tests_pass": passing,
                "tests_after": after,
                "repository": str(repo),
            }
        )
    else:
        diff = subprocess.run(["git", "-C", str(repo), "diff"], capture_output=True, text=True)
        out.print(
            f"[bold]{done.status}[/bold] after {done.iterations} iterations, score "
            f"{done.score:.2f} ({done.decision}); tests pass now: {passing}",
            soft_wrap=True,
        )
        out.print(f"its tests now: {after}", markup=False, highlight=False, soft_wrap=True)
        console().print(diff.stdout.rstrip())
        out.print(f"every step is in DuckDB: shoal show {done.task_id}")
    raise typer.Exit(0 if done.status == "accepted" and passing else 1)
