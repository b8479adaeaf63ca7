"""tmux: teammates in panes.

- :mod:`.server`: talking to one tmux server (the tmux CLI, a private socket or the user's).
- :mod:`.pane`: the program a pane runs: a real actor plus its live transcript and input.
- :mod:`.transcript`: rendering what a member does, with rich.

The launcher that puts members into panes is :mod:`shoal.launchers.tmux`.
"""
