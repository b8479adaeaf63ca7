"""A team's session without the prefix key: every member visible and named at 200x50 and
80x24, a click chooses a pane, prompts where typing does something, the layouts, and
``team down`` handing an attached terminal back to the user's own session. On a
private tmux server; what a user sees is a client's screen, captured from the pane it
runs in."""

from __future__ import annotations

import shutil

import pytest

from shoal.paths import Home
from shoal.tmux.person import PROMPT
from tests.conftest import shoal, wait_for
from tests.team_screens import Tmux, shoal_command
from tests.team_screens import tmux as tmux  # a fixture

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

FIVE = "planner,executor*3,evaluator"
MEMBERS = [
    "lead@blue-1",
    "planner@blue-1",
    "executor@blue-1",
    "executor@blue-2",
    "executor@blue-3",
    "evaluator@blue-1",
]


def _geometry(tmux: Tmux, session: str) -> dict[str, tuple[int, int, int, int]]:
    """Each member's pane as (left, top, width, height)."""
    fmt = "#{@shoal_member} #{pane_left} #{pane_top} #{pane_width} #{pane_height}"
    out = tmux("list-panes", "-s", "-t", f"={session}:", "-F", fmt)
    return {m: tuple(map(int, rest)) for m, *rest in (line.split() for line in out.splitlines())}


def _click(tmux: Tmux, viewer: str, x: int, y: int) -> None:
    """A left click at column ``x``, row ``y`` (from 0) of the terminal in ``viewer``,
    sent as the terminal sends it (SGR mouse reporting: press, then release)."""
    tmux("send-keys", "-t", viewer, "-l", f"\x1b[<0;{x + 1};{y + 1}M\x1b[<0;{x + 1};{y + 1}m")


def _active(tmux: Tmux, session: str) -> str:
    fmt = "#{pane_active} #{@shoal_member}"
    out = tmux("list-panes", "-t", f"={session}:", "-F", fmt)
    return next(line.split()[1] for line in out.splitlines() if line.startswith("1 "))


@needs_tmux
@pytest.mark.timeout(300)
def test_five_members_at_200x50_and_80x24_are_all_visible_named_and_clickable(
    home: Home,
    tmux: Tmux,
) -> None:
    up = shoal("team", "up", "blue", "--members", FIVE, env={"SHOAL_PRELOAD": ""})
    assert up.returncode == 0, up.stderr
    panes = tmux.member_panes("shoal-blue")
    assert sorted(panes) == sorted(MEMBERS)
    for size in ((200, 50), (80, 24)):
        viewer = tmux.watch("shoal-blue", *size, name=f"viewer{size[0]}")
        wait_for(
            lambda s=size: (
                max(x + w for x, _, w, _ in _geometry(tmux, "shoal-blue").values()) == s[0]
            ),
            what=f"the window at {size}",
        )
        shown = tmux.screen(viewer, history=False)
        for member in MEMBERS:  # each in the one window, its name in its border
            assert f"{member} · idle" in shown, (size, shown)
        assert "[shoal-blue]" in shown  # the session's name whole in the status bar
        geometry = _geometry(tmux, "shoal-blue")
        lead = geometry["lead@blue-1"]
        assert lead[:2] == (0, 1) and lead[3] == size[1] - 2  # first, left, whole height
        assert all(g[2] < lead[2] + size[0] for g in geometry.values())
        assert all(g[3] >= 3 for g in geometry.values()), geometry  # a line and the prompt
        # A click on a member's pane chooses it (no prefix key).
        for member in ("executor@blue-2", "lead@blue-1", "evaluator@blue-1"):
            left, top, width, height = geometry[member]
            _click(tmux, viewer, left + width // 2, top + height // 2)
            wait_for(lambda m=member: _active(tmux, "shoal-blue") == m, what=f"{member} chosen")
        tmux("kill-session", "-t", viewer)

    # A prompt where typing does something; a one-line answer where it does not.
    executor, planner = panes["executor@blue-1"], panes["planner@blue-1"]
    assert "waiting for work" in tmux.screen(executor)  # an idle pane is not blank
    assert (
        tmux.screen(executor).rstrip().splitlines()[-1].startswith(PROMPT + "type a line to steer")
    )
    watching = tmux.screen(planner).rstrip().splitlines()[-1]
    assert watching.startswith("watch only: type into an executor")
    tmux.type(planner, "hello planner")
    tmux.wait(planner, "planner@blue-1 takes no typed lines: type into an executor's pane")
    lead = panes["lead@blue-1"]
    tmux.type(lead, "@executor-2 LEAD-SAYS keep it small")
    tmux.wait(lead, "→ executor@blue-2: LEAD-SAYS keep it small")
    tmux.wait(panes["executor@blue-2"], "(person): LEAD-SAYS keep it small")
    tmux.type(lead, "@executor-9 hello")
    tmux.wait(lead, "no member executor-9 in blue")


@needs_tmux
@pytest.mark.timeout(300)
def test_layouts_and_team_down_hands_the_terminal_back_to_the_users_session(
    home: Home,
    tmux: Tmux,
) -> None:
    env = {"SHOAL_PRELOAD": ""}
    up = shoal("team", "up", "win", "--members", "executor*2", "--layout", "windows", env=env)
    assert up.returncode == 0, up.stderr
    names = tmux("list-windows", "-t", "=shoal-win:", "-F", "#{window_name}").split()
    assert names == ["lead-1", "executor-1", "executor-2"]  # one a member, named after it
    up = shoal("team", "up", "grid", "--members", "executor*3", "--layout", "tiled", env=env)
    assert up.returncode == 0, up.stderr
    grid = _geometry(tmux, "shoal-grid")
    assert grid["lead@grid-1"][:2] == (0, 1)  # first, top left
    assert len({g[2] for g in grid.values()}) <= 2  # all (about) the same size
    bad = shoal("team", "up", "bad", "--members", "executor", "--layout", "spiral")
    assert bad.returncode == 2 and "--layout 'spiral'" in bad.stderr
    # Nine panes to a window; then each window is named after the members it holds.
    up = shoal("team", "up", "many", "--members", "echo*10", "--layout", "tiled", env=env)
    assert up.returncode == 0, up.stderr
    fmt = "#{window_name} #{window_panes}"
    assert tmux("list-windows", "-t", "=shoal-many:", "-F", fmt).split("\n")[:2] == [
        "echo-1…echo-9 9",
        "echo-10 1",
    ]
    # The session's options are its own: the user's other sessions keep theirs.
    assert tmux("show-options", "-gv", "mouse").strip() == "off"
    assert tmux("show-options", "-v", "-t", "=shoal-many:", "mouse").strip() == "on"

    # The user's own session, in a terminal; from inside it they attach to the team, then
    # take the team down: the terminal is back in their session, not closed.
    tmux("new-session", "-d", "-s", "mine", "-x", "120", "-y", "40")
    viewer = tmux.watch("mine", 120, 40)
    tmux.type("=mine:", shoal_command(home, "team", "attach", "win"))
    wait_for(lambda: tmux.clients() == ["shoal-win"], timeout=30, what="the switch to the team")
    down = shoal("team", "down", "win")
    assert down.returncode == 0, down.stderr
    wait_for(lambda: tmux.clients() == ["mine"], timeout=30, what="the terminal back in mine")
    assert "mine" in tmux("list-sessions", "-F", "#{session_name}").split()
    tmux("kill-session", "-t", viewer)
