"""Approvals where a person is: a member's call that needs approval asks in its pane (and in
the lead's), on a private tmux server with a scripted model; answers are typed keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal
from tests.team_screens import Tmux, start
from tests.team_screens import tmux as tmux  # a fixture
from tests.test_loop import call, make_repo, model_env, plan, verdict

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

ASKED = "allow shell? (y)es (n)o (a)lways"


def _said(request: dict) -> str:
    return json.dumps(request["messages"])


@needs_tmux
@pytest.mark.timeout(300)
def test_a_members_shell_call_asks_in_its_pane_and_in_the_leads(
    home: Home,
    tmux: Tmux,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("shell", command="echo approved-$((6*7))"),
                    call("shell", command="echo declined-$((6*7)) > made.txt"),
                    call("shell", command="echo again-$((6*7))"),
                    call("shell", command="echo always-$((6*7))"),
                    call("git", args=["add", "-A"]),  # nobody answers: refused in time
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("finish", summary="asked three times"),
                ],
                "scripted-evaluator": [verdict(0.95)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        env = {**model_env(server), "SHOAL_PRELOAD": "", "SHOAL_APPROVAL_TIMEOUT": "20"}
        up = shoal("team", "up", "red", "--members", "executor", "--json", env=env)
        assert up.returncode == 0, up.stderr
        panes = tmux.member_panes("shoal-red")
        assert sorted(panes) == ["executor@red-1", "lead@red-1"]  # the lead came with it
        member, lead = panes["executor@red-1"], panes["lead@red-1"]
        tmux.watch("shoal-red")  # a person attached to the team's session

        run = start(["run", "fix add", "-C", str(repo), "--team", "red"], env)
        try:
            # The first call asks in the member's pane: the input line is the question.
            shown = tmux.wait(member, ASKED)
            assert "$ echo approved-$((6*7)) needs your approval" in shown
            assert shown.rstrip().splitlines()[-1].startswith(ASKED)  # the input line
            # Its title (in the pane's border) says what it is doing.
            title = tmux("display-message", "-p", "-t", member, "#{pane_title}").strip()
            assert title.startswith("executor@red-1 · ") and title.endswith(" · iteration 1")
            assert "executor@red-1 asks: $ echo approved" in tmux.wait(lead, "asks:")
            tmux.type(member, "y")
            # It ran: its output's tail shows under the call, and the lead's pane is told.
            tmux.wait(member, "approved-42")
            tmux.wait(lead, "allowed in executor@red-1's pane")

            # The second: "n" in the member's pane declines it, with the reason shown.
            tmux.wait(member, "$ echo declined-$((6*7)) > made.txt needs your approval")
            tmux.type(member, "n")
            tmux.wait(member, "✗ $ echo declined-$((6*7)) > made.txt: declined by you")
            tmux.wait(member, "✗ the user declined shell echo declined")
            tmux.wait(lead, "declined in executor@red-1's pane")

            # The third is answered in the lead's pane: "a" allows shell for the rest of the
            # task, so the fourth does not ask.
            tmux.wait(lead, "asks: $ echo again-$((6*7))")
            tmux.type(lead, "a")
            tmux.wait(member, "allowed in lead@red-1's pane")
            # A git write asks too (shell is allowed now, git is not); nobody answers it.
            tmux.wait(member, "git add -A needs your approval")
            tmux.wait(member, "✗ no answer in 20 s: refused")
            tmux.wait(lead, "declined (no answer in time)")
            out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
    assert out.startswith("accepted:"), (out, err)
    requests = server.requests_for("scripted-executor")
    assert "approved-42" in _said(requests[1])  # the tool's output reached the model
    assert "the user declined shell" in _said(requests[2])
    assert not (repo / "made.txt").exists()  # the declined command never ran
    assert "always-42" in _said(requests[4])
    assert "nobody answered within 20 s whether git may run" in _said(requests[5])
    final = tmux.screen(member)
    assert final.count("needs your approval") == 4  # never asked about the fourth call
    assert "✗ the user declined shell" in err  # the reason on run's progress output too
