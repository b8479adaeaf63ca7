"""A ``task.submit`` built from what a client asked, the same way for every client.

``shoal run`` (and ``shoal team run``), the HTTP API's ``POST /tasks`` and
``shoal mcp serve``'s ``run_task`` all check the work tree and load the task's
options here, so a task runs the same whichever way it came in; each client
only words the failure its own way (a CLI error, a 422, a tool error).

What the repository's own ``.shoal/config.toml`` set but could not (it is not
approved, see :mod:`shoal.trust`) comes back with the task, as a list and as the
one line a client shows its user; it is also logged here (INFO), so a client
that shows nothing (the HTTP API) still leaves it in its log.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.messages.base import replace

if TYPE_CHECKING:
    from shoal.config import Resolved
    from shoal.messages.tasks import TaskSubmit
    from shoal.paths import Home

TEAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Submission:
    """A task ready to send, and what its repository's settings were not allowed to do."""

    task: TaskSubmit
    ignored: list[str] = field(default_factory=list)
    """One phrase per project setting left out because its file is not approved."""
    notice: str | None = None
    """The line to show the user when ``ignored`` is not empty (what, and how to approve)."""
    model_notes: list[str] = field(default_factory=list)
    """Lines to show: which models shoal picked and why (when none was configured), and a
    model name its list does not have but nothing resembles (it is tried anyway)."""


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
    """Only the task of :func:`submission` (what was ignored is still logged there)."""
    made = submission(
        home, description, cwd, flags, team=team, no_model=no_model, virtual_env=virtual_env
    )
    return made.task


def submission(
    home: Home,
    description: str,
    cwd: Path,
    flags: dict[str, Any],
    *,
    team: str | None = None,
    no_model: str,
    virtual_env: str | None = None,
    agent: str | None = None,
) -> Submission:
    """The task as the orchestrator takes it; SubmitError says what is wrong with the request.

    ``flags`` are the options the client set (None: unset), over the environment and the
    config files (``shoal.config.load``, whose SettingsError passes through); ``check``
    (commands) and ``no_checks`` among them choose the project's checks. ``no_model``
    tells this client's user how to configure a model when none is. ``virtual_env`` is
    the submitting shell's ``VIRTUAL_ENV`` (a client on the user's side passes it).
    """
    from shoal import config
    from shoal.messages.tasks import TaskSubmit

    if not description.strip():
        raise SubmitError("the description is empty; say what the task is")
    # A path cannot hold a NUL (resolve() would raise a bare ValueError), nor can the
    # text git is given (the description ends up in commit messages).
    if "\0" in str(cwd):
        raise SubmitError(f"the directory {str(cwd)!r} contains a NUL byte; give a real directory")
    if "\0" in description:
        raise SubmitError("the description contains a NUL byte; send it as plain text")
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
    resolved = config.resolve(home, workdir, flags)
    options = resolved.config.task_options()
    options = replace(options, **checks, virtual_env=virtual_env or None)
    notice = resolved.notice(_here())
    agent_model = None
    if agent is not None:
        options = _agent(home, workdir, agent, options)
        agent_model = options.agent.model if options.agent is not None else None
    notes = _models(home, resolved, notice, no_model, agent_model)
    if team is not None:
        if not TEAM_NAME.fullmatch(team):
            raise SubmitError(f"{team!r} is not a team name (letters, digits, - and _)")
        options = replace(options, team=team)
    task = TaskSubmit(description=description, cwd=str(workdir), options=options)
    if notice:
        log.info("%s", notice.removeprefix("shoal: "))
    for note in notes:  # for clients that show nothing (the HTTP API): its log
        logging.getLogger("shoal.models").info("%s", note.removeprefix("shoal: "))
    return Submission(task, resolved.ignored, notice, notes)


def _models(
    home: Home, resolved: Resolved, notice: str | None, no_model: str, agent_model: str | None
) -> list[str]:
    """The lines to show about the task's models; SubmitError if it has none or a typo."""
    if not resolved.config.models():
        why = [notice.removeprefix("shoal: ")] if notice else []
        why += list(resolved.no_auto)
        raise SubmitError(
            f"no model configured: {no_model}" + (f" ({'; '.join(why)})" if why else "")
        )
    notes = [resolved.auto_line] if resolved.auto_line else []
    return notes + check_models(home, resolved, agent_model)


def check_models(home: Home, resolved: Resolved, agent_model: str | None = None) -> list[str]:
    """Refuse a model name its list does not have but has one like it (a typo), before
    anything starts: one line with the closest names. A name nothing resembles (newer
    than the list, say) is a note; a model whose list cannot be read passes. An agent
    definition's model (``agent_model``) is the executor's: the one checked for it."""
    from shoal.providers.choice import check

    config = resolved.config
    notes: list[str] = []
    seen: set[tuple[str, str | None]] = set()
    for role in ("planner", "executor", "evaluator", "small"):
        field = f"{role}_model" if getattr(config, f"{role}_model") else "model"
        model = getattr(config, field)
        if role == "executor" and agent_model:
            field, model = "agent", agent_model
        base = getattr(config, f"{role}_base_url") or config.base_url
        if not model or (model, base) in seen:
            continue
        seen.add((model, base))
        unknown = check(home, model, base, role)
        if unknown is not None and unknown.suggestions:
            raise SubmitError(unknown.message(_origin(resolved, field)))
        if unknown is not None:
            notes.append(f"shoal: {unknown.message(_origin(resolved, field))}; trying it anyway")
    return notes


def _origin(resolved: Resolved, field: str) -> str:
    """Where a setting came from, as the user would find it."""
    if field == "agent":
        return "the agent definition's model"
    source = resolved.sources.get(field, "default")
    if source == "environment":
        return f"SHOAL_{field.upper()}"
    if source == "flag":
        return "-m" if field == "model" else f"--{field.replace('_', '-')}"
    if source == "project" and resolved.project:
        return f"{field} in {resolved.project.path}"
    if source == "user":
        return f"{field} in $SHOAL_HOME/config.toml"
    return "picked by shoal" if source == "auto" else field


def _here() -> Path | None:
    """The client's working directory (None if it was deleted under it)."""
    try:
        return Path.cwd()
    except OSError:
        return None


def _agent(home: Home, workdir: Path, name: str, options: Any) -> Any:
    """``options`` acting as the agent definition ``name`` found for ``workdir``."""
    from shoal.skills import agents

    try:
        return agents.apply(options, agents.find(home.root / "agents", workdir, name))
    except agents.AgentError as exc:
        raise SubmitError(str(exc)) from None


def _checks(home: Home, workdir: Path, commands: list[str] | None, off: bool) -> dict[str, Any]:
    """The task's check options: ``--check`` commands, else ``[checks]``; or none at all."""
    from shoal.evaluation.settings import load_checks

    if off:
        if commands:
            raise SubmitError("--check and --no-checks contradict each other; drop one")
        return {"checks": [], "run_checks": False}
    project = workdir / ".shoal" / "config.toml"
    return {"checks": load_checks(home.config_file, project, commands), "run_checks": True}
