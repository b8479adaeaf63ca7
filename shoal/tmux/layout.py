"""How a team's tmux session looks: its options, and where each member's pane goes.

Layouts a user picks at ``team up`` (``--layout``):

- ``main-vertical`` (the default): the lead's pane large on the left (40% of the
  width, the whole height), the other members stacked beside it;
- ``tiled``: all panes the same size, the lead's first (top left);
- ``windows``: a window per member, named after it, the lead's first.

In the first two a window holds up to :data:`PANES_PER_WINDOW` panes; more members
open the next window, and then each window is named after the members it holds.
The lead stays first in its window, and the layout is applied again whenever
tmux resizes the window (an attached terminal of another size), so a small
terminal still shows every member with its name in the pane's border.

Everything is set on shoal's own session and its windows, never globally: the
user's sessions keep their options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.actors.registry import base_role

if TYPE_CHECKING:
    from shoal.tmux.server import PaneInfo, TmuxServer

LAYOUTS = ("main-vertical", "tiled", "windows")
PANES_PER_WINDOW = 9
MAIN_WIDTH = "40%"
HISTORY_LINES = "20000"
# The pane's title is set by the member (its name and what it is doing).
BORDER = " #{?pane_active,#[bold],}#{pane_title}#[default] "


def session_options(session: str, home: str, hint: str) -> list[str]:
    """tmux commands (joined by ``;``) that set up a new team session."""
    target = f"={session}:"
    options = {
        "@shoal_home": home,
        "history-limit": HISTORY_LINES,
        "mouse": "on",  # a click chooses a pane; the wheel scrolls back
        "status-left": "[#{session_name}] ",
        "status-left-length": "40",
        "status-right": hint,
        "status-right-length": "80",
    }
    out: list[str] = []
    for option, value in options.items():
        out += ["set-option", "-t", target, option, value, ";"]
    return out


def return_clients(server: TmuxServer, session: str) -> None:
    """The session is about to end (``team down``): each terminal that switched to it from
    a session of the user's (``team attach`` inside tmux) goes back there, instead of
    closing. tmux's ``detach-on-destroy`` cannot say this: ``off`` picks the most recently
    active session, ``previous`` (3.4) the one before in alphabetical order. A terminal
    that attached from outside tmux has nowhere to go back to and detaches, as usual."""
    from shoal.tmux.server import TmuxError

    try:
        out = server.run(
            "list-clients", "-t", f"={session}", "-F", "#{client_tty}\t#{client_last_session}"
        )
    except TmuxError:
        return
    for line in out.splitlines():
        tty, _, last = line.partition("\t")
        if last and last != session and server.has_session(last):
            try:
                server.run("switch-client", "-c", tty, "-t", f"={last}")
            except TmuxError:  # the client went away meanwhile
                continue


def window_options(window: str, layout: str) -> list[str]:
    """tmux commands (joined by ``;``) for a new window of a team session."""
    options = {
        "remain-on-exit": "on",
        "pane-border-status": "top",
        "pane-border-format": BORDER,
        "main-pane-width": MAIN_WIDTH,
    }
    out: list[str] = []
    for option, value in options.items():
        out += ["set-option", "-w", "-t", window, option, value, ";"]
    if layout != "windows":
        again = f"select-layout -t {window} {layout}"
        out += ["set-hook", "-w", "-t", window, "window-resized", again, ";"]
    return out


def room(server: TmuxServer, session: str, layout: str) -> str | None:
    """The last pane of the session's last window with room for one more, if any."""
    if layout == "windows":
        return None
    counts: dict[str, int] = {}
    last: dict[str, str] = {}  # window -> its last pane (list-panes is in index order)
    for pane in server.panes():
        if pane.session == session:
            counts[pane.window_id] = counts.get(pane.window_id, 0) + 1
            last[pane.window_id] = pane.pane_id
    roomy = [w for w, n in counts.items() if n < PANES_PER_WINDOW]
    return last[roomy[-1]] if roomy else None


def arrange(server: TmuxServer, session: str, layout: str, team: str) -> None:
    """The lead first in its window, the layout applied, each window named."""
    windows: dict[str, list[PaneInfo]] = {}
    for pane in server.panes():
        if pane.session == session:
            windows.setdefault(pane.window_id, []).append(pane)
    commands: list[str] = []
    for window, panes in windows.items():
        lead = next((p for p in panes if p.member and base_role(p.member) == "lead"), None)
        if lead is not None and panes[0].pane_id != lead.pane_id:
            commands += ["swap-pane", "-d", "-s", lead.pane_id, "-t", panes[0].pane_id, ";"]
            panes = [lead, *(p for p in panes if p is not lead)]
        if layout != "windows":
            commands += ["select-layout", "-t", window, layout, ";"]
        name = window_name([p.member for p in panes], team, single=len(windows) == 1)
        commands += ["rename-window", "-t", window, name, ";"]
    if commands:
        server.run(*commands[:-1])


def window_name(members: list[str], team: str, *, single: bool) -> str:
    """A team's only window is the team's; otherwise a window is named after its members."""
    if single and len(members) > 1:
        return team
    names = [short(m) for m in members if m] or [team]
    return names[0] if len(names) == 1 else f"{names[0]}…{names[-1]}"


def short(member: str) -> str:
    """``executor@red-1`` -> ``executor-1``: the team is the session's name."""
    if "@" not in member:
        return member
    role, _, rest = member.partition("@")
    return f"{role}-{rest.rsplit('-', 1)[1]}" if "-" in rest else role
