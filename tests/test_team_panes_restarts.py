"""Restarts told: a member killed again and again keeps its pane's history, and each time
the pane says how it died and the how-manyth restart it is (a private tmux server)."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.team_screens import Tmux, team_status
from tests.team_screens import tmux as tmux  # a fixture

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


@needs_tmux
@pytest.mark.timeout(180)
def test_each_restart_is_one_line_naming_the_signal_and_the_count(
    home: Home,
    tmux: Tmux,
) -> None:
    up = shoal("team", "up", "zz", "--members", "echo", env={"SHOAL_PRELOAD": ""})
    assert up.returncode == 0, up.stderr
    pane = tmux.member_panes("shoal-zz")["echo@zz-1"]
    for n in (1, 2, 3):
        pid = team_status("zz")["members"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        line = f"echo@zz-1 restarted after SIGKILL (restart {n}); nothing to take up again"
        shown = tmux.wait(pane, line)
        wait_for(lambda p=pid: team_status("zz")["members"][0]["pid"] not in (None, p))
    # The history is all there, in order: the first start's lines, then each restart.
    starts = [i for i, text in enumerate(shown.splitlines()) if "waiting for work" in text]
    restarts = [i for i, text in enumerate(shown.splitlines()) if "restarted after" in text]
    assert len(starts) == 4 and len(restarts) == 3, shown
    assert starts[0] < restarts[0] < starts[1] < restarts[1] < starts[2] < restarts[2], shown
    assert team_status("zz")["members"][0]["restarts"] == 3
