"""Learning end to end: the learner's memory reaches later prompts; mined skills get proposed."""

from __future__ import annotations

import json
import time
from pathlib import Path

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.test_loop import call, make_repo, model_env, plan, verdict

BLOCKER = {
    "severity": "blocker",
    "title": "add(2, 3) still returns -1",
    "detail": "the subtraction is still there",
    "fix": "return a + b",
}


def planner_prompt(request: dict) -> str:
    return json.dumps(request["messages"])


def wait_for_learnings(timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [
            json.loads(line)
            for line in shoal("memory", "list", "--json", check=True).stdout.splitlines()
        ]
        if rows:
            return rows
        time.sleep(0.3)
    raise AssertionError("no learning was stored")


def test_a_learning_reaches_a_similar_task_and_not_an_unrelated_one(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [call("finish", summary="looked at it")],
                "scripted-evaluator": [verdict(0.2, BLOCKER)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        env = model_env(server)
        a = shoal(
            "run",
            "fix the add function in calc.py",
            "-C",
            str(repo),
            "-i",
            "1",
            "--json",
            env=env,
            timeout=120,
        )
        assert json.loads(a.stdout)["status"] == "unaccepted", a.stderr
        learnings = wait_for_learnings()
        assert any("add(2, 3) still returns -1" in row["content"] for row in learnings)
        shoal(
            "run",
            "fix the add function in calc.py so its test passes",
            "-C",
            str(repo),
            "-i",
            "1",
            "--json",
            env=env,
            timeout=120,
        )
        shoal(
            "run",
            "write installation instructions in the README",
            "-C",
            str(repo),
            "-i",
            "1",
            "--json",
            env=env,
            timeout=120,
        )
        prompts = [planner_prompt(r) for r in server.requests_for("scripted-planner")]
    assert len(prompts) == 3
    assert "add(2, 3) still returns -1" not in prompts[0]
    assert "Background from past runs" in prompts[1] and "add(2, 3) still returns -1" in prompts[1]
    assert "add(2, 3) still returns -1" not in prompts[2]


def test_memory_search_and_forget(home: Home, tmp_path: Path) -> None:
    from shoal import daemon
    from shoal.messages.memory import MemoryRemember, NewLearning

    daemon.start(home)
    daemon.request(
        home,
        MemoryRemember(
            learnings=[
                NewLearning(
                    kind="convention",
                    content="Run pytest with -x in this repository.",
                    confidence=0.8,
                ),
                NewLearning(
                    kind="pitfall", content="The CSV exporter drops the header row.", confidence=0.6
                ),
            ]
        ),
    )
    again = daemon.request(
        home,
        MemoryRemember(
            learnings=[
                NewLearning(
                    kind="convention",
                    content="Run pytest with -x in this repository.",
                    confidence=0.7,
                )
            ]
        ),
    )
    assert (again.created, again.reinforced) == (0, 1)
    found = [
        json.loads(line)
        for line in shoal(
            "memory", "search", "how do I run pytest", "--json", check=True
        ).stdout.splitlines()
    ]
    assert found[0]["content"].startswith("Run pytest")
    assert shoal("memory", "forget", found[0]["id"][:20], check=True).returncode == 0
    listed = shoal("memory", "list", "--json", check=True).stdout
    assert "Run pytest" not in listed and "CSV exporter" in listed
    daemon.stop(home)
    offline = shoal("memory", "search", "CSV header", "--json", check=True).stdout
    assert "CSV exporter" in offline  # read-only, straight from the file


def test_similar_tasks_become_a_proposed_skill_that_later_tasks_use(
    home: Home, tmp_path: Path
) -> None:
    from shoal.client import query as read

    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [call("finish", summary="done")],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    similar = [
        "fix the failing add test in calc.py",
        "fix the failing add test in calc.py again",
        "please fix the failing add test in calc.py",
        "fix the failing add test in calc.py now",
    ]
    with ScriptedModelServer(script) as server:
        env = model_env(server)
        for description in similar[:3]:
            shoal("run", description, "-C", str(repo), "-i", "1", env=env, timeout=120)
        mined = json.loads(shoal("learn", "--mine", "--json", env=env, check=True).stdout)
        assert any(p["kind"] == "task_cluster" and p["samples"] >= 3 for p in mined["patterns"])
        assert len(mined["proposals"]) == 1
        name = mined["proposals"][0]
        assert (home.root / "skills" / "proposed" / name / "SKILL.md").is_file()
        listed = shoal("learn", "list", "--json", check=True).stdout
        assert name in listed
        shown = shoal("learn", "show", name, check=True).stdout
        assert shown == (home.root / "skills" / "proposed" / name / "SKILL.md").read_text()
        shoal("learn", "approve", name, check=True)
        assert (home.root / "skills" / name / "SKILL.md").is_file()
        again = json.loads(shoal("learn", "--mine", "--json", env=env, check=True).stdout)
        assert again["proposals"] == []  # never proposed twice
        shoal("run", similar[3], "-C", str(repo), "-i", "1", env=env, timeout=120)
        prompts = [planner_prompt(r) for r in server.requests_for("scripted-planner")]
    assert name not in prompts[2] and name in prompts[3]
    samples = {r[0]: r[1] for r in read(home, "skills.effectiveness").rows}
    assert samples[name] == 1  # credited for the one task that was shown it


def test_the_small_model_adds_its_own_learnings(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [call("finish", summary="done")],
                "scripted-evaluator": [verdict(0.9)],
                "scripted-small": [
                    call(
                        "submit_learnings",
                        learnings=[
                            {
                                "type": "convention",
                                "content": "calc.py keeps one function per operation.",
                                "confidence": 0.7,
                            },
                            {"type": "nonsense"},  # malformed: skipped, the other still stored
                        ],
                    )
                ],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        env = {**model_env(server), "SHOAL_SMALL_MODEL": "openai/scripted-small"}
        shoal("run", "tidy calc.py", "-C", str(repo), "-i", "1", env=env, timeout=120)
        rows = wait_for_learnings()
    assert [(r["kind"], r["content"]) for r in rows] == [
        ("convention", "calc.py keeps one function per operation.")
    ]


def test_the_executor_loads_a_selected_skill_on_demand(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    {
                        "tool_calls": [
                            {"name": "get_skill", "arguments": {"name": "python-testing"}}
                        ]
                    },
                    call("finish", summary="read the skill"),
                ],
                "scripted-evaluator": [verdict(0.9)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        shoal(
            "run",
            "fix the failing pytest test in calc.py",
            "-C",
            str(repo),
            "-i",
            "1",
            env=model_env(server),
            timeout=120,
        )
        executor = server.requests_for("scripted-executor")
    first = json.dumps(executor[0]["messages"])
    assert "python-testing" in first and "get_skill" in json.dumps(executor[0]["tools"])
    loaded = executor[1]["messages"][-1]
    assert loaded["role"] == "tool" and "## " in loaded["content"] and "pytest" in loaded["content"]


def test_mining_every_nth_task_counts_tasks_across_orchestrator_restarts(
    home: Home, tmp_path: Path
) -> None:
    from shoal.client import query as read

    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan(), plan()],
                "scripted-executor": [call("finish", summary="done")] * 2,
                "scripted-evaluator": [verdict(0.9)] * 2,
            }
        }
    )
    with ScriptedModelServer(script) as server:
        env = {**model_env(server), "SHOAL_MINE_EVERY": "2"}
        shoal("run", "fix the add test", "-C", str(repo), "-i", "1", env=env, timeout=120)
        # The orchestrator exits (as it does when idle) between the two tasks.
        shoal("orchestrator", "stop", env=env, check=True)
        shoal("run", "fix the add test again", "-C", str(repo), "-i", "1", env=env, timeout=120)

        def mined() -> bool:
            return bool(read(home, "messages.recent", {"kind": "mine.request", "limit": 5}).rows)

        wait_for(mined, timeout=30, what="mining after the second task of the history")


def test_a_dismissed_proposal_leaves_the_list_and_is_never_proposed_again(home: Home) -> None:
    from types import SimpleNamespace

    from shoal.actors.pattern_miner import _existing, skill_name

    summary = "fix the failing add test in calc.py"
    name = skill_name(summary)
    proposed = home.root / "skills" / "proposed" / name
    proposed.mkdir(parents=True)
    (proposed / "SKILL.md").write_text(f"---\nname: {name}\ndescription: d\n---\nbody\n")
    assert shoal("learn", "dismiss", name, check=True).stdout.strip() == f"dismissed {name}"
    dismissed = home.root / "skills" / "dismissed" / name / "SKILL.md"
    assert dismissed.is_file() and not proposed.exists()
    assert shoal("learn", "list", "--json", check=True).stdout == ""
    missing = shoal("learn", "show", name)
    assert missing.returncode == 1 and "no proposed skill" in missing.stderr
    # What the miner checks before proposing: a dismissed skill of that name counts.
    assert _existing(home.root / "skills", SimpleNamespace(summary=summary)) == name  # type: ignore[arg-type]
