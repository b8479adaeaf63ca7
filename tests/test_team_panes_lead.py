"""A team run watched in tmux: the lead's pane tells the run's story, each member's pane its
own subtask, and ``shoal team run`` prints the same milestones (private tmux server,
scripted model, capture-pane)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal
from tests.team_screens import Tmux
from tests.team_screens import tmux as tmux  # a fixture
from tests.test_loop import call, model_env, pytest_passes, verdict
from tests.test_team_run import FILES, fix, subtask
from tests.test_team_run import make_repo as make_team_repo

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

IDS = {"calc.py": "fix-add", "strs.py": "fix-shout", "nums.py": "fix-double"}
NOTE = "NOTE-5d1 the add fix is one character"


def _routes() -> dict[str, list[dict]]:
    routes = {f"subtask {IDS[name]} ": fix(name, old, new) for name, (_, old, new) in FILES.items()}
    # One member writes to the lead; another's shell call finds nobody attached to approve it.
    routes["subtask fix-add "].insert(0, call("send_message", to="lead", text=NOTE))
    routes["subtask fix-shout "].insert(0, call("shell", command="echo unattended-$((6*7))"))
    return routes


@needs_tmux
@pytest.mark.timeout(300)
def test_the_leads_pane_and_team_runs_output_tell_who_did_what(
    home: Home,
    tmux: Tmux,
    tmp_path: Path,
) -> None:
    repo = make_team_repo(tmp_path)
    plan = call(
        "submit_plan",
        steps=[{"title": "fix each function"}],
        subtasks=[subtask(IDS[name], name) for name in FILES],
    )
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan],
                "scripted-executor": {"routes": _routes()},
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        env = {**model_env(server), "SHOAL_PRELOAD": ""}
        up = shoal("team", "up", "red", "--members", "planner,executor*3,evaluator", env=env)
        assert up.returncode == 0, up.stderr
        run = shoal(
            "team", "run", "fix the three bugs", "-C", str(repo), "--size", "3",
            "--team", "red", env=env, timeout=240,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("accepted:") and pytest_passes(repo)
    panes = tmux.member_panes("shoal-red")
    lead = tmux.wait(panes["lead@red-1"], "■ verdict on team run")

    # The plan with its subtasks, who took each, each merge, the message, the verdict.
    assert "plan: 3 subtask(s), up to 3 at once" in lead
    taken = dict(re.findall(r"→ (fix-\w+) taken by (executor@red-\d)", lead))
    assert sorted(taken) == sorted(IDS.values()), lead
    for sid in IDS.values():
        assert f"⇉ {sid} merged" in lead
    assert f"✉ {taken['fix-add']} → lead (fix-add): {NOTE}" in lead
    assert re.search(r"■ verdict on team run \w+: accepted, score [\d.]+ \(quality\); 3 of 3", lead)

    # team run's progress on stderr: the same milestones.
    err = run.stderr
    for sid, member in taken.items():
        assert f"subtask {sid}: fix " in err and f"{sid} → {member} (iteration 1)" in err
        assert f"{sid} merged" in err
    assert f"✉ {taken['fix-add']} → lead: {NOTE}" in err
    assert re.search(
        r"verdict: accepted, score [\d.]+ \(quality\); 3 of 3 subtask\(s\) merged", err
    )

    # Each subtask's work, start to restore, shows in the pane of the member that did it.
    for sid, member in taken.items():
        own = tmux.screen(panes[member])
        assert re.search(rf"▶ {sid} \(task \w+\) iteration 1: ", own), own
        assert re.search(rf"◀ {sid} \(task \w+\) restored", own), own
        others = [s for s in IDS.values() if s != sid]
        assert not any(f"▶ {other} (task" in own for other in others), own

    # Nobody was attached: the shell call was refused, the reason in the pane and on stderr.
    reason = "nobody is attached to the team's tmux session"
    assert reason in tmux.screen(panes[taken["fix-shout"]])
    member = taken["fix-shout"]
    refused = f'fix-shout: {member}: shell {{"command": "echo unattended-$((6*7))"}} ✗ shell'
    assert f"{refused} needs approval and {reason}" in err
    assert f"✗ {refused} needs approval" in lead  # the lead's pane tells it too

    # The planner's pane shows the subtasks it planned, not only its steps.
    planned = tmux.screen(panes["planner@red-1"])
    assert "◀ plan: 1 step(s), 3 subtask(s)" in planned, planned
    assert all(f"· {sid}: fix " in planned for sid in IDS.values()), planned

    # The evaluator's lines name what they judged.
    judged = tmux.screen(panes["evaluator@red-1"])
    for sid in IDS.values():
        assert re.search(rf"▶ evaluate {sid} \(task \w+\) iteration 1", judged), judged
        assert re.search(rf"◀ {sid} \(task \w+\) iteration 1: score 0.95", judged), judged
