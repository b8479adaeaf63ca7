"""What a chat turn shows in a terminal besides the answer: a spinner while the model works,
an edit's short diff, a command's output tail (a real tmux pane, a scripted model)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.test_chat import Pane, chat_env
from tests.test_loop import call, make_repo


@pytest.fixture
def screen() -> Iterator[Pane]:
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux")
    p = Pane({})
    yield p
    p.kill()


@pytest.mark.timeout(180)
def test_a_turn_shows_a_spinner_a_diff_and_a_commands_tail(
    home: Home, tmp_path: Path, screen: Pane
) -> None:
    repo = make_repo(tmp_path)
    script = {
        "models": {
            "scripted-chat": {
                "replies": [
                    # Long enough to be seen thinking before anything arrives.
                    {**call("read_file", path="calc.py"), "delay": 4},
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("shell", command="seq 11 20 | sed s/^/row-/"),
                    "Fixed and counted.",
                ],
                "repeat_last": False,
            }
        }
    }
    with ScriptedModelServer(script) as server:
        screen.env = chat_env(server)
        screen.run("chat", "--permission-mode", "bypass", cwd=repo)
        screen.prompt(1)
        screen.type("fix add and count")
        assert "thinking…" in screen.wait("thinking…")  # before the first tool call came
        shown = screen.wait("Fixed and counted.")
        screen.prompt(2)
    edit = shown.index("edit_file calc.py")
    # The edit's diff, under its line: the old line red, the new one green.
    assert shown.index("│ -a - b") > edit
    assert shown.index("│ +a + b") > shown.index("│ -a - b")
    # The command's tail: its last lines and exit code, not the whole output.
    assert "│ row-20" in shown and "│ exit code: 0" in shown
    assert "row-11" not in shown
    assert "return a + b" in (repo / "calc.py").read_text()
