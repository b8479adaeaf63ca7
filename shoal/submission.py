"""A ``task.submit`` built from what a client asked, the same way for every client.

``shoal run`` (and ``shoal team run``), the HTTP API's ``POST /tasks`` and
``shoal mcp serve``'s ``run_task`` all check the work tree and load the task's
options here, so a task runs the same whichever way it came in; each client
only words the failure its own way (a CLI error, a 422, a tool error).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.mailbox.envelope import TaskSubmit
    from shoal.paths import Home

TEAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


class SubmitError(ValueError):
    """The task cannot be submitted as asked; the message says why in one line."""


def is_git_repo(path: Path) -> bool:
    """Inside a git work tree (a GIT_DIR in the environment does not count); a missing
    git is a SubmitError, in one line."""
    from shoal.workspace.git import WorkspaceError, toplevel

    try:
        toplevel(path)
    except WorkspaceError as exc:
        if "not installed" in str(exc):
            raise SubmitError(str(exc)) from None
        return False
    return True


def task_submit(
    home: Home,
    description: str,
    cwd: Path,
    flags: dict[str, Any],
    *,
    team: str | None = None,
    no_model: str,
    virtual_env: str | None = None,
) -> TaskSubmit:
    """The task as the orchestrator takes it; SubmitError says what is wrong with the request.

    ``flags`` are the options the client set (None: unset), over the environment and the
    config files (``shoal.config.load``, whose SettingsError passes through); ``check``
    (commands) and ``no_checks`` among them choose the project's checks. ``no_model``
    tells this client's user how to configure a model when none is. ``virtual_env`` is
    the submitting shell's ``VIRTUAL_ENV`` (a client on the user's side passes it).
    """
    from shoal import config
    from shoal.mailbox.envelope import TaskSubmit

    if not description.strip():
        raise SubmitError("the description is empty; say what the task is")
    workdir = cwd.resolve()
    if not workdir.is_dir():
        raise SubmitError(f"{workdir} is not a directory")
    if not is_git_repo(workdir):
        raise SubmitError(
            f"{workdir} is not a git repository; shoal keeps each iteration in git "
            "(run `git init` there first)"
        )
    flags = dict(flags)
    checks = _checks(home, workdir, flags.pop("check", None), flags.pop("no_checks", False))
    options = config.load(home, workdir, flags).task_options()
    options = options.model_copy(update={**checks, "virtual_env": virtual_env or None})
    if not options.models:
        raise SubmitError(f"no model configured: {no_model}")
    if team is not None:
        if not TEAM_NAME.fullmatch(team):
            raise SubmitError(f"{team!r} is not a team name (letters, digits, - and _)")
        options = options.model_copy(update={"team": team})
    return TaskSubmit(description=description, cwd=str(workdir), options=options)


def _checks(home: Home, workdir: Path, commands: list[str] | None, off: bool) -> dict[str, Any]:
    """The task's check options: ``--check`` commands, else ``[checks]``; or none at all."""
    from shoal.evaluation.settings import load_checks

    if off:
        if commands:
            raise SubmitError("--check and --no-checks contradict each other; drop one")
        return {"checks": [], "run_checks": False}
    project = workdir / ".shoal" / "config.toml"
    return {"checks": load_checks(home.config_file, project, commands), "run_checks": True}
